# -*- coding: utf-8 -*-
# Copyright: (c) 2026, nativearm.binfmt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running the native armhf probe (``probe.select_probe``'s choice) and reading its outcome.

Two ways to run it:

- ``namespace`` (Linux >= 6.7, touches nothing): the probe runs in a new user +
  mount namespace with its own, empty binfmt_misc instance, so qemu-arm cannot
  catch it while the host's entry stays registered and enabled;
- ``direct``: the probe just runs. Only meaningful while qemu-arm is disabled
  (the window module toggles the entry; this module only runs and interprets).

``interpret`` turns what happened into {native, reason, ...}; it is pure so every
outcome is unit-tested. ``native`` is True/False, or None when the question
could not be asked (no probe binary, namespace method unavailable, timeout).
``native_armhf`` is binfmt_info's fact: the capability check, then (only where
it cannot decide) the direct probe when no enabled entry would catch it.

Imported only where a probe runs (``probe.capability`` past its checks that
need none, a window's real probe, binfmt_info, binfmt_namespace_command): a
build on a host whose architecture or CPU rules native armhf out (x86_64, no
AArch32 EL0) never compiles it.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import os
import signal

# shutil and subprocess are imported where used.

from ansible_collections.nativearm.binfmt.plugins.module_utils import binfmt_misc as kernel
from ansible_collections.nativearm.binfmt.plugins.module_utils.probe import (
    ARM_MACHINES, DEFAULT_BINFMT_MISC, DEFAULT_TIMEOUT, PAGE_ALIGN_MARK, capability, host_facts, select_probe)

# Runs inside the new namespaces: mount a private binfmt_misc over the given
# path, then exec the probe. Parameters arrive as "$1" "$@", never in the script.
# (Through sh's exec builtin: unshare's own execvp would run an ELF the kernel
# refuses as a shell script instead of reporting ENOEXEC.)
_NAMESPACE_SCRIPT = ('mount -t binfmt_misc binfmt_misc "$1" || '
                     '{ echo "nativearm-probe: cannot mount a private binfmt_misc" >&2; exit 125; }; '
                     'shift; exec "$@"')
MOUNT_REFUSED_RC = 125
MOUNT_REFUSED_MARK = "nativearm-probe: cannot mount a private binfmt_misc"
OUTPUT_LIMIT = 2000
# Older glibc releases print the same refusal as "not properly aligned".
PAGE_ALIGN_MARKS = (PAGE_ALIGN_MARK, "ELF load command address/offset not properly aligned")


def namespace_command(argv, binfmt_misc=DEFAULT_BINFMT_MISC, unshare="unshare", shell="/bin/sh"):
    """The argv that runs ``argv`` in a new user + mount namespace with an empty binfmt_misc."""
    return [unshare, "--user", "--map-root-user", "--mount",
            shell, "-c", _NAMESPACE_SCRIPT, "nativearm-probe", binfmt_misc] + list(argv)


def _trim(text):
    text = (text or "").strip()
    return text if len(text) <= OUTPUT_LIMIT else text[:OUTPUT_LIMIT] + " [...]"


def _not_arm_reason(machine):
    if machine in ARM_MACHINES:
        return None
    return "this host is %s, not aarch64/armv7l/armv8l: it can only emulate armhf" % machine


def interpret(method, command, rc=None, output="", exec_errno=None, timed_out=False,
              timeout=None, machine="aarch64", page_size=4096, release=None):
    """What a probe run says about native armhf: a result dict.

    ``rc`` is the exit status as subprocess gives it (negative: killed by that
    signal); ``exec_errno`` is set when spawning the probe directly failed.
    """
    result = {"native": None, "method": method, "command": list(command), "rc": rc,
              "output": _trim(output), "reason": None, "available": True}
    text = result["output"]
    if timed_out:
        result["reason"] = "the probe did not finish within %s seconds" % timeout
        return result
    if method == "namespace" and (rc == MOUNT_REFUSED_RC and MOUNT_REFUSED_MARK in text
                                  or rc == 1 and text.startswith("unshare:")):
        result["available"] = False
        result["reason"] = ("the namespace method is unavailable: a private binfmt_misc could not be had "
                            "in a new user namespace (that needs Linux >= 6.7%s): %s"
                            % ("; this kernel is %s" % release if release else "", text))
        return result
    enoexec = exec_errno == errno.ENOEXEC or (rc == 126 and "Exec format error" in text)
    mark = [m for m in PAGE_ALIGN_MARKS if m in text] if rc else []
    if mark:
        result["native"] = False
        result["reason"] = ("%s: the kernel ran the armhf loader but it could not map the armhf libc "
                            "(the page size is %d and the libc is linked for smaller pages), so no "
                            "dynamically linked armhf program can run natively here" % (mark[0], page_size))
        return result
    if exec_errno == errno.ENOENT or (rc == 127 and not enoexec and "not found" in text):
        result["reason"] = ("the probe was not found (%s); the standard probe (the armhf loader "
                            "and libc) comes with gcc-arm-linux-gnueabihf" % text)
        return result
    if exec_errno is not None and not enoexec:
        result["reason"] = "the probe could not be started: %s" % os.strerror(exec_errno)
        return result
    result["native"] = False
    if rc == 0 and not enoexec:
        result["native"] = True
        result["reason"] = "the probe ran natively (exit status 0)"
    elif enoexec:
        result["reason"] = "Exec format error: " + (_not_arm_reason(machine) or (
            "the kernel refused the 32-bit ARM ELF: it was built without CONFIG_COMPAT, "
            "or the CPU has no AArch32 at EL0 (e.g. Apple silicon)"))
    elif rc in (-signal.SIGILL, 128 + signal.SIGILL):
        result["reason"] = "SIGILL: " + (_not_arm_reason(machine) or (
            "the CPU refused an instruction of the 32-bit ARM probe "
            "(no AArch32 at EL0, or an instruction set extension it lacks)"))
    elif rc is not None and rc < 0:
        result["reason"] = "the probe was killed by signal %d" % abs(rc)
    else:
        result["reason"] = "the probe exited with status %s" % rc
    return result


def _run(method, command, timeout, facts, probe_kind):
    import subprocess
    # strerror texts such as "Exec format error" are matched: keep them in English.
    env = dict(os.environ, LC_ALL="C")
    try:
        proc = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=timeout, env=env, check=False)
        result = interpret(method, command, rc=proc.returncode,
                           output=proc.stdout.decode("utf-8", "replace"), machine=facts["machine"],
                           page_size=facts["page_size"], release=facts.get("release"))
    except subprocess.TimeoutExpired as exc:
        result = interpret(method, command, output=(exc.output or b"").decode("utf-8", "replace"),
                           timed_out=True, timeout=timeout)
    except OSError as exc:
        result = interpret(method, command, output=str(exc), exec_errno=exc.errno,
                           machine=facts["machine"], page_size=facts["page_size"])
        if method == "namespace":  # unshare itself could not start
            result.update(native=None, available=False,
                          reason="the namespace method is unavailable: %s could not be started: %s"
                                 % (command[0], os.strerror(exc.errno)))
    result["probe"] = probe_kind
    return result


def _missing(method, reason):
    return {"native": None, "method": method, "command": [], "rc": None, "output": "",
            "reason": reason, "available": True, "probe": None}


def entries_matching(header, file_name, entries):
    """Names of the enabled entries that would claim a file with this header and name.

    ``header`` is the file's first bytes, ``entries`` {name: parsed entry}.
    """
    return sorted(name for name, entry in entries.items()
                  if entry.get("enabled") and kernel.matches(entry, header, file_name))


def emulating_entries(program, binfmt_misc=DEFAULT_BINFMT_MISC):
    """Enabled entries of the binfmt_misc at ``binfmt_misc`` that would run ``program``
    through an interpreter ([] when none does, or when that cannot be read)."""
    import shutil
    path = program if os.sep in program else shutil.which(program)
    try:
        if not path or not kernel.read_status(binfmt_misc):
            return []
        with open(path, "rb") as f:
            header = f.read(kernel.BINPRM_BUF_SIZE)
        return entries_matching(header, os.path.basename(path), kernel.read_all_entries(binfmt_misc))
    except (OSError, ValueError):
        return []


def direct_probe(probe=None, timeout=DEFAULT_TIMEOUT, facts=None, exists=os.path.exists,
                 binfmt_misc=DEFAULT_BINFMT_MISC):
    """Run the probe as is and interpret the outcome (method "direct").

    When an enabled entry of ``binfmt_misc`` (qemu-arm, or any other) would
    run the probe through an emulator, the probe is not run: ``native`` is
    None and ``caught_by`` names the entries. ``binfmt_misc=None`` runs it
    regardless.
    """
    kind, argv, reason = select_probe(probe, exists)
    if argv is None:
        return _missing("direct", reason)
    caught = emulating_entries(argv[0], binfmt_misc) if binfmt_misc else []
    if caught:
        result = _missing("direct", "the enabled binfmt_misc entr%s %s would run the probe through an "
                                    "emulator; disable %s for a direct probe, or use the namespace method"
                                    % ("y" if len(caught) == 1 else "ies", ", ".join(caught),
                                       "it" if len(caught) == 1 else "them"))
        result.update(command=argv, probe=kind, caught_by=caught)
        return result
    result = _run("direct", argv, timeout, facts or host_facts(), kind)
    result["caught_by"] = []
    return result


def namespace_probe(probe=None, timeout=DEFAULT_TIMEOUT, binfmt_misc=DEFAULT_BINFMT_MISC,
                    unshare="unshare", facts=None, exists=os.path.exists):
    """Run the probe in a new user + mount namespace with an empty binfmt_misc (method "namespace").

    The host's binfmt_misc is never written; on kernels older than 6.7 the
    result says ``available: False`` and ``native: None``.
    """
    kind, argv, reason = select_probe(probe, exists)
    if argv is None:
        return _missing("namespace", reason)
    return _run("namespace", namespace_command(argv, binfmt_misc, unshare), timeout,
                facts or host_facts(), kind)


def native_armhf(binfmt_misc=DEFAULT_BINFMT_MISC, probe=None, host=None, exists=os.path.exists,
                 capability_check=None):
    """binfmt_info's native armhf facts: :func:`capability`, and where it cannot decide
    because no private instance can be had, the probe run directly, but only when no
    enabled entry of ``binfmt_misc`` would catch it. Writes nothing, touches no entry.

    {native, reason, method, arch, page_size, aarch32_el0, probe}; ``host`` is
    :func:`host_facts`' dict.
    """
    host = host or host_facts()
    verdict = (capability_check or capability)(probe=probe, page_size=host["page_size"])
    result = dict(verdict)
    result["native"] = result.pop("native_possible")
    private = verdict["probe"]
    if result["native"] is not None or (private is not None and private.get("available", True)):
        return result
    direct = direct_probe(probe, facts=host, exists=exists, binfmt_misc=binfmt_misc)
    result["probe"] = direct
    if direct.get("caught_by"):
        result["reason"] = ("%s; %s; only a native window (nativearm.binfmt.native_armhf_window) can tell"
                            % (verdict["reason"], direct["reason"]))
    elif direct["native"] is not None:
        result.update(native=direct["native"], method="direct",
                      reason="the probe, run directly (no enabled entry would catch it): %s" % direct["reason"])
    else:
        result["reason"] = "%s; the direct probe: %s" % (verdict["reason"], direct["reason"])
    return result
