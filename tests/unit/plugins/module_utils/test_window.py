"""Pure parts of the window protocol: /proc/locks parsing, admission and
fairness, tiers, restore targets, lease ids, records files."""
import os

import pytest

from ansible_collections.nativearm.binfmt.plugins.module_utils import _holder
from ansible_collections.nativearm.binfmt.plugins.module_utils import window as W

LOCKS = """\
1: FLOCK  ADVISORY  READ  4242 00:2c:17 0 EOF
1: -> FLOCK  ADVISORY  WRITE 777 00:2c:17 0 EOF
2: FLOCK  ADVISORY  WRITE 900 fd:01:1234567 0 EOF
3: POSIX  ADVISORY  WRITE 55 08:02:99 0 EOF
4: OFDLCK ADVISORY  READ  -1 00:05:3 0 EOF
garbage line
"""


def test_parse_proc_locks():
    locks = W.parse_proc_locks(LOCKS)
    assert locks[0] == {"kind": "FLOCK", "access": "READ", "pid": 4242, "dev": (0, 0x2c), "ino": 17,
                        "start": 0, "blocked": False}
    assert locks[1]["blocked"] and locks[1]["pid"] == 777 and locks[1]["access"] == "WRITE"
    assert locks[2]["dev"] == (0xfd, 1) and locks[2]["ino"] == 1234567
    assert locks[3]["kind"] == "POSIX" and locks[4]["pid"] == -1
    assert len(locks) == 5


def test_describe_lock_holders():
    text = W.describe_lock_holders([{"pid": 7, "kind": "FLOCK", "access": "WRITE", "blocked": False,
                                     "cmdline": "flock -x /x sleep 9"}])
    assert text == "pid 7 (FLOCK WRITE): flock -x /x sleep 9"
    assert W.describe_lock_holders([]) == "none"


def state(mode=None, waiters=()):
    s = W.empty_state("qemu-arm")
    s["mode"] = mode
    for i, (m, seq) in enumerate(waiters):
        s["waiters"]["w%d" % i] = {"mode": m, "seq": seq, "pid": 1}
    return s


@pytest.mark.parametrize("window_mode, mode, ok", [
    (None, "native", True), (None, "emulation", True),
    ("native", "native", True), ("native", "emulation", False),
    ("emulation", "emulation", True), ("emulation", "native", False),
])
def test_admissible_by_window_mode(window_mode, mode, ok):
    assert W.admissible(state(window_mode), mode)[0] is ok


def test_fresh_joiner_queues_behind_a_waiter_of_the_other_mode():
    s = state("native", waiters=[("emulation", 5)])
    assert W.admissible(s, "native") == (False, "fairness")
    # a native waiter that arrived before the emulation waiter is not held back by it
    assert W.admissible(s, "native", seq=4) == (True, None)
    assert W.admissible(s, "native", seq=6) == (False, "fairness")
    # the emulation waiter itself waits only for the window to drain
    assert W.admissible(s, "emulation", seq=5) == (False, "window_mode")
    assert W.admissible(state(None, waiters=[("native", 6)]), "emulation", seq=5) == (True, None)
    # a fallback after the wait ignores the queue but never the window's mode
    assert W.admissible(s, "native", ignore_fairness=True) == (True, None)
    assert W.admissible(s, "emulation", ignore_fairness=True) == (False, "window_mode")


def test_a_phase_admits_every_waiter_of_its_mode_that_was_waiting_when_it_opened():
    s = state("emulation", waiters=[("native", 2), ("emulation", 3), ("emulation", 9)])
    s["phase_seq"] = 5                  # the emulation window opened when seq was 5
    assert W.admissible(s, "emulation", seq=3) == (True, None)      # waiting before the phase
    assert W.admissible(s, "emulation", seq=9) == (False, "fairness")  # came later: next phase
    assert W.admissible(s, "emulation") == (False, "fairness")      # fresh arrival queues
    assert W.admissible(s, "native", seq=2) == (False, "window_mode")


def test_same_mode_waiters_do_not_block():
    assert W.admissible(state("native", waiters=[("native", 1)]), "native") == (True, None)


def test_no_deadlock_between_two_waiters():
    """Whoever has the smaller number goes once the window is empty."""
    s = state(None, waiters=[("native", 6), ("emulation", 7)])
    assert W.admissible(s, "native", seq=6)[0] is True
    assert W.admissible(s, "emulation", seq=7)[0] is False


def test_desired_enabled():
    assert W.desired_enabled("native") is False
    assert W.desired_enabled("emulation") is True


@pytest.mark.parametrize("native, present, descriptor, tier", [
    (True, True, True, "native_probe"),
    (True, False, False, "native_probe"),
    (False, True, True, "packaged_descriptor"),
    (False, True, False, "registered_entry"),
    (False, False, True, "qemu_fallback"),
    (None, False, False, "qemu_fallback"),
])
def test_decide_tier(native, present, descriptor, tier):
    assert W.decide_tier(native, present, descriptor) == tier
    assert tier in W.TIERS


def test_restore_target():
    s = W.empty_state("qemu-arm")
    s["prior"] = {"present": True, "enabled": False}
    assert W.restore_target(s) is False
    s["prior"] = {"present": True, "enabled": True}
    assert W.restore_target(s) is True
    s["prior"] = {"present": False, "enabled": None}
    assert W.restore_target(s) is None
    s["adopted"] = True                 # registered mid-window: left as its registrant made it
    assert W.restore_target(s) is True


def _stale(entry_ino=7, boot="b1"):
    s = W.empty_state("qemu-arm")
    s.update(prior={"present": True, "enabled": True}, mode="native", entry_ino=entry_ino, boot_id=boot)
    return s


def test_stale_window_restored_onto_the_entry_it_changed():
    assert W.stale_restore_refusal(_stale(), {"present": True, "enabled": False, "ino": 7}, "b1") is None
    # the entry is gone: nothing would be written anyway, nothing to refuse
    assert W.stale_restore_refusal(_stale(), {"present": False, "enabled": None, "ino": None}, "b1") is None
    # records written before boot ids were recorded, or where /proc hides it
    assert W.stale_restore_refusal(_stale(boot=None), {"present": True, "enabled": False, "ino": 7}, "b1") is None
    assert W.stale_restore_refusal(_stale(), {"present": True, "enabled": False, "ino": 7}, None) is None


def test_stale_window_not_forced_onto_a_new_registration():
    why = W.stale_restore_refusal(_stale(), {"present": True, "enabled": True, "ino": 9}, "b1")
    assert "inode 9" in why and "inode 7" in why


def test_stale_window_from_another_boot_is_not_applied():
    why = W.stale_restore_refusal(_stale(), {"present": True, "enabled": False, "ino": 7}, "b2")
    assert "earlier boot" in why


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "-x", "x" * 65, "a b", 5])
def test_bad_lease_ids(bad):
    with pytest.raises(W.WindowError, match="lease_id"):
        W.validate_lease_id(bad)


def test_good_lease_ids():
    for good in ("build-1", "a", "job_7.step@host", W.new_lease_id()):
        assert W.validate_lease_id(good) == good


def test_pid_liveness():
    me = os.getpid()
    start = W.proc_start_time(me)
    assert W.pid_alive(me) and W.pid_alive(me, start)
    assert not W.pid_alive(me, start + 1)           # same pid, another process: reuse detected
    assert W.proc_start_time(2 ** 22 + 1) is None


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
