# -*- coding: utf-8 -*-
# Copyright: (c) 2026, nativearm.binfmt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The detached process that holds one native armhf window lease.

Not imported by modules: ``window.py`` copies this file and itself into the
root-only run directory (``code/<hash>/``) and runs
``python -I -S _holder.py nativearm-window-holder KEY=VALUE...`` in a new
session, stdio on /dev/null, with two pipe descriptors. The holder:

1. takes LOCK_EX on its lease lock file (the kernel drops it when the holder
   dies: that is the lease's liveness) and LOCK_SH on the entry (bounded by
   the opener's deadline; ``blocked`` when a foreign LOCK_EX outlasts it);
2. writes ``ready``, then waits for ``commit MODE`` (answers ``ok``) or
   ``abort``; end of file before ``commit`` means the opener died, so it ends
   its lease itself (restoring the prior state if it was the last);
3. watches every ``window.POLL`` seconds: ttl, owner_pid (pid + start time),
   the entry's state and inode, re-asserting the mode's state through
   ``Window.reassert`` when something changed it;
4. SIGUSR1 = "a closer already ended your lease": exit at once. SIGTERM,
   SIGINT, SIGHUP = end the lease properly, then exit.

Every invariant is enforced by ``window.py``; this file is only the loop.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import fcntl
import os
import signal
import sys
import time

# Only builtin modules above: the opener waits for "ready", so the holder
# imports window.py (json, re, ...) only after answering it.

_flags = {"end": None, "closed": False, "critical": False}


def _on_usr1(signum, frame):
    _flags["closed"] = True
    if not _flags["critical"]:
        os._exit(0)


def _on_term(signum, frame):
    _flags["end"] = "signal_%d" % signum


def _write(fd, text):
    try:
        os.write(fd, (text + "\n").encode("utf-8"))
    except OSError:
        pass


def _read_line(fd):
    buf = b""
    while not buf.endswith(b"\n"):
        try:
            chunk = os.read(fd, 256)
        except OSError as exc:
            if exc.errno == errno.EINTR:
                continue
            return None
        if not chunk:
            return None
        buf += chunk
    return buf.decode("utf-8", "replace").strip()


class _Blocked(Exception):
    pass


def _lock_entry(path, deadline):
    """(fd, inode) with LOCK_SH on the entry, (None, None) when absent; raises
    _Blocked when a foreign exclusive lock outlasts ``deadline``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None, None
    delay = 0.002
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return fd, os.fstat(fd).st_ino
        except (IOError, OSError) as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                os.close(fd)
                raise
        if time.time() >= deadline:
            os.close(fd)
            raise _Blocked()
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _try_lock_entry(path):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except (IOError, OSError):
        os.close(fd)
        return None
    return fd


def _end(window, lease_id, why):
    _flags["critical"] = True
    for _ in range(30):
        try:
            window.end_lease(lease_id, why)
            break
        except window_module().WindowError:
            time.sleep(1)
    os._exit(0)


_WINDOW = {}


def window_module():
    return _WINDOW["mod"]


def parse_config(args):
    """KEY=VALUE arguments (no json: it is slow to import)."""
    config = {}
    for arg in args:
        key, _, value = arg.partition("=")
        config[key] = value
    for key in ("ctl_fd", "st_fd"):
        config[key] = int(config[key])
    config["lock_deadline"] = float(config["lock_deadline"])
    return config


def main(argv):
    if len(argv) < 4 or argv[1] != "nativearm-window-holder":
        sys.stderr.write("usage: _holder.py nativearm-window-holder KEY=VALUE...\n")
        return 2
    config = parse_config(argv[2:])
    signal.signal(signal.SIGUSR1, _on_usr1)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _on_term)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)

    ctl, st = config["ctl_fd"], config["st_fd"]
    lease_id = config["lease_id"]
    entry_path = os.path.join(config["binfmt_misc"], config["entry"])
    lock_path = os.path.join(config["instance_dir"], config["lock"])
    lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    try:
        entry_fd, seen_ino = _lock_entry(entry_path, config["lock_deadline"])
    except _Blocked:
        _write(st, "blocked")
        os.unlink(lock_path)
        return 1
    _write(st, "ready")
    # The opener now works under its mutex; import the protocol meanwhile, so
    # the watch loop is running by the time the open returns.
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import window as window_mod
    _WINDOW["mod"] = window_mod
    window = window_mod.Window(config["entry"], config["binfmt_misc"], config["run_dir"],
                               instance_dir=config["instance_dir"])
    line = _read_line(ctl)
    if line is not None and line.startswith("commit "):
        os.close(ctl)
        _write(st, "ok")
        os.close(st)        # the opener waits for this end of file before it returns
    if line is None or not line.startswith("commit "):
        if line is None:            # the opener died: end our lease if it was recorded
            _end(window, lease_id, "opener_gone")
        try:
            os.unlink(lock_path)
        except OSError:
            pass
        return 0
    mode = line.split()[1]

    state = window.load()
    record = state["leases"].get(lease_id) or {}
    expires = record.get("expires")
    owner_pid, owner_start = record.get("owner_pid"), record.get("owner_start")
    want = window_mod.desired_enabled(mode)
    status_path = os.path.join(window.binfmt_misc, "status")
    tick = 0
    while True:
        if _flags["closed"]:
            return 0
        if _flags["end"]:
            _end(window, lease_id, _flags["end"])
        now = time.time()
        if expires is not None and now >= expires:
            _end(window, lease_id, "ttl_expired")
        tick += 1
        if owner_pid and tick % 5 == 0 and not window_mod.pid_alive(owner_pid, owner_start):
            _end(window, lease_id, "owner_gone")
        try:
            status = window.entry_status()
        except OSError:
            status = None
        if status is None or (tick % 20 == 0 and not os.path.exists(status_path)):
            return 0                # the binfmt_misc instance itself is gone
        if status["ino"] != seen_ino or (status["present"] and status["enabled"] != want):
            _flags["critical"] = True
            try:
                still_open, ino = window.reassert(lease_id, mode, seen_ino)
            except window_mod.WindowError:
                still_open, ino = True, seen_ino
            _flags["critical"] = False
            if not still_open or _flags["closed"]:
                return 0
            if ino != seen_ino:
                if entry_fd is not None:
                    os.close(entry_fd)
                entry_fd = _try_lock_entry(window.entry_path) if ino is not None else None
                seen_ino = ino
        elif entry_fd is None and seen_ino is not None:
            entry_fd = _try_lock_entry(window.entry_path)
        if tick % 20 == 0:
            try:
                if lease_id not in window.load()["leases"]:
                    return 0
            except (OSError, ValueError):
                pass
        time.sleep(window_mod.POLL)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
