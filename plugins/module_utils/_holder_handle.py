# -*- coding: utf-8 -*-
# Copyright: (c) 2026, nativearm.binfmt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The opener's side of a lease holder, and the messages both sides exchange.

Private to ``window.py`` (which documents the protocol) and ``_holder.py``
(the holder's side: process set-up and loop). A holder is forked by its
opener (``spawn``) and talks to it through two pipes, one line per message:

  holder -> opener  ``ready``                  its lease lock is taken
  opener -> holder  ``hold MODE``              take MODE's instance-wide mark
                                               (native, emulation, or none)
  holder -> opener  ``held`` / ``held OFFSET`` taken (OFFSET: emulation marker)
                    ``busy``                   a LOCK_EX kept LOCK_SH out
                    ``error TEXT``             could not
  opener -> holder  ``commit MODE``            the lease is admitted in MODE
  holder -> opener  ``ok``                     then it closes both pipes
  opener -> holder  ``abort``                  never admitted: go away

End of file on the holder's side before ``commit`` means the opener died.
Standard library only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import os
import signal
import time

from ansible_collections.nativearm.binfmt.plugins.module_utils import binfmt_misc as bm
from ansible_collections.nativearm.binfmt.plugins.module_utils._window_proc import (
    CHILDREN, proc_start_time, reap_children, wait_exit)

POLL = 0.05               # holder watch period and waiter retry period (seconds)
START_WAIT = 20.0         # a forked holder answers in milliseconds; this bounds a stuck machine

READY = "ready"
HOLD = "hold"
HELD = "held"
BUSY = "busy"
ERROR = "error"
COMMIT = "commit"
OK = "ok"
ABORT = "abort"


def message(word, arg=None):
    """One message line's text: ``word`` or ``word arg``."""
    return word if arg is None else "%s %s" % (word, arg)


def parse(line):
    """(word, argument or None) of a message line; (None, None) for no line."""
    if not line:
        return None, None
    parts = line.split(None, 1)
    return parts[0], (parts[1] if len(parts) > 1 else None)


def send_line(fd, text):
    """Write one message; False when the other side is gone."""
    try:
        os.write(fd, (text + "\n").encode("utf-8"))
        return True
    except OSError:
        return False


def read_line(fd):
    """Read one message, blocking (the holder's side); None at end of file."""
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


class HolderHandle(object):
    """The opener's handle on a forked holder process, before and at ``commit``."""

    def __init__(self, pid, ctl_w, st_r, lock_name):
        self.pid = pid
        self.start = None           # its start time, read once it is ready (pid reuse checks)
        self.ctl_w = ctl_w
        self.st_r = st_r
        self.lock_name = lock_name
        self.ended = False          # killed and reaped: its pid is no longer ours to signal
        self._buf = b""

    def read_line(self, timeout):
        import select
        deadline = time.time() + timeout
        while b"\n" not in self._buf:
            remaining = deadline - time.time()
            if remaining <= 0:
                return None
            ready = select.select([self.st_r], [], [], remaining)[0]
            if not ready:
                continue
            chunk = os.read(self.st_r, 4096)
            if not chunk:
                return None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode("utf-8", "replace")

    def wait_eof(self, timeout):
        """Wait until the holder has closed its end of the status pipe."""
        import select
        deadline = time.time() + timeout
        while time.time() < deadline:
            ready = select.select([self.st_r], [], [], max(deadline - time.time(), 0))[0]
            if ready and not os.read(self.st_r, 4096):
                return True
        return False

    def send(self, text):
        return send_line(self.ctl_w, text)

    def request(self, text, timeout=START_WAIT):
        """Send one message and read the answer; None when there is none."""
        return self.read_line(timeout) if self.send(text) else None

    def commit(self, mode):
        """``commit MODE``; True when the holder answered ``ok`` and closed its
        pipes. Our ends of the pipes are closed either way."""
        if self.request(message(COMMIT, mode)) == OK:
            self.wait_eof(START_WAIT)
            self.close_pipes()
            return True
        self.close_pipes()
        return False

    def close_pipes(self):
        for fd in (self.ctl_w, self.st_r):
            try:
                os.close(fd)
            except OSError:
                pass
        self.ctl_w = self.st_r = -1

    def dismiss(self):
        """Tell a holder that was never committed to go away (it never touched the state)."""
        if self.ended:
            return
        self.send(ABORT)
        self.close_pipes()
        if not wait_exit(self.pid, None, 5):
            self.kill()

    def kill(self):
        """SIGKILL (its lease, if recorded, becomes dead: recovery ends it) and wait.
        Once reaped its pid may be reused: it is never signalled again."""
        if self.ended:
            return
        try:
            os.kill(self.pid, signal.SIGKILL)
        except OSError:
            pass
        self.ended = wait_exit(self.pid, None, 5)
        self.close_pipes()


def spawn(window, config, wait, error):
    """Fork a holder for the lease in ``config`` and wait (``wait`` seconds) for
    its ``ready``; returns its HolderHandle. ``window`` is the holder's own
    Window of the instance, ``error`` the WindowError class."""
    from ansible_collections.nativearm.binfmt.plugins.module_utils import _holder
    reap_children()
    try:        # the holder reaches the entry and register through this checked descriptor only
        dir_fd = bm.open_dir(window.binfmt_misc)
    except (bm.BinfmtError, OSError) as exc:
        raise error("binfmt_misc: %s" % (getattr(exc, "message", None) or exc))
    config = dict(config, dir_fd=dir_fd)
    ctl_r, ctl_w = os.pipe()
    st_r, st_w = os.pipe()
    try:
        pid = os.fork()
    except OSError as exc:
        for fd in (ctl_r, ctl_w, st_r, st_w, dir_fd):
            os.close(fd)
        raise error("could not fork the lease holder: %s" % exc)
    if pid == 0:                                    # the holder: never returns from here
        _holder.run_forked(window, config, ctl_r, st_w, error)
    CHILDREN.add(pid)
    for fd in (ctl_r, st_w, dir_fd):
        os.close(fd)
    holder = HolderHandle(pid, ctl_w, st_r, config["lock"])
    line = holder.read_line(wait)
    if line == READY:
        holder.start = proc_start_time(pid)
        return holder
    holder.close_pipes()
    if not wait_exit(pid, None, 5):
        holder.kill()
    raise error("the lease holder (pid %d) did not start: %s" % (pid, line or "no answer"))
