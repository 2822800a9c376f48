# -*- coding: utf-8 -*-
# Copyright: (c) 2026, nativearm.binfmt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Enter a new user + mount namespace with a private binfmt_misc instance.

Linux >= 6.7 gives every user namespace its own binfmt_misc instance. A
process that calls :func:`enter_sandbox` ends up in a new user + mount
namespace whose uid and gid maps are the full identity range
(``0 0 4294967295``), written by a short-lived helper child that stays in the
original namespaces (a process cannot write its own full map, and newuidmap
refuses a wide map without /etc/subuid; root may write it directly). apt,
dpkg and every uid-changing tool then behave as on the host, while a fresh,
empty binfmt_misc is mounted over /proc/sys/fs/binfmt_misc. Registrations,
toggles and flock(2) inside it are invisible to the host's instance.

Standard library only; used by tests/sandbox/nsrun.py and by the
binfmt_namespace_command module.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ctypes
import os
import platform
import re

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
FULL_MAP = "0 0 4294967295\n"
DEFAULT_BINFMT_MISC = "/proc/sys/fs/binfmt_misc"
# The first release whose binfmt_misc can be mounted per user namespace.
MIN_KERNEL = (6, 7)


class SandboxError(Exception):
    """The namespace or the private binfmt_misc could not be set up."""


def kernel_version(release=None):
    """(major, minor) of a release string such as ``6.1.0-28-arm64``; (0, 0) if unparsable."""
    match = re.match(r"(\d+)\.(\d+)", release if release is not None else platform.release())
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def unsupported_reason(release=None, euid=None):
    """None when a private binfmt_misc can be had here, else a sentence saying why not."""
    release = release if release is not None else platform.release()
    if kernel_version(release) < MIN_KERNEL:
        return ("kernel %s is older than 6.7: binfmt_misc is not namespaced there, so a private "
                "instance cannot be mounted (use the host-wide window instead)" % release)
    euid = os.geteuid() if euid is None else euid
    if euid != 0:
        return ("must run as root (become: true) to write a full identity uid/gid map "
                "for the new user namespace (running as uid %d)" % euid)
    return None


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _check(ret, what):
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, "%s: %s" % (what, os.strerror(err)))


def unshare(flags):
    _check(_libc().unshare(ctypes.c_int(flags)), "unshare")


def mount(source, target, fstype, flags=0):
    _check(_libc().mount(
        source.encode() if source else None, target.encode(),
        fstype.encode() if fstype else None, ctypes.c_ulong(flags), None),
        "mount %s on %s" % (fstype or source, target))


def enter_sandbox(binfmt_misc=DEFAULT_BINFMT_MISC, mount_binfmt=True):
    """Move the calling process into a new user + mount namespace with a full
    identity map and (optionally) a fresh binfmt_misc instance at binfmt_misc.

    A helper child writes the maps, because a process cannot write its own
    full map; it is the only extra process and exits at once. Raises
    SandboxError with a readable reason on failure.
    """
    if os.geteuid() != 0:
        raise SandboxError("must run as root to write a full identity uid map")
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    parent = os.getpid()
    helper = os.fork()
    if helper == 0:  # the helper stays in the initial namespaces
        code = 0
        try:
            os.close(ready_w)
            os.close(done_r)
            os.read(ready_r, 1)
            for name in ("uid_map", "gid_map"):
                with open("/proc/%d/%s" % (parent, name), "w") as f:
                    f.write(FULL_MAP)
        except OSError as exc:
            os.write(2, ("writing id maps failed: %s\n" % exc).encode())
            code = 1
        finally:
            os.write(done_w, b"x")
            os._exit(code)
    os.close(ready_r)
    os.close(done_w)
    try:
        unshare(CLONE_NEWUSER | CLONE_NEWNS)
    except OSError as exc:
        os.close(ready_w)  # the helper reads EOF, fails its write and exits
        os.waitpid(helper, 0)
        raise SandboxError("unshare(CLONE_NEWUSER|CLONE_NEWNS) failed: %s" % exc)
    os.write(ready_w, b"x")
    os.read(done_r, 1)
    status = os.waitpid(helper, 0)[1]
    os.close(ready_w)
    os.close(done_r)
    if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
        raise SandboxError("could not map ids into the new user namespace")
    try:
        # Mounts made here must not propagate back to the host.
        mount(None, "/", None, MS_REC | MS_PRIVATE)
        if mount_binfmt:
            mount("binfmt_misc", binfmt_misc, "binfmt_misc")
    except OSError as exc:
        raise SandboxError("%s (binfmt_misc is namespaced only since Linux 6.7)" % exc)
