# -*- coding: utf-8 -*-
# Copyright: (c) 2026, nativearm.binfmt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The native armhf probe: can this kernel run 32-bit ARM (armhf) ELF itself?

First :func:`capability`, a check that writes nothing and touches no entry:
the host architecture; on arm64, personality(PER_LINUX32), which the kernel
refuses with EINVAL when the CPU has no 32-bit EL0 (arch/arm64/kernel/sys.c);
the page size (armhf userlands are linked for 4 KiB pages: on a 16K-page
kernel static armhf programs run but every dynamic one fails with "ELF load
command address/offset not page-aligned"); and, where Linux >= 6.7, the real
probe in a private binfmt_misc instance. Only where it answers None does a
window have to disable the entry and run the real probe (the ``direct``
method below).

The probe itself (:func:`select_probe`, the one selection every module and
role uses) is the armhf loader loading the armhf libc, i.e. what a dynamic
armhf build needs. Two ways to run it:

- ``namespace`` (Linux >= 6.7, touches nothing): the probe runs in a new user +
  mount namespace with its own, empty binfmt_misc instance, so qemu-arm cannot
  catch it while the host's entry stays registered and enabled;
- ``direct``: the probe just runs. Only meaningful while qemu-arm is disabled
  (the window module toggles the entry; this module only runs and interprets).

``interpret`` turns what happened into {native, reason, ...}; it is pure so every
outcome is unit-tested. ``native`` is True/False, or None when the question
could not be asked (no probe binary, namespace method unavailable, timeout).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import os
import shlex
import signal

# ctypes, shutil and subprocess are imported where used: window.py imports this
# module for its default probe, and a window close needs none of them.

from ansible_collections.nativearm.binfmt.plugins.module_utils import binfmt_misc as kernel

DEFAULT_BINFMT_MISC = "/proc/sys/fs/binfmt_misc"
DEFAULT_TIMEOUT = 30

CROSS_LIB = "/usr/arm-linux-gnueabihf/lib"
MULTIARCH_LIB = "/usr/lib/arm-linux-gnueabihf"
# (kind, argv, package that ships it), in order of preference. Each runs the
# armhf loader on the armhf libc (glibc's libc.so.6 is runnable and prints its
# version), so it passes only where a dynamic armhf program can load: static
# helpers (arch-test's) and `ld.so --help` also pass on 16K-page kernels, where
# every dynamic armhf binary fails. Every path of the argv must exist.
CANDIDATES = (
    ("libc", [CROSS_LIB + "/ld-linux-armhf.so.3", "--library-path", CROSS_LIB, CROSS_LIB + "/libc.so.6"],
     "gcc-arm-linux-gnueabihf"),
    ("libc", ["/usr/lib/ld-linux-armhf.so.3", "--library-path", MULTIARCH_LIB, MULTIARCH_LIB + "/libc.so.6"],
     "libc6:armhf"),
)
ARM_MACHINES = ("aarch64", "arm64", "armv7l", "armv8l", "armv8b")
# Machines whose kernel may run armhf EL0 code; uname says armv8l for a process
# under linux32 (PER_LINUX32) on arm64.
NATIVE_MACHINES = ("aarch64", "armv7l", "armv8l")
PAGE_SIZE_4K = 4096
# personality(2): the one place for these (native_armhf_command's linux32 uses them too)
PER_LINUX32 = 0x0008
PER_MASK = 0x00ff           # the personality proper; the bits above are flags (ADDR_NO_RANDOMIZE, ...)
PER_QUERY = 0xffffffff      # asks for the current persona, changes nothing
PAGE_ALIGN_MARK = "ELF load command address/offset not page-aligned"
# What the armhf loader says under qemu-arm on 16K host pages (measured on Debian 13's arm64-16k).
QEMU_MAP_MARK = "failed to map segment from shared object"
# Older glibc releases print the same refusal as "not properly aligned".
PAGE_ALIGN_MARKS = (PAGE_ALIGN_MARK, "ELF load command address/offset not properly aligned")
MIN_PRIVATE_KERNEL = (6, 7)  # binfmt_misc is per user namespace since Linux 6.7

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


def probe_option(value):
    """The ``probe`` option of the window and command modules as an argv list, or
    None (left out: select_probe chooses). A string is split like a shell would,
    never run by one. Raises ValueError (its text names the option)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            argv = shlex.split(value)
        except ValueError as exc:
            raise ValueError("probe: %r cannot be split into words (%s)" % (value, exc))
    elif isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float)) for v in value):
        argv = [str(v) for v in value]
    else:
        raise ValueError("probe: must be an argv list or a command string, got %r" % (value,))
    if not argv:
        raise ValueError("probe: the command is empty")
    return argv


def default_probe(exists=os.path.exists):
    """The argv of the default probe: select_probe's choice, else its first candidate
    (whose absence the probe's failure then names)."""
    return select_probe(None, exists)[1] or list(CANDIDATES[0][1])


def select_probe(custom=None, exists=os.path.exists):
    """(kind, argv, package) of the probe to run, or (None, None, reason) when none is installed.

    A caller-given argv (``custom``, a list) wins; otherwise the first candidate
    whose files all exist. This is the one probe selection of the collection.
    """
    if custom:
        return "custom", list(custom), None
    for kind, argv, package in CANDIDATES:
        if all(exists(arg) for arg in argv if arg.startswith("/")):
            return kind, list(argv), package
    return None, None, ("no armhf probe is installed: it needs the armhf loader and libc (looked for %s); "
                        "install gcc-arm-linux-gnueabihf" % " and ".join(argv[-1] for _k, argv, _p in CANDIDATES))


def namespace_command(argv, binfmt_misc=DEFAULT_BINFMT_MISC, unshare="unshare", shell="/bin/sh"):
    """The argv that runs ``argv`` in a new user + mount namespace with an empty binfmt_misc."""
    return [unshare, "--user", "--map-root-user", "--mount",
            shell, "-c", _NAMESPACE_SCRIPT, "nativearm-probe", binfmt_misc] + list(argv)


def host_facts():
    """Machine, kernel release and page size of this host."""
    uname = os.uname()
    return {"machine": uname.machine, "release": uname.release,
            "page_size": os.sysconf("SC_PAGE_SIZE")}


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
                            "(the page size is %d; armhf userlands are linked for 4 KiB pages), so no "
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
    if machine == "aarch64" and page_size != 4096:
        result["reason"] = ("the kernel uses %d KiB pages; armhf userlands need 4 KiB pages, so 32-bit ARM "
                            "cannot run natively here (the probe %s)"
                            % (page_size // 1024, "ran" if rc == 0 else "failed too"))
    elif rc == 0 and not enoexec:
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


# ---------------------------------------------------------------------------
# the capability check: writes nothing, touches no entry
# ---------------------------------------------------------------------------

def _libc_personality(persona):
    """personality(2) through the C library: the previous persona; OSError on failure."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.personality.argtypes = [ctypes.c_ulong]
    libc.personality.restype = ctypes.c_int
    ret = libc.personality(ctypes.c_ulong(persona))
    if ret == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def linux32_personality(current):
    """The persona that makes ``current`` PER_LINUX32 and keeps its flags."""
    return (int(current) & ~PER_MASK & 0xffffffff) | PER_LINUX32


def aarch32_el0(personality=_libc_personality):
    """(True | False | None, detail): can this kernel run 32-bit EL0 code at all?

    Asks for PER_LINUX32, which arm64 refuses with EINVAL when no CPU has 32-bit
    EL0, and puts the previous persona back at once (only this thread's persona
    changes, for the length of two system calls; no entry is touched).
    """
    try:
        old = personality(PER_QUERY)
        try:
            personality(linux32_personality(old))
        finally:
            if old != linux32_personality(old):
                personality(old)
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            return False, "personality(PER_LINUX32) failed with EINVAL"
        return None, "personality(PER_LINUX32) could not be asked: %s" % (exc.strerror or exc)
    return True, "personality(PER_LINUX32) succeeded"


def aarch32_el0_fact(machine, personality=_libc_personality):
    """:func:`aarch32_el0`'s answer on an ARM machine, None elsewhere (not asked)."""
    return aarch32_el0(personality)[0] if machine in NATIVE_MACHINES else None


def decide(arch, page_size, el0, el0_detail="", private=None, private_unavailable=None):
    """The capability verdict from what was found; pure.

    ``el0`` is :func:`aarch32_el0`'s answer (None when not asked), ``private`` a
    :func:`namespace_probe` result, or None when it was not run (then
    ``private_unavailable`` may say why it could not be). Returns the dict
    :func:`capability` documents; ``native_possible`` is False when certain, True
    only from a probe that ran in a private instance, None when only the real
    probe (with the entry disabled) can decide.
    """
    result = {"native_possible": None, "reason": None, "arch": arch, "page_size": page_size,
              "aarch32_el0": el0, "method": None, "probe": private}
    if arch not in NATIVE_MACHINES:
        result.update(native_possible=False, method="architecture",
                      reason="this host is %s: it can only emulate armhf" % arch)
        return result
    if el0 is False:
        result.update(native_possible=False, method="personality",
                      reason="the CPU/kernel has no 32-bit EL0 (AArch32): %s" % el0_detail)
        return result
    if page_size != PAGE_SIZE_4K:
        result.update(native_possible=False, method="page_size",
                      reason="page size %s: the armhf libc's 4K-aligned segments cannot load (static armhf "
                             "programs may run, dynamically linked ones fail with \"%s\"); qemu-user on "
                             "these host pages can fail on them too (\"%s\"): build armhf on a kernel with "
                             "4K pages (Debian: linux-image-arm64)"
                             % (page_size, PAGE_ALIGN_MARK, QEMU_MAP_MARK))
        return result
    found = "%s, 4 KiB pages%s" % (arch, ", %s" % el0_detail if el0_detail else "")
    if private is not None and private.get("native") is not None:
        result.update(native_possible=bool(private["native"]), method="private_instance",
                      reason="%s in a private binfmt_misc instance: %s (%s)"
                             % ("the probe ran natively" if private["native"] else "the probe failed",
                                private.get("reason"), found))
        return result
    why = (private or {}).get("reason") or private_unavailable or "the private-instance probe was not run"
    result["reason"] = "only the real probe can decide (%s; %s)" % (found, why)
    return result


# Tests only: "probe" makes capability() answer "unknown", so that the real probe
# decides and /bin/true can stand in for an arm64 kernel with CONFIG_COMPAT on the
# x86_64 test machines. Never set it on a real host.
CAPABILITY_ENV = "NATIVEARM_BINFMT_CAPABILITY"


def capability(binfmt_misc=DEFAULT_BINFMT_MISC, uname=os.uname, page_size=None,
               personality=_libc_personality, probe=None, namespace=None, timeout=DEFAULT_TIMEOUT):
    """Can armhf run natively here? Decided without writing anything or touching any entry.

    Returns {native_possible, reason, arch, page_size, aarch32_el0, method, probe}:
    ``method`` names the check that decided (``architecture``, ``personality``,
    ``page_size``, ``private_instance``; None when nothing did), ``probe`` the
    private-instance probe result when it ran. The private-instance probe (the
    armhf loader loading the armhf libc, or ``probe``) runs only where every other
    check passed and the kernel is >= 6.7; ``namespace`` replaces
    :func:`namespace_probe` (tests). ``binfmt_misc`` is where the private
    instance is mounted inside the new namespaces.
    """
    from ansible_collections.nativearm.binfmt.plugins.module_utils.userns import kernel_version
    name = uname()
    arch = name.machine
    size = page_size if page_size is not None else os.sysconf("SC_PAGE_SIZE")
    if os.environ.get(CAPABILITY_ENV) == "probe":
        result = decide(arch, size, None)
        result.update(native_possible=None, method=None, aarch32_el0=None,
                      reason="%s=probe: the capability check is left to the real probe" % CAPABILITY_ENV)
        return result
    if arch not in NATIVE_MACHINES:
        return decide(arch, size, None)
    el0, detail = aarch32_el0(personality)
    verdict = decide(arch, size, el0, detail)
    if verdict["native_possible"] is False:
        return verdict
    if kernel_version(name.release) < MIN_PRIVATE_KERNEL:
        return decide(arch, size, el0, detail, private_unavailable=(
            "kernel %s is older than 6.7, so no private binfmt_misc instance can be had" % name.release))
    run = namespace or namespace_probe
    private = run(probe, timeout=timeout, binfmt_misc=binfmt_misc,
                  facts={"machine": arch, "release": name.release, "page_size": size})
    return decide(arch, size, el0, detail, private=private)


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
