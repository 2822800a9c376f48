"""The two guests of the arm64 fleet: what each one is, in one table.

`compat` has AArch32 EL0 (cortex-a57) and a kernel >= 6.7 (Debian 13, 6.12):
the native armhf window opens there and both probe methods exist.
`noaarch32` is an a64fx (QEMU 7.2's only CPU model without AArch32 EL0) on a
6.1 kernel (Debian 12): the probe fails and only the toggle method exists.
a64fx needs gic-version=3, or the kernel dies silently at boot.
"""

# Installed into the image. Deliberately NOT gcc-arm-linux-gnueabihf, arch-test
# or qemu-user-static: the build_host role installs those for real.
BASE_PACKAGES = (
    "linux-image-arm64", "initramfs-tools", "zstd", "kmod", "udev", "systemd-sysv",
    "iproute2", "openssh-server", "python3", "python3-apt", "sudo", "procps",
)

# initramfs MODULES=list: only what mounts root=/dev/vda over virtio-pci.
INITRAMFS_MODULES = ("virtio_pci", "virtio_blk", "virtio_net", "ext4")

GUESTS = {
    "compat": {
        "suite": "trixie",
        "kernel_series": "6.12",
        "machine": "virt,gic-version=2",
        "cpu": "cortex-a57",
        "aarch32_el0": True,
    },
    "noaarch32": {
        "suite": "bookworm",
        "kernel_series": "6.1",
        "machine": "virt,gic-version=3",
        "cpu": "a64fx",
        "aarch32_el0": False,
    },
}

MIRROR = "http://deb.debian.org/debian"
USER = "fleet"
IMAGE_SIZE = "4G"
