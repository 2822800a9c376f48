"""_window_proc: process liveness by pid and start time, lock holder texts,
bounded flock (no process is forked here: the test's own pid and files)."""
import fcntl
import os
import time

import pytest

from ansible_collections.nativearm.binfmt.plugins.module_utils import _window_proc as P


def test_describe_lock_holders():
    text = P.describe_lock_holders([{"pid": 7, "kind": "FLOCK", "access": "WRITE", "blocked": False,
                                     "cmdline": "flock -x /x sleep 9"}])
    assert text == "pid 7 (FLOCK WRITE): flock -x /x sleep 9"
    assert P.describe_lock_holders([]) == "none"


def test_pid_liveness():
    me = os.getpid()
    start = P.proc_start_time(me)
    assert P.pid_alive(me) and P.pid_alive(me, start)
    assert not P.pid_alive(me, start + 1)           # same pid, another process: reuse detected
    assert P.proc_start_time(2 ** 22 + 1) is None


def test_signal_pid_refuses_another_process_on_the_same_pid():
    me = os.getpid()
    assert P.signal_pid(me, P.proc_start_time(me) + 1, 0) is False
    assert P.signal_pid(me, None, 0) is False
    assert P.signal_pid(me, P.proc_start_time(me), 0) is True       # signal 0: only checked


def test_wait_exit_of_a_gone_process_is_immediate():
    assert P.wait_exit(None) is True
    assert P.wait_exit(2 ** 22 + 1, None, 0.1) is True


def test_boot_id():
    boot = P.boot_id()
    assert boot and boot == P.boot_id()


def test_flock_waits_until_its_deadline(tmp_path):
    path = str(tmp_path / "lock")
    one = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    two = os.open(path, os.O_RDWR)
    try:
        P.flock(one, fcntl.LOCK_EX, time.time() + 1)
        assert P.try_flock(two, fcntl.LOCK_EX) is False
        with pytest.raises(P.Timeout):
            P.flock(two, fcntl.LOCK_EX, time.time() + 0.05)
        os.close(one)
        one = None
        P.flock(two, fcntl.LOCK_EX, time.time() + 1)
    finally:
        for fd in (one, two):
            if fd is not None:
                os.close(fd)


def test_lock_holders_of_reads_proc_locks(tmp_path):
    path = str(tmp_path / "lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        st = os.stat(path)
        locks = tmp_path / "locks"
        locks.write_text("1: FLOCK  ADVISORY  READ  %d %02x:%02x:%d 0 EOF\n"
                         % (os.getpid(), os.major(st.st_dev), os.minor(st.st_dev), st.st_ino))
        holders = P.lock_holders_of(path, str(locks))
        assert [(h["pid"], h["access"], h["uid"]) for h in holders] == [(os.getpid(), "READ", os.geteuid())]
        assert P.lock_holders_of(str(tmp_path / "missing"), str(locks)) == []
    finally:
        os.close(fd)
