"""Run one fleet guest under qemu-system-aarch64: boot, wait for ssh, stop by pid.

Every guest boots from its cached image with -snapshot (the image is never
written), the kernel and initrd given directly, and user networking whose only
host-side door is ssh forwarded on 127.0.0.1.
"""
import os
import signal
import socket
import subprocess
import time

QEMU = "qemu-system-aarch64"
SSH_OPTIONS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
               "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5"]


def free_port():
    """A TCP port free on 127.0.0.1 right now (qemu binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def qemu_argv(row, image_dir, run_dir, port, smp=1, memory_mb=1536):
    accel = "tcg,thread=multi" if smp > 1 else "tcg"
    return [
        QEMU, "-name", "nativearm-fleet-" + row["name"],
        "-M", row["machine"], "-cpu", row["cpu"], "-accel", accel,
        "-smp", str(smp), "-m", str(memory_mb),
        "-kernel", os.path.join(image_dir, "vmlinuz"),
        "-initrd", os.path.join(image_dir, "initrd.img"),
        "-append", "root=/dev/vda rw console=ttyAMA0 net.ifnames=0",
        # -snapshot discards every write at exit, so the guest's fsyncs (dpkg does many)
        # need not reach the host's disk: cache=unsafe.
        "-drive", "file=%s,format=raw,if=none,id=hd0,cache=unsafe" % os.path.join(image_dir, "rootfs.img"),
        "-device", "virtio-blk-pci,drive=hd0", "-snapshot",
        "-netdev", "user,id=n0,hostfwd=tcp:127.0.0.1:%d-:22" % port,
        # romfile=: no iPXE option ROM (the kernel boots directly; ipxe-qemu need not be installed).
        "-device", "virtio-net-pci,netdev=n0,romfile=",
        "-device", "virtio-rng-pci",
        "-display", "none", "-monitor", "none", "-no-reboot",
        "-serial", "file:" + os.path.join(run_dir, "console.log"),
        "-pidfile", os.path.join(run_dir, "qemu.pid"), "-daemonize",
    ]


def boot(name, row, image_dir, run_dir, user, smp=1, memory_mb=1536):
    """Start the guest (qemu daemonizes); return its record (pid, port, key, ...)."""
    os.makedirs(run_dir, exist_ok=True)
    row = dict(row, name=name)
    last_error = ""
    for _attempt in range(3):  # the port might be taken between free_port() and qemu's bind
        port = free_port()
        argv = qemu_argv(row, image_dir, run_dir, port, smp, memory_mb)
        proc = subprocess.run(argv, check=False, capture_output=True, text=True)
        if proc.returncode == 0:
            with open(os.path.join(run_dir, "qemu.pid")) as f:
                pid = int(f.read().strip())
            return {"name": name, "pid": pid, "port": port, "user": user,
                    "key": os.path.join(image_dir, "id_ed25519"), "image_dir": image_dir,
                    "run_dir": run_dir, "console": os.path.join(run_dir, "console.log"),
                    "booted_at": time.time(), "argv": argv}
        last_error = proc.stderr
    raise RuntimeError("qemu for %s did not start: %s" % (name, last_error.strip()))


def is_running(record):
    """True when record's pid is still that qemu (not a recycled pid)."""
    try:
        with open("/proc/%d/cmdline" % record["pid"], "rb") as f:
            cmdline = f.read().split(b"\0")
    except OSError:
        return False
    return bytes(("nativearm-fleet-" + record["name"]).encode()) in cmdline


def ssh_argv(record, command=None):
    argv = ["ssh"] + SSH_OPTIONS + ["-i", record["key"], "-p", str(record["port"]),
                                    "%s@127.0.0.1" % record["user"]]
    if command:
        argv += ["--", command]
    return argv


def wait_ssh(record, timeout=900):
    """Poll until `ssh true` succeeds; raise with the console tail if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_running(record):
            raise RuntimeError("%s: qemu (pid %d) exited during boot\n%s"
                               % (record["name"], record["pid"], console_tail(record)))
        proc = subprocess.run(ssh_argv(record, "true"), check=False, capture_output=True, timeout=60)
        if proc.returncode == 0:
            return time.time() - record["booted_at"]
        time.sleep(2)
    raise RuntimeError("%s: no ssh on 127.0.0.1:%d after %d s\n%s"
                       % (record["name"], record["port"], timeout, console_tail(record)))


def console_tail(record, chars=3000):
    try:
        with open(record["console"], errors="replace") as f:
            return "--- console tail ---\n" + f.read()[-chars:]
    except OSError:
        return "(no console log)"


def stop(record, grace=10):
    """Stop the guest by its pid: SIGTERM, then SIGKILL after grace seconds."""
    if not is_running(record):
        return False
    os.kill(record["pid"], signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not is_running(record):
            return True
        time.sleep(0.2)
    if is_running(record):
        os.kill(record["pid"], signal.SIGKILL)
    return True
