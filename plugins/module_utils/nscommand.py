# -*- coding: utf-8 -*-
# Copyright: (c) 2026, nativearm.binfmt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run one command in its own user + mount namespace with a private binfmt_misc.

The child process enters the sandbox (:mod:`userns`), decides how armhf
binaries will run there (``native``: the private instance stays empty, so the
kernel runs them itself or refuses them; ``emulation``: qemu-arm alone is
registered in the private instance; ``auto``: probe natively first, register
qemu-arm only when the probe fails), then execs the command. The host's
binfmt_misc is never touched and no lock is taken.

The child reports the decision (or the reason it could not start the
command) to the parent as one JSON line on a close-on-exec pipe: EOF without
an error line means exec succeeded.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import selectors
import time

from ansible_collections.nativearm.binfmt.plugins.module_utils import binfmt_misc
from ansible_collections.nativearm.binfmt.plugins.module_utils.presets import preset
from ansible_collections.nativearm.binfmt.plugins.module_utils.probe import default_probe
from ansible_collections.nativearm.binfmt.plugins.module_utils._probe_run import direct_probe
from ansible_collections.nativearm.binfmt.plugins.module_utils.userns import enter_sandbox

# Where qemu-user-static (Debian/Ubuntu, with and without the -static suffix)
# puts the arm interpreter; the first that exists is used.
QEMU_ARM_CANDIDATES = ("/usr/bin/qemu-arm-static", "/usr/libexec/qemu-binfmt/arm-binfmt-P",
                       "/usr/bin/qemu-arm")


def find_qemu_arm(candidates=QEMU_ARM_CANDIDATES):
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def _probe_ok(argv):
    """(ran natively, reason): the probe run as is, here, interpreted by _probe_run.interpret."""
    result = direct_probe(argv, timeout=60, binfmt_misc=None)
    return result["native"] is True, "%s: %s" % (" ".join(argv), result["reason"])


def _setup_in_child(spec):
    """Runs in the forked child: enter the sandbox, set binfmt up; returns the report dict."""
    path = spec["binfmt_misc"]
    enter_sandbox(path, True)
    mode = spec["mode"]
    report = {"mode": mode, "native": mode == "native", "reason": None, "entries": []}
    if mode == "auto":
        ok, why = _probe_ok(spec["probe"])
        if ok:
            report.update(mode="native", native=True, reason="native probe passed: %s" % why)
        else:
            report.update(mode="emulation", native=False,
                          reason="native probe failed (%s): the kernel cannot run armhf natively "
                                 "here (no CONFIG_COMPAT, a CPU without AArch32 EL0, pages other than "
                                 "4 KiB, or not an arm64 host), so qemu-arm was registered in the "
                                 "private binfmt_misc" % why)
    elif mode == "native":
        report["reason"] = "mode native: the private binfmt_misc has no qemu-arm"
    else:
        report["reason"] = "mode emulation: only qemu-arm is registered in the private binfmt_misc"
    if report["mode"] == "emulation":
        interpreter = spec["interpreter"] or find_qemu_arm()
        if not interpreter:
            raise RuntimeError("emulation needs a qemu-arm interpreter and none of %s exists; install "
                               "qemu-user-static or set interpreter" % ", ".join(QEMU_ARM_CANDIDATES))
        magic, mask, offset = preset("arm")
        definition = binfmt_misc.make_definition("qemu-arm", interpreter, magic=magic, mask=mask,
                                                 offset=offset, flags=spec["flags"])
        try:
            binfmt_misc.register(definition, path)
        except OSError as exc:
            raise RuntimeError("registering qemu-arm (%s) in the private binfmt_misc failed: %s"
                               % (interpreter, binfmt_misc.errno_text(exc)))
        report["entries"].append(binfmt_misc.read_entry("qemu-arm", path))
    return report


def check_registration(interpreter=None, flags="F", allow_credentials=False):
    """Validate the private qemu-arm registration before anything runs; raise BinfmtError naming
    the option. C runs the interpreter with setuid binaries' credentials, which the namespace's
    identity map makes the host's real ones: it needs allow_credentials, as everywhere."""
    flags = binfmt_misc.normalize_flags(flags)
    if "C" in flags and not allow_credentials:
        raise binfmt_misc.BinfmtError("flags", "'C' runs the interpreter with the credentials of setuid "
                                               "binaries (real root here: the namespace maps ids 1:1), a "
                                               "privilege escalation risk; remove it or set allow_credentials: true")
    if interpreter is not None:
        magic, mask, offset = preset("arm")
        binfmt_misc.make_definition("qemu-arm", interpreter, magic=magic, mask=mask, offset=offset, flags=flags)
    return flags


def run(argv, binfmt_misc_path=binfmt_misc.DEFAULT_PATH, mode="auto", chdir=None, environ=None,
        probe=None, interpreter=None, flags="F", stdin=None, allow_credentials=False):
    """Run argv in a fresh sandbox; return a dict with rc, stdout, stderr, mode, native,
    reason, entries, start, end, delta and, when the command could not be started, error.
    Raises BinfmtError (before forking) for flags or an interpreter that cannot be registered."""
    flags = check_registration(interpreter, flags, allow_credentials)
    spec = {"binfmt_misc": binfmt_misc_path, "mode": mode, "probe": probe or default_probe(),
            "interpreter": interpreter, "flags": flags}
    env = dict(environ if environ is not None else os.environ)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    in_r, in_w = os.pipe()
    rep_r, rep_w = os.pipe2(os.O_CLOEXEC)
    start = time.time()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.dup2(in_r, 0)
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            for fd in (in_r, in_w, out_r, out_w, err_r, err_w, rep_r):
                os.close(fd)
            report = _setup_in_child(spec)
            if chdir:
                os.chdir(chdir)
            os.write(rep_w, (json.dumps({"report": report}) + "\n").encode())
            try:
                os.execvpe(argv[0], argv, env)
            except OSError as exc:
                os.write(rep_w, (json.dumps({"exec_error": "%s: %s" % (argv[0], exc.strerror),
                                             "errno": exc.errno}) + "\n").encode())
                os._exit(126 if exc.errno != 2 else 127)
        except BaseException as exc:  # report every setup failure to the parent
            try:
                os.write(rep_w, (json.dumps({"setup_error": str(exc)}) + "\n").encode())
            finally:
                os._exit(125)
    for fd in (in_r, out_w, err_w, rep_w):
        os.close(fd)
    if stdin:
        # small inputs only; the command reads them from the pipe buffer
        os.write(in_w, stdin.encode() if not isinstance(stdin, bytes) else stdin)
    os.close(in_w)
    buffers = {out_r: bytearray(), err_r: bytearray(), rep_r: bytearray()}
    selector = selectors.DefaultSelector()
    for fd in buffers:
        selector.register(fd, selectors.EVENT_READ)
    open_fds = set(buffers)
    while open_fds:
        for key, _events in selector.select():
            data = os.read(key.fd, 65536)
            if data:
                buffers[key.fd].extend(data)
            else:
                selector.unregister(key.fd)
                os.close(key.fd)
                open_fds.discard(key.fd)
    selector.close()
    status = os.waitpid(pid, 0)[1]
    end = time.time()
    rc = os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else (
        os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status))
    result = {"rc": rc, "stdout": buffers[out_r].decode("utf-8", "replace"),
              "stderr": buffers[err_r].decode("utf-8", "replace"),
              "mode": mode, "native": None, "reason": None, "entries": [],
              "start": start, "end": end, "delta": round(end - start, 3), "error": None}
    for line in buffers[rep_r].decode("utf-8", "replace").splitlines():
        message = json.loads(line)
        if "report" in message:
            result.update(message["report"])
        if "setup_error" in message:
            result["error"] = message["setup_error"]
        if "exec_error" in message:
            result["error"] = message["exec_error"]
            if message.get("errno") == 8:  # ENOEXEC
                result["error"] += (" (the kernel refused the binary: in mode %s the private "
                                    "binfmt_misc has %s)" % (result["mode"], "no qemu-arm"
                                                             if result["mode"] == "native" else
                                                             "only qemu-arm"))
    return result
