# -*- coding: utf-8 -*-
# Copyright: (c) 2026, nativearm.binfmt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The detached process that holds one native armhf window lease.

``_holder_handle.spawn`` (called by ``window.Window.spawn_holder``) imports
this file, then forks: the child runs ``run_forked`` and never returns into
the opener's code (it ends with ``os._exit``, so no ``finally``/``atexit`` of
an Ansible module or of its AnsiballZ wrapper runs twice -- that wrapper
deletes its payload directory when the module exits). No interpreter is
started and no file is read after the fork: everything the holder runs (this
file, ``window.py`` and the private parts it imports, the standard library
modules below; not ``_window_facts``/``_window_repair``, which no holder runs)
is already in memory, so the holder keeps working after the module's
temporary files are gone. The child:

0. detaches (``detach``): its own session, cwd ``/``, stdio on /dev/null (an
   inherited stdout would hang the Ansible task), every other inherited
   descriptor closed except its two pipes and the binfmt_misc directory, default signal dispositions and an
   empty signal mask, garbage collector frozen (nothing it inherited is ever
   finalized in it), and a command line that says what it is
   (``nativearm-window-holder ENTRY lease=ID INSTANCE_DIR``, written over the
   opener's argv area, so /proc/locks users see it; ``comm`` is
   ``window-holder``);
1. takes LOCK_EX on its lease lock file (the kernel drops it when the holder
   dies: that is the lease's liveness) and writes ``ready``;
2. answers ``hold MODE`` (sent by the opener under the mutex, before the
   entry is touched) by taking its mode's instance-wide mark: LOCK_SH on the
   entry for a native lease (``held``, or ``busy`` when a LOCK_EX keeps it out:
   never waits), an emulation marker on ``register`` for an emulation lease
   (``held OFFSET``; any LOCK_SH dropped). Then it waits for ``commit MODE``
   (answers ``ok`` and closes both pipes) or ``abort``; end of file before
   ``commit`` means the opener died, so it ends its lease itself (restoring
   the prior state if it was the last);
3. watches every ``POLL`` seconds: ttl, owner_pid (pid + start time),
   the entry's state and inode, its lease lock file (a closer unlinks it
   when it removes the record) and the records file (moved aside when found
   corrupt: the holder then exits touching nothing); when something changed
   the entry it calls ``Window.reassert`` (under the mutex) on the Window object it was given
   (once a second while that is deferred under another coordinator's native
   window). A native holder's LOCK_SH follows a re-registered entry inside
   ``reassert`` (``relock``, under the mutex, before ``0`` is written); one
   without it (entry absent, or kept out by an unprivileged LOCK_EX) keeps
   trying to take it. Entry and
   ``register`` are opened relative to the binfmt_misc directory descriptor
   its opener checked (fstatfs) before the fork, with O_NOFOLLOW;
4. SIGUSR1 = "a closer already ended your lease": exit at once. SIGTERM,
   SIGINT, SIGHUP = end the lease properly (its own locks dropped first), then
   exit.

Every invariant is enforced by ``window.py``; this file is only the process
set-up and the loop. The messages on the pipes (``ready``, ``hold``, ``held``,
``busy``, ``commit``, ``ok``, ``abort``) and the opener's side are in
``_holder_handle.py``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import fcntl
import gc
import os
import signal
import threading  # noqa: F401 pylint: disable=unused-import
import time

from ansible_collections.nativearm.binfmt.plugins.module_utils import _window_instance as instance
from ansible_collections.nativearm.binfmt.plugins.module_utils import binfmt_misc as bm
from ansible_collections.nativearm.binfmt.plugins.module_utils import _holder_handle as msg
from ansible_collections.nativearm.binfmt.plugins.module_utils._window_proc import pid_alive
from ansible_collections.nativearm.binfmt.plugins.module_utils._window_rules import desired_enabled

# threading: _window_proc.flock imports it when the mutex is contended; imported
# here, before the fork, so that a holder never needs a module file later.

POLL = msg.POLL
COMM = "window-holder"

_flags = {"end": None, "closed": False, "critical": False}


def _on_usr1(signum, frame):
    _flags["closed"] = True
    if not _flags["critical"]:
        os._exit(0)


def _on_term(signum, frame):
    _flags["end"] = "signal_%d" % signum


# ---------------------------------------------------------------------------
# process set-up after the fork
# ---------------------------------------------------------------------------

def close_fds_except(keep, first=3):
    """Close every descriptor >= ``first`` except those in ``keep``."""
    top = os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 65536
    if top < 0:
        top = 65536
    low = first
    for fd in sorted(set(fd for fd in keep if fd >= first)):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, max(top, low))


def set_title(title, comm=COMM):
    """Show ``title`` as this process's command line and ``comm`` as its name.

    The command line of a forked process is the opener's (for a module, the
    path of its AnsiballZ file, or just the interpreter's with pipelining).
    The kernel reads /proc/PID/cmdline from the argv area of the process's
    own memory, so the title is written there through /proc/self/mem: padded
    with NULs when it fits; otherwise it runs on into the environment strings
    that follow (the kernel then shows the first NUL-terminated string, as for
    setproctitle(3); Python's os.environ is a copy, and the holder reads no
    variable). Best effort: nothing depends on it but what people and
    /proc/locks reports see.
    """
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        # arg_start, arg_end, env_start, env_end: fields 48-51 of /proc/PID/stat
        start, end, env_start, env_end = [int(x) for x in fields[45:49]]
        if end - start < 2:
            return
        data = title.encode("utf-8", "replace")
        if len(data) < end - start:
            data += b"\0" * (end - start - len(data))
        else:
            room = (env_end if env_start == end else end) - start
            data = data[:room - 1] + b"\0"
        fd = os.open("/proc/self/mem", os.O_RDWR | os.O_CLOEXEC)
        try:
            os.pwrite(fd, data, start)
        finally:
            os.close(fd)
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open("/proc/self/comm", "w") as f:
            f.write(comm)
    except (OSError, IOError):
        pass


def detach(keep, title):
    """Make this freshly forked child a detached holder process (step 0)."""
    gc.freeze()                 # inherited objects are never collected (or finalized) here
    os.setsid()
    os.chdir("/")
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    try:
        signal.set_wakeup_fd(-1)
    except (ValueError, OSError):
        pass
    for sig in (signal.SIGALRM, signal.SIGCHLD, signal.SIGUSR2, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGUSR1, _on_usr1)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _on_term)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        if fd != null:
            os.dup2(null, fd)
    close_fds_except(keep)
    set_title(title)


def run_forked(window, config, ctl, st, error):
    """The forked child's whole life: never returns (``os._exit``)."""
    status = 1
    try:
        detach((ctl, st, config["dir_fd"]), config["title"])
        status = serve(window, config, ctl, st, error)
    except BaseException:       # pylint: disable=broad-except
        status = 1              # stdio is /dev/null: nobody to tell; recovery handles a lost lease
    finally:
        os._exit(status)


# ---------------------------------------------------------------------------
# the entry and register, without the mutex
# ---------------------------------------------------------------------------
# Everything is opened relative to the binfmt_misc directory descriptor the
# opener checked (fstatfs: a binfmt_misc filesystem) before the fork, with
# O_NOFOLLOW: never a look-alike directory, never through a planted symlink.

# What this holder holds instance-wide: LOCK_SH on the entry (native) or an
# emulation marker on register (emulation); see _window_instance.
_held = {"entry": None, "ino": None, "marker": None, "offset": None}


class _Busy(Exception):
    pass


def _open_at(dir_fd, name, flags=os.O_RDONLY):
    return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)


def _try_lock_entry(dir_fd, name):
    """An fd with LOCK_SH on the entry; None when it is absent; _Busy when a
    LOCK_EX is in the way (never waits)."""
    try:
        fd = _open_at(dir_fd, name)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except (IOError, OSError) as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise _Busy()
        raise
    return fd


def _drop(key):
    fd, _held[key] = _held[key], None
    if key == "entry":
        _held["ino"] = None
    if fd is not None:
        try:
            os.close(fd)    # the only descriptor of its open file description: the lock goes with it
        except OSError:
            pass


def _take_entry(fd):
    """Keep ``fd`` (LOCK_SH on the entry) as our one entry lock; a lock on another
    inode (an entry since re-registered) is dropped after it is in place."""
    if fd is None:
        return
    old = _held["entry"]
    _held["entry"], _held["ino"] = fd, os.fstat(fd).st_ino
    if old is not None:
        try:
            os.close(old)
        except OSError:
            pass


def relock(dir_fd, name):
    """One non-blocking try at LOCK_SH on the entry as it is now (``Window.reassert``
    calls it under the mutex, before it writes the entry); the inode we then hold
    it on, or None (absent, or a LOCK_EX in the way)."""
    try:
        fd = _try_lock_entry(dir_fd, name)
    except (_Busy, OSError):
        fd = None
    _take_entry(fd)
    return _held["ino"] if fd is not None else None


def hold(mode, dir_fd, name):
    """Take ``mode``'s instance-wide mark (the opener asks, under the mutex, before
    it touches the entry). Returns the line to answer: ``held``, ``held OFFSET``
    (an emulation marker) or ``busy`` (a LOCK_EX on the entry kept LOCK_SH out)."""
    if mode == "none":                  # back to waiting: nothing held on the instance
        _drop("entry")
        _drop("marker")
        return msg.HELD
    if mode == "native":
        _drop("marker")
        if _held["entry"] is None:
            try:
                _take_entry(_try_lock_entry(dir_fd, name))
            except _Busy:
                return msg.BUSY
        return msg.HELD
    _drop("entry")                      # LOCK_SH means only "a native window user is here"
    if _held["marker"] is None:
        fd = _open_at(dir_fd, instance.REGISTER, os.O_WRONLY)
        try:
            offset = instance.take_marker(fd)
        except BaseException:
            os.close(fd)
            raise
        _held["marker"] = fd
        _held["offset"] = offset
    return msg.message(msg.HELD, _held["offset"])


# ---------------------------------------------------------------------------
# the holder's life
# ---------------------------------------------------------------------------

def _end(window, lease_id, why, error):
    """End our own lease (restores when last out), then exit. Our own locks go
    first: the restore decision looks at what other coordinators hold, and a PR
    #9769 builder leaving meanwhile must not see a LOCK_SH of ours."""
    _flags["critical"] = True
    _drop("entry")
    _drop("marker")
    for dummy in range(30):
        try:
            window.end_lease(lease_id, why)
            break
        except error:
            time.sleep(1)
    os._exit(0)


def serve(window, config, ctl, st, error):
    """Steps 1-4. ``window`` is a Window of the lease's instance, ``error`` its
    WindowError class. Returns the exit status (or exits itself)."""
    lease_id = config["lease_id"]
    dir_fd, name = config["dir_fd"], window.entry
    status_path = os.path.join(window.binfmt_misc, "status")
    lock_path = os.path.join(window.dir, config["lock"])
    lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    msg.send_line(st, msg.READY)
    while True:
        line = msg.read_line(ctl)
        word, arg = msg.parse(line)
        if line is None or word == msg.ABORT:
            _drop("entry")
            _drop("marker")
            if line is None:        # the opener died: end our lease if it was recorded
                _end(window, lease_id, "opener_gone", error)
            try:
                os.unlink(lock_path)
            except OSError:
                pass
            return 0
        if word == msg.HOLD and arg:
            try:
                msg.send_line(st, hold(arg, dir_fd, name))
            except OSError as exc:
                msg.send_line(st, msg.message(msg.ERROR, exc))
            continue
        if word == msg.COMMIT and arg:
            break
    os.close(ctl)
    msg.send_line(st, msg.OK)
    os.close(st)                    # the opener waits for this end of file before it returns

    mode = arg
    want = desired_enabled(mode)
    if mode != "native":
        _drop("entry")
    seen_ino = bm.entry_state(name, dir_fd=dir_fd)["ino"]
    expires, owner_pid, owner_start = config["expires"], config["owner_pid"], config["owner_start"]
    tick = 0
    quiet_until = 0.0               # a deferred re-assertion is retried at this pace, not every POLL
    while True:
        if _flags["closed"]:
            return 0
        if _flags["end"]:
            _end(window, lease_id, _flags["end"], error)
        if expires is not None and time.time() >= expires:
            _end(window, lease_id, "ttl_expired", error)
        tick += 1
        if owner_pid and tick % 5 == 0 and not pid_alive(owner_pid, owner_start):
            _end(window, lease_id, "owner_gone", error)
        if tick % 20 == 0:
            if not os.path.exists(status_path):
                return 0            # the binfmt_misc instance itself is gone
            if os.fstat(lock_fd).st_nlink == 0:
                return 0            # a closer removed our record (and our lock file)
            if not os.path.exists(window.state_path):
                return 0            # the records are gone (corrupt, moved aside): end, touching nothing
        try:
            entry = bm.entry_state(name, dir_fd=dir_fd)
            present, enabled, ino = entry["present"], entry["enabled"], entry["ino"]
        except OSError:
            present, enabled, ino = False, None, None
        if (ino != seen_ino or (present and enabled != want)) and time.time() >= quiet_until:
            _flags["critical"] = True
            try:
                still_open, ino, deferred = window.reassert(lease_id, mode, _held["ino"],
                                                            relock=lambda: relock(dir_fd, name))
            except error:       # (no mutex): tried again at the next look
                still_open, ino, deferred = True, seen_ino, True
            _flags["critical"] = False
            if not still_open or _flags["closed"]:
                return 0
            quiet_until = time.time() + 1.0 if deferred else 0.0
            if ino != seen_ino:
                seen_ino = ino
                if _held["ino"] != ino:
                    _drop("entry")  # a lock on an inode that is no longer the entry
        if mode == "native" and _held["entry"] is None and seen_ino is not None:
            try:            # absent, or kept out by an unprivileged LOCK_EX so far
                _take_entry(_try_lock_entry(dir_fd, name))
            except (_Busy, OSError):
                pass
        time.sleep(POLL)
