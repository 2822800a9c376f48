"""The three guests of the arm64 fleet: what each one is, in one table.

`compat` has AArch32 EL0 (cortex-a57) and a kernel >= 6.7 (Debian 13, 6.12):
the native armhf window opens there and both probe methods exist.
`noaarch32` is an a64fx (QEMU 7.2's only CPU model without AArch32 EL0) on a
6.1 kernel (Debian 12): the probe fails and only the toggle method exists.
a64fx needs gic-version=3, or the kernel dies silently at boot.
`kernel16k` is Debian 13's 16K-page kernel (CONFIG_COMPAT=y): AArch32 EL0 is there and
static armhf programs run natively, but no dynamically linked armhf program can load (the
armhf libc's segments are 4K-aligned), so the window must fall back to qemu-arm. cortex-a57
has no 16K granule: it runs on `max` (pauth-impdef=on: QEMU's default pointer-authentication
algorithm is much slower under TCG) with gic-version=3.
"""

# Installed into the image. Deliberately NOT gcc-arm-linux-gnueabihf, arch-test
# or qemu-user-static: the build_host role installs those for real.
# The kernel package comes first, from the guest's row (`kernel_package`, default KERNEL_PACKAGE).
KERNEL_PACKAGE = "linux-image-arm64"
BASE_PACKAGES = (
    "initramfs-tools", "zstd", "kmod", "udev", "systemd-sysv",
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
    "kernel16k": {
        "suite": "trixie",
        "kernel_series": "6.12",
        "kernel_package": "linux-image-arm64-16k",
        "page_size": 16384,
        "machine": "virt,gic-version=3",
        "cpu": "max,pauth-impdef=on",
        "aarch32_el0": True,
    },
}


def packages(row):
    """What mmdebstrap installs for a guest: its kernel, then the base packages."""
    return (row.get("kernel_package", KERNEL_PACKAGE),) + BASE_PACKAGES


MIRROR = "http://deb.debian.org/debian"
USER = "fleet"
IMAGE_SIZE = "4G"
