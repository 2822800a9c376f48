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
   the entry's state and inode, and its lease lock file (a closer unlinks it
   when it removes the record); when something changed the entry it imports
   ``window.py`` and calls ``Window.reassert`` (under the mutex). A holder
   that only watches never imports it: start-up and memory stay small;
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

# Only builtin modules above: window.py (json, re, ...) is imported only when
# the holder has to act.

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


POLL = 0.05     # seconds; window.POLL


class _Protocol(object):
    """window.py, imported only when the holder must act (re-assert, end):
    a holder that only watches never pays for json, re and the rest."""

    def __init__(self, config):
        self.config = config
        self.mod = None
        self.window = None

    def get(self):
        if self.window is None:
            sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
            import window as mod
            self.mod = mod
            c = self.config
            self.window = mod.Window(c["entry"], c["binfmt_misc"], c["run_dir"], instance_dir=c["instance_dir"])
        return self.window

    def end(self, lease_id, why):
        """End our own lease (restores when last out), then exit."""
        _flags["critical"] = True
        window = self.get()
        for dummy in range(30):
            try:
                window.end_lease(lease_id, why)
                break
            except self.mod.WindowError:
                time.sleep(1)
        os._exit(0)


def entry_status(path):
    """(present, enabled, inode) of the entry: one open, fstat and read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return False, None, None
        raise
    try:
        ino = os.fstat(fd).st_ino
        first = os.read(fd, 64).split(b"\n", 1)[0]
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return False, None, None
        raise
    finally:
        os.close(fd)
    return True, first.strip() == b"enabled", ino


def pid_alive(pid, start):
    """window.pid_alive, without importing it."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (IOError, OSError, IndexError):
        return False
    return fields[0] != "Z" and (start is None or int(fields[19]) == start)


def parse_config(args):
    """KEY=VALUE arguments (no json: it is slow to import)."""
    config = {}
    for arg in args:
        key, value = arg.partition("=")[::2]
        config[key] = value
    for key in ("ctl_fd", "st_fd"):
        config[key] = int(config[key])
    config["lock_deadline"] = float(config["lock_deadline"])
    config["expires"] = float(config["expires"]) if config.get("expires") else None
    config["owner_pid"] = int(config["owner_pid"]) if config.get("owner_pid") else None
    config["owner_start"] = int(config["owner_start"]) if config.get("owner_start") else None
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
    protocol = _Protocol(config)

    ctl, st = config["ctl_fd"], config["st_fd"]
    lease_id = config["lease_id"]
    entry_path = os.path.join(config["binfmt_misc"], config["entry"])
    status_path = os.path.join(config["binfmt_misc"], "status")
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
    line = _read_line(ctl)
    if line is None or not line.startswith("commit "):
        if line is None:            # the opener died: end our lease if it was recorded
            protocol.end(lease_id, "opener_gone")
        try:
            os.unlink(lock_path)
        except OSError:
            pass
        return 0
    os.close(ctl)
    _write(st, "ok")
    os.close(st)                    # the opener waits for this end of file before it returns

    mode = line.split()[1]
    want = mode == "emulation"      # window.desired_enabled
    expires, owner_pid, owner_start = config["expires"], config["owner_pid"], config["owner_start"]
    tick = 0
    while True:
        if _flags["closed"]:
            return 0
        if _flags["end"]:
            protocol.end(lease_id, _flags["end"])
        if expires is not None and time.time() >= expires:
            protocol.end(lease_id, "ttl_expired")
        tick += 1
        if owner_pid and tick % 5 == 0 and not pid_alive(owner_pid, owner_start):
            protocol.end(lease_id, "owner_gone")
        if tick % 20 == 0:
            if not os.path.exists(status_path):
                return 0            # the binfmt_misc instance itself is gone
            if os.fstat(lock_fd).st_nlink == 0:
                return 0            # a closer removed our record (and our lock file)
        try:
            present, enabled, ino = entry_status(entry_path)
        except OSError:
            present, enabled, ino = False, None, None
        if ino != seen_ino or (present and enabled != want):
            _flags["critical"] = True
            window = protocol.get()
            try:
                still_open, ino = window.reassert(lease_id, mode, seen_ino)
            except protocol.mod.WindowError:
                still_open, ino = True, seen_ino
            _flags["critical"] = False
            if not still_open or _flags["closed"]:
                return 0
            if ino != seen_ino:
                if entry_fd is not None:
                    os.close(entry_fd)
                entry_fd = _try_lock_entry(entry_path) if ino is not None else None
                seen_ino = ino
        elif entry_fd is None and seen_ino is not None:
            entry_fd = _try_lock_entry(entry_path)
        time.sleep(POLL)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
