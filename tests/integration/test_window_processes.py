"""The window's process parts on the real kernel: a forked holder's title and
descriptors (``_holder.py``), and the direct probe runner (``window.run_probe``).
They fork processes and run binaries, so they are not unit tests."""
import os

from ansible_collections.nativearm.binfmt.plugins.module_utils import _holder
from ansible_collections.nativearm.binfmt.plugins.module_utils import window as W


def test_run_probe_shapes():
    ok = W.run_probe(["/bin/true"])
    assert ok["native"] is True and ok["rc"] == 0 and ok["method"] == "direct"
    bad = W.run_probe(["/bin/false"])
    assert bad["native"] is False and bad["rc"] == 1 and "exited 1" in bad["reason"]
    missing = W.run_probe(["/nonexistent/probe"])
    assert missing["native"] is False and missing["rc"] is None and "could not run" in missing["reason"]


def _in_child(body):
    """Run ``body(fd)`` in a forked child (the way a holder starts); ``fd`` is
    a pipe to us. Returns (child pid, go fd, the bytes it wrote); the child
    waits until ``_finish`` so that its /proc entries can be read."""
    r, w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.close(go_w)
            body(w, go_r)
            os.close(w)
            os.read(go_r, 1)
        finally:
            os._exit(0)
    os.close(w)
    os.close(go_r)
    data = b""
    while True:
        chunk = os.read(r, 4096)
        if not chunk:
            break
        data += chunk
    os.close(r)
    return pid, go_w, data


def _finish(pid, go_w):
    os.close(go_w)
    os.waitpid(pid, 0)


def test_holder_titles_itself():
    """A forked holder shows what it is in /proc/PID/cmdline and comm (the kernel
    reads them from the process's own argv area and task name)."""
    title = "nativearm-window-holder qemu-arm lease=abc /run/nativearm-binfmt/dev0.1-userns1"
    pid, go, dummy = _in_child(lambda fd, go_fd: _holder.set_title(title))
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            cmdline = f.read()
        with open("/proc/self/cmdline", "rb") as f:
            mine = f.read()
        with open("/proc/%d/comm" % pid) as f:
            assert f.read().strip() == _holder.COMM
        shown = W.proc_cmdline(pid)
    finally:
        _finish(pid, go)
    # Written over the argv area; a title longer than that area runs on into the environment
    # area (as setproctitle does), so the kernel then shows exactly the title.
    assert len(cmdline) == max(len(mine), len(title) + 1)
    assert cmdline.rstrip(b"\0") and b"\0" not in cmdline.rstrip(b"\0")
    assert shown and title.startswith(shown) and shown.startswith("nativearm-window-holder")


SHORT_ARGV = r"""
import os, sys
sys.path.insert(0, sys.argv[1] if len(sys.argv) > 1 else "")
from ansible_collections.nativearm.binfmt.plugins.module_utils import _holder
ready_r, ready_w = os.pipe()
go_r, go_w = os.pipe()
pid = os.fork()
if pid == 0:
    _holder.set_title("nativearm-window-holder qemu-arm lease=a-rather-long-lease-id-0123456789 /run/x")
    os.write(ready_w, b"x")
    os.read(go_r, 1)
    os._exit(0)
os.read(ready_r, 1)
with open("/proc/%d/cmdline" % pid, "rb") as f:
    sys.stdout.write(repr(f.read()))
os.write(go_w, b"x")
os.waitpid(pid, 0)
"""


def test_holder_title_longer_than_the_openers_command_line():
    """With pipelining a module's python has a short command line (just the
    interpreter): the title runs on into the environment area, in full."""
    import ast
    import subprocess
    import sys
    from ansible_collections.nativearm.binfmt.plugins.module_utils import _holder as mod
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(mod.__file__)))))
    code = SHORT_ARGV.replace('sys.argv[1] if len(sys.argv) > 1 else ""', repr(os.path.dirname(root)))
    out = subprocess.run([sys.executable], input=code, capture_output=True, text=True, check=True).stdout
    shown = ast.literal_eval(out)
    assert shown == b"nativearm-window-holder qemu-arm lease=a-rather-long-lease-id-0123456789 /run/x\0", shown


def test_holder_closes_every_other_descriptor():
    keep = os.open(os.devnull, os.O_RDONLY)
    extra = [os.open(os.devnull, os.O_RDONLY) for dummy in range(3)]

    def body(fd, go_fd):
        _holder.close_fds_except((keep, fd, go_fd))
        os.write(fd, " ".join(sorted(os.listdir("/proc/self/fd"), key=int)).encode())
    try:
        pid, go, data = _in_child(body)
        _finish(pid, go)
    finally:
        for fd in [keep] + extra:
            os.close(fd)
    left = set(int(x) for x in data.split())
    assert keep in left and not set(extra) & left
    assert len([fd for fd in left if fd > 2]) <= 4, left      # keep, the two pipes, listdir's own
