"""Shared pieces of the native armhf window tests (not a test module).

A ``Host`` is a private binfmt_misc instance playing a build host: qemu-arm
registered as qemu-user-static registers it, a private run dir for the lease
records, and a teardown that SIGKILLs every holder started for that run dir
(found by the lease lock file it keeps open under the run dir), so no test
leaks a process that would keep its namespace alive.
"""
import os
import signal
import subprocess
import time

from sandbox.procs import processes_using

from ansible_collections.nativearm.binfmt.plugins.module_utils import binfmt_misc as bm
from ansible_collections.nativearm.binfmt.plugins.module_utils import window as W
from ansible_collections.nativearm.binfmt.plugins.module_utils.presets import preset

ENTRY = "qemu-arm"
TRUE = ["/bin/true"]


def qemu_arm_definition():
    magic, mask, offset = preset("arm")
    return bm.make_definition(ENTRY, "/usr/bin/qemu-arm-static", magic=magic, mask=mask,
                              offset=offset, flags="F")


def register_qemu_arm(path, enabled=True):
    bm.register(qemu_arm_definition(), path)
    if not enabled:
        bm.set_enabled(ENTRY, False, path)


def true_probe():
    return W.run_probe(TRUE)


def open_native(window, **kw):
    """A native open with the probe that always passes and a ttl, as most window tests want."""
    kw.setdefault("probe", true_probe)
    kw.setdefault("ttl", 120)
    return window.open("native", **kw)


def real_probe(inst):
    """The collection's default probe, run *inside* the sandbox (its mount namespace
    sees the private instance): run from this process it would meet the machine's
    global binfmt_misc, where qemu-arm may be registered and enabled."""
    from ansible_collections.nativearm.binfmt.plugins.module_utils.probe import select_probe
    argv = select_probe()[1]        # sh's exec reports ENOEXEC (nsenter's execvp would run sh on it)
    return lambda: W.run_probe(inst.nsenter(["/bin/sh", "-c", 'exec "$@"', "probe"] + argv))


def processes_mentioning(text):
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % name, "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if text.encode() in cmd:
            pids.append(int(name))
    return pids


def kill_holders(run_dir):
    for pid in set(processes_using(run_dir) + processes_mentioning(run_dir)):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


class Host(object):
    def __init__(self, inst, run_dir, registered=True, enabled=True):
        self.inst = inst
        self.path = inst.path
        self.run_dir = str(run_dir)
        if registered:
            register_qemu_arm(self.path, enabled)

    def window(self, entry=ENTRY):
        return W.Window(entry, self.path, self.run_dir)

    def entry(self):
        """'enabled', 'disabled' or 'absent'."""
        e = bm.read_entry(ENTRY, self.path)
        if e is None:
            return "absent"
        return "enabled" if e["enabled"] else "disabled"

    def ino(self):
        return os.stat(os.path.join(self.path, ENTRY)).st_ino

    def facts(self):
        return self.window().facts()

    def repair(self):
        """binfmt_drift's repair of this host's window."""
        return self.window().repair()

    def close(self):
        kill_holders(self.run_dir)


def wait_for(predicate, timeout=5.0, step=0.01):
    """Poll until predicate() is truthy; return the elapsed seconds (or raise)."""
    start = time.time()
    while True:
        if predicate():
            return time.time() - start
        if time.time() - start > timeout:
            raise AssertionError("condition not met within %.1f s" % timeout)
        time.sleep(step)


def gone(pid):
    return not W.pid_alive(pid)


INNER_ENTRY = "/proc/sys/fs/binfmt_misc/" + ENTRY


def flock_entry(inst, flag, seconds=60, uid=None):
    """flock(1) FLAG (-s, -x) on qemu-arm inside the instance, as its root or as ``uid``;
    sleep inherits the locked descriptor, so the lock lasts ``seconds``. A new session:
    end it with kill_group."""
    argv = ["flock", flag, INNER_ENTRY, "sleep", str(seconds)]
    if uid is not None:
        argv = ["setpriv", "--reuid", str(uid), "--regid", str(uid), "--clear-groups"] + argv
    return subprocess.Popen(inst.nsenter(argv), start_new_session=True)


def kill_group(proc):
    """flock forks sleep, which inherits the locked descriptor: kill them both."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    proc.wait()


# A PR #9769 builder: LOCK_SH on a long-lived descriptor of the entry (flock(1) takes
# it on the shell's descriptor and exits), first in disables, then "in"; on a line
# from stdin it leaves: releases, and re-enables iff LOCK_EX|LOCK_NB on a fresh
# descriptor succeeds (no other LOCK_SH left). It says "restored" or "kept".
PR9769_BUILDER = r"""
entry=$1
exec 9<"$entry"
flock -s 9
if [ "$(head -n1 "$entry")" = enabled ]; then echo 0 > "$entry"; fi
echo in
read line
exec 9<&-
exec 8<"$entry"
if flock -x -n 8; then echo 1 > "$entry"; echo restored; else echo kept; fi
exec 8<&-
"""


class LineProcess(object):
    """A process driven by lines: it reads one on stdin, answers with one on stdout."""

    def __init__(self, argv):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def last_word(self, line):
        """Send ``line``, return its answer (stripped) once the process has exited."""
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        said = self.proc.stdout.readline().strip()
        self.proc.wait(10)
        return said

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Builder(LineProcess):
    """A PR #9769 builder running inside the sandbox (as its root); returns once it is in,
    unless ``wait_in`` is false."""

    def __init__(self, inst, wait_in=True):
        super().__init__(inst.nsenter(["sh", "-c", PR9769_BUILDER, "pr9769-builder", INNER_ENTRY]))
        if wait_in:
            assert self.proc.stdout.readline().strip() == "in"

    def leave(self):
        return self.last_word("leave")
