# -*- coding: utf-8 -*-
# Copyright: (c) 2026, nativearm.binfmt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Processes and locks as /proc and the kernel show them, for the window.

Private to ``window.py`` (which documents the protocol) and ``_holder.py``:
this boot's id, a process's start time and liveness (pid reuse checked by
start time), signalling a pid only while it is still the process that was
recorded, waiting for a process's exit (our own children reaped), who holds
locks on a file (/proc/locks), and flock with a bounded wait. Standard
library only; holders use it after they are forked, so nothing here imports
a collection file lazily (``select`` and ``threading`` come from the
standard library).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import fcntl
import os
import signal
import time

from ansible_collections.nativearm.binfmt.plugins.module_utils import _window_instance as instance


class Timeout(Exception):
    """A bounded wait (``flock``) reached its deadline."""


def _read_text(path):
    with open(path, "r") as f:
        return f.read()


def boot_id():
    """This boot's id (/proc/sys/kernel/random/boot_id), or None where unreadable."""
    try:
        return _read_text("/proc/sys/kernel/random/boot_id").strip() or None
    except (IOError, OSError):
        return None


def proc_start_time(pid):
    """Start time (clock ticks since boot) of ``pid``, or None when it is gone."""
    try:
        data = _read_text("/proc/%d/stat" % int(pid))
    except (IOError, OSError, ValueError, TypeError):
        return None
    try:
        return int(data.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def pid_alive(pid, start=None):
    """True when ``pid`` runs (not a zombie) and, if given, started at ``start``."""
    try:
        data = _read_text("/proc/%d/stat" % int(pid))
        fields = data.rsplit(")", 1)[1].split()
    except (IOError, OSError, ValueError, TypeError, IndexError):
        return False
    if fields[0] == "Z":
        return False
    return start is None or int(fields[19]) == start


def signal_pid(pid, start, sig):
    """Send ``sig`` to ``pid`` only if it is still the process that started at
    ``start``: through a pidfd (opened first, then the start time checked, so
    the pid cannot be reused in between) where Linux >= 5.3 and Python have
    one. True when sent."""
    if not pid or start is None:
        return False
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    try:
        if not pid_alive(pid, start):
            return False
        if pidfd is not None and hasattr(signal, "pidfd_send_signal"):
            signal.pidfd_send_signal(pidfd, sig)
        else:
            os.kill(pid, sig)
        return True
    except OSError:
        return False
    finally:
        if pidfd is not None:
            os.close(pidfd)


# Holders forked by this process that may still have to be reaped (a holder
# is its opener's child until the opener exits; a module exits at once, a
# long-lived opener -- tests, the stress test -- reaps them here).
CHILDREN = set()


def reap_children():
    for pid in list(CHILDREN):
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == 0:
                continue
        except ChildProcessError:
            pass
        CHILDREN.discard(pid)


def wait_exit(pid, start=None, timeout=5.0):
    """Wait until process ``pid`` (started at ``start``, when given) has exited;
    True when it has. A pidfd (Linux >= 5.3) wakes us at its exit, the moment
    the kernel has released its locks; our own children are reaped."""
    if not pid:
        return True
    own = pid in CHILDREN
    if not own and not pid_alive(pid, start):
        return True
    pidfd = None
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pass
    try:
        if pidfd is not None and (own or pid_alive(pid, start)):
            import select
            select.select([pidfd], [], [], timeout)
        elif pidfd is None:
            end = time.time() + timeout
            while time.time() < end and pid_alive(pid, start):
                time.sleep(0.002)
    finally:
        if pidfd is not None:
            os.close(pidfd)
    if own:
        try:
            if os.waitpid(pid, 0 if not pid_alive(pid) else os.WNOHANG)[0] == 0:
                return False
        except ChildProcessError:
            pass
        CHILDREN.discard(pid)
        return True
    return not pid_alive(pid, start)


def kill_recorded(pid, start):
    """SIGKILL a holder of ours (pid and start time checked) and wait for its exit:
    the kernel has dropped its locks when this returns True."""
    if pid and pid_alive(pid, start):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return wait_exit(pid, start, 5)


# ---------------------------------------------------------------------------
# locks
# ---------------------------------------------------------------------------

def lock_holders_of(path, locks_file="/proc/locks"):
    """Every lock on the file ``path`` (dev + inode) with pid, uid and command line."""
    try:
        st = os.stat(path)
    except OSError:
        return []
    dev = (os.major(st.st_dev), os.minor(st.st_dev))
    try:
        locks = instance.parse_proc_locks(_read_text(locks_file))
    except (IOError, OSError):
        return []
    out = []
    for lock in locks:
        if lock["dev"] == dev and lock["ino"] == st.st_ino:
            out.append({"pid": lock["pid"], "kind": lock["kind"], "access": lock["access"],
                        "blocked": lock["blocked"], "cmdline": instance.proc_cmdline(lock["pid"]),
                        "uid": instance.proc_uid(lock["pid"]) if lock["pid"] > 0 else None})
            if out[-1]["cmdline"] == "?":
                out[-1]["cmdline"] = "(pid %d has exited; a child that inherited its descriptor still holds " \
                                     "the lock)" % lock["pid"]
    return out


def describe_lock_holders(holders):
    if not holders:
        return "none"
    return "; ".join("pid %d (%s %s%s): %s" % (h["pid"], h["kind"], h["access"],
                                               ", waiting" if h.get("blocked") else "", h["cmdline"])
                     for h in holders)


def try_flock(fd, operation):
    """One non-blocking flock: True when taken, False when someone else holds it."""
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
        return True
    except (IOError, OSError) as exc:
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise
    return False


def flock(fd, operation, deadline):
    """flock with a bounded wait. Raises Timeout when ``deadline`` passes."""
    if try_flock(fd, operation):
        return
    import threading
    if threading.current_thread() is threading.main_thread():
        def _alarm(signum, frame):
            raise Timeout()
        while True:
            remaining = deadline - time.time()
            if remaining <= 0:
                raise Timeout()
            old = signal.signal(signal.SIGALRM, _alarm)
            signal.setitimer(signal.ITIMER_REAL, remaining)
            try:
                fcntl.flock(fd, operation)
                return
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, old)
    delay = 0.001                       # not the main thread: no SIGALRM, poll instead
    while True:
        if try_flock(fd, operation):
            return
        if time.time() >= deadline:
            raise Timeout()
        time.sleep(delay)
        delay = min(delay * 2, 0.02)
