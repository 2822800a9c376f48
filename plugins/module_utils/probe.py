# -*- coding: utf-8 -*-
# Copyright: (c) 2026, nativearm.binfmt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The native armhf probe: can this kernel run 32-bit ARM (armhf) ELF itself?

First :func:`capability`, a check that writes nothing and touches no entry:
the host architecture; on arm64, personality(PER_LINUX32), which the kernel
refuses with EINVAL when the CPU has no 32-bit EL0 (arch/arm64/kernel/sys.c);
and, where Linux >= 6.7, the real probe in a private binfmt_misc instance. The
page size alone decides nothing: on a 16K-page kernel armhf objects linked for
64 KiB pages (Debian 13's) load natively, those linked for 4 KiB fail with "ELF
load command address/offset not page-aligned"; only the probe can tell, so with
pages over 4 KiB and no private instance the answer is "not native" rather than
a toggle. Only where it answers None does a window have to disable the entry
and run the real probe (the ``direct`` method below).

The probe itself (:func:`select_probe`, the one selection every module and
role uses) is the armhf loader loading the armhf libc, i.e. what a dynamic
armhf build needs. Two ways to run it:

- ``namespace`` (Linux >= 6.7, touches nothing): the probe runs in a new user +
  mount namespace with its own, empty binfmt_misc instance, so qemu-arm cannot
  catch it while the host's entry stays registered and enabled;
- ``direct``: the probe just runs. Only meaningful while qemu-arm is disabled
  (the window module toggles the entry; this module only runs and interprets).

Running the probe, either way, and reading its outcome (``interpret``, pure,
so every outcome is unit-tested) is ``_probe_run.py``'s. This file is what an
open needs before anything runs: the ``probe`` option, the one selection, and
the capability check; on a host whose architecture or CPU rules native armhf
out (x86_64, no AArch32 EL0) nothing else of the probe is imported, as every
file a module imports is compiled again on every run of it on the host.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import os
import shlex

# ctypes is imported where used; _probe_run (running a probe) and userns (the
# kernel version) only by a capability check that gets that far.

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
MIN_PRIVATE_KERNEL = (6, 7)  # binfmt_misc is per user namespace since Linux 6.7


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


def host_facts():
    """Machine, kernel release and page size of this host."""
    uname = os.uname()
    return {"machine": uname.machine, "release": uname.release,
            "page_size": os.sysconf("SC_PAGE_SIZE")}


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
    found = "%s, %d KiB pages%s" % (arch, page_size // 1024, ", %s" % el0_detail if el0_detail else "")
    if private is not None and private.get("native") is not None:
        result.update(native_possible=bool(private["native"]), method="private_instance",
                      reason="%s in a private binfmt_misc instance: %s (%s)"
                             % ("the probe ran natively" if private["native"] else "the probe failed",
                                private.get("reason"), found))
        return result
    why = (private or {}).get("reason") or private_unavailable or (
        "the private-instance probe gave no answer" if private is not None else None)
    if page_size != PAGE_SIZE_4K and why:
        # Whether the armhf loader can map armhf objects on these pages depends on how they were
        # linked (measured on Debian 13's arm64-16k: its 64K-aligned cross libc loads natively, while
        # qemu-arm cannot map it). Only a probe in a private instance may find out: never toggle here.
        result.update(native_possible=False, method="page_size",
                      reason="page size %d: armhf programs load natively only if linked for pages this "
                             "large (those aligned to 4 KiB fail with \"%s\"); only a probe in a private "
                             "binfmt_misc instance can find out without disabling qemu-arm, and it could not "
                             "run (%s). Build armhf on a kernel with 4 KiB pages (Debian: linux-image-arm64) "
                             "or on Linux >= 6.7"
                             % (page_size, PAGE_ALIGN_MARK, why))
        return result
    result["reason"] = "only the real probe can decide (%s; %s)" % (found, why or "the private-instance probe was not run")
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
    from ansible_collections.nativearm.binfmt.plugins.module_utils.userns import kernel_version
    if kernel_version(name.release) < MIN_PRIVATE_KERNEL:
        return decide(arch, size, el0, detail, private_unavailable=(
            "kernel %s is older than 6.7, so no private binfmt_misc instance can be had" % name.release))
    if namespace is None:
        from ansible_collections.nativearm.binfmt.plugins.module_utils._probe_run import namespace_probe as namespace
    run = namespace
    private = run(probe, timeout=timeout, binfmt_misc=binfmt_misc,
                  facts={"machine": arch, "release": name.release, "page_size": size})
    return decide(arch, size, el0, detail, private=private)
