#!/bin/sh
# mmdebstrap hooks for the arm64 fleet images (part of the image recipe hash).
#   image_hooks.sh setup ROOT MODULE...          before any package is unpacked
#   image_hooks.sh customize ROOT HOST USER PUBKEY   after everything is installed
set -eu
step=$1 root=$2
shift 2
case "$step" in
setup)
    # initramfs: only the listed modules, zstd; set before the kernel's
    # postinst builds it, so it is built once and small.
    mkdir -p "$root/etc/initramfs-tools/conf.d" "$root/usr/share/initramfs-tools/modules.d"
    printf 'MODULES=list\nCOMPRESS=zstd\n' > "$root/etc/initramfs-tools/conf.d/nativearm-fleet.conf"
    printf '%s\n' "$@" > "$root/usr/share/initramfs-tools/modules.d/nativearm-fleet"
    ;;
customize)
    host=$1 user=$2 pubkey=$3
    echo "$host" > "$root/etc/hostname"
    printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n' "$host" > "$root/etc/hosts"
    # qemu user networking is fixed: 10.0.2.15/24, gateway .2, DNS .3.
    echo 'nameserver 10.0.2.3' > "$root/etc/resolv.conf"
    printf '/dev/vda\t/\text4\trw,errors=remount-ro\t0\t1\n' > "$root/etc/fstab"
    cat > "$root/etc/systemd/system/fleet-net.service" <<'UNIT'
[Unit]
Description=Static address on qemu user networking
Wants=network.target
Before=network.target ssh.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=ip link set lo up
ExecStart=ip link set eth0 up
ExecStart=ip addr replace 10.0.2.15/24 dev eth0
ExecStart=ip route replace default via 10.0.2.2

[Install]
WantedBy=multi-user.target
UNIT
    chroot "$root" systemctl enable fleet-net.service
    chroot "$root" useradd --create-home --shell /bin/bash "$user"
    echo "$user ALL=(ALL) NOPASSWD:ALL" > "$root/etc/sudoers.d/$user"
    chmod 0440 "$root/etc/sudoers.d/$user"
    install -d -m 0700 "$root/home/$user/.ssh"
    install -m 0600 "$pubkey" "$root/home/$user/.ssh/authorized_keys"
    chroot "$root" chown -R "$user:$user" "/home/$user/.ssh"
    # No DNS lookups of the client on login: the guest has no reverse zone.
    printf 'UseDNS no\n' > "$root/etc/ssh/sshd_config.d/nativearm-fleet.conf"
    # A serial console without a getty login loop slowing boot is fine as is.
    ;;
*)
    echo "image_hooks.sh: unknown step $step" >&2
    exit 2
    ;;
esac
