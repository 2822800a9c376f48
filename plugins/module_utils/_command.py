# -*- coding: utf-8 -*-
# Copyright: (c) 2026, nativearm.binfmt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The parts of ``native_armhf_command`` that are not the window.

Pure functions (argument checks, the reason of a lease, output
lines) raise :class:`CommandError`; the personality value and the ``probe``
option are ``probe.py``'s (one place each); ``run`` is the one
I/O edge: it starts the command (optionally under PER_LINUX32, as
``linux32(8)`` does), forwards SIGTERM/SIGINT/SIGHUP to it, and collects its
output. Standard library only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import os
import re
import shlex
import signal
import time

from ansible_collections.nativearm.binfmt.plugins.module_utils.probe import PER_QUERY, linux32_personality

PR_SET_PDEATHSIG = 1
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class CommandError(Exception):
    """A command that cannot be run as asked; ``result`` holds keys for the task result."""

    def __init__(self, message, **result):
        super(CommandError, self).__init__(message)
        self.message = message
        self.result = result


# ---------------------------------------------------------------------------
# pure parts
# ---------------------------------------------------------------------------

def command_argv(argv=None, cmd=None):
    """The command as an argv list: ``argv`` as given, or ``cmd`` split like a shell
    splits words (never run by a shell)."""
    if cmd is not None:
        try:
            words = shlex.split(cmd)
        except ValueError as exc:
            raise CommandError("cmd: %r cannot be split into words (%s); give argv as a list" % (cmd, exc))
    else:
        words = list(argv or [])
    if not words or not words[0]:
        raise CommandError("argv/cmd: the command is empty; give the program to run, e.g. argv: [make, -j4]")
    return [str(w) for w in words]


def check_chdir(chdir, isdir=os.path.isdir):
    if chdir is None:
        return None
    if not os.path.isabs(chdir) or not isdir(chdir):
        raise CommandError("chdir: %r is not an existing directory given as an absolute path" % (chdir,))
    return chdir


def command_environment(base, extra):
    """``base`` (the module's environment) with ``extra`` added; names checked, values as text."""
    env = dict(base)
    for name, value in (extra or {}).items():
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            raise CommandError("environment: %r is not a variable name (letters, digits and '_', "
                               "not starting with a digit)" % (name,))
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value if isinstance(value, str) else str(value)
    return env


def stdin_bytes(text, add_newline=True):
    if text is None:
        return None
    if add_newline and not text.endswith("\n"):
        text += "\n"
    return text.encode("utf-8")


def output_text(data, strip_empty_ends=True):
    text = (data or b"").decode("utf-8", "replace")
    return text.rstrip("\r\n") if strip_empty_ends else text


def lease_reason(lease, entry):
    """Why the command runs natively or emulated, in words, from a window open result."""
    if lease.get("native"):
        probe = lease.get("probe") or {}
        how = probe.get("reason") or ("it joined a native window already open (%d lease(s))"
                                      % (lease.get("leases") or 1))
        return "native window: %s was disabled while the command ran; %s" % (entry, how)
    if lease.get("reason"):
        return lease["reason"]
    return ("mode emulation was asked for: %s was kept enabled, so armhf programs ran under qemu-arm"
            % entry)


def start_failure(argv, exc, native):
    """rc and message for a command that could not be started (as a shell reports it)."""
    rc = 127 if exc.errno == errno.ENOENT else 126
    msg = "the command could not be started: %s: %s" % (argv[0], exc.strerror or exc)
    if exc.errno == errno.ENOEXEC:
        msg += (" (the kernel refused the binary%s)"
                % (": 32-bit ARM ran natively in this window, so this is not an armhf binary the kernel can "
                   "load" if native else ""))
    return rc, msg


# ---------------------------------------------------------------------------
# the I/O edge: run it
# ---------------------------------------------------------------------------

def _libc():
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.personality.argtypes = [ctypes.c_ulong]
    libc.personality.restype = ctypes.c_int
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    libc.prctl.restype = ctypes.c_int
    return libc


def _preexec(libc, parent, linux32):
    """Runs in the child between fork and exec: die with the module (PR_SET_PDEATHSIG),
    then take the 32-bit personality. Anything raised here fails the start."""
    def preexec():
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0 or os.getppid() != parent:
            os._exit(125)               # the module is already gone: never run the command
        if linux32:
            current = libc.personality(PER_QUERY)
            if current == -1 or libc.personality(linux32_personality(current)) == -1:
                raise OSError(errno.EINVAL, "personality(PER_LINUX32) failed")
    return preexec


def run(argv, chdir=None, env=None, stdin=None, linux32=False, strip_empty_ends=True):
    """Run ``argv`` to its end; a dict with rc, stdout, stderr, duration, signals.

    The command stays in the module's process group (an async job's timeout
    kills both), dies with the module (PR_SET_PDEATHSIG, for the direct child),
    and gets SIGTERM/SIGINT/SIGHUP the module receives; the module then waits
    for it to end, so the caller's ``finally`` closes the lease after it.
    Raises OSError when the command cannot be started.
    """
    import subprocess
    libc = _libc()
    start = time.time()
    proc = subprocess.Popen(argv, cwd=chdir, env=env, close_fds=True,
                            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_preexec(libc, os.getpid(), linux32))
    received = []

    def forward(signum, frame):
        received.append(signum)
        try:
            proc.send_signal(signum)
        except OSError:
            pass

    previous = {}
    for signum in FORWARDED_SIGNALS:
        try:
            previous[signum] = signal.signal(signum, forward)
        except ValueError:              # not the main thread: nothing to forward
            break
    try:
        out, err = proc.communicate(stdin)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    end = time.time()
    return {"rc": proc.returncode, "stdout": output_text(out, strip_empty_ends),
            "stderr": output_text(err, strip_empty_ends), "duration": round(end - start, 3),
            "start": start, "end": end, "signals": received}
