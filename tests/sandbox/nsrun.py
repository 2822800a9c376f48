#!/usr/bin/env python3
"""Run a command inside a private binfmt_misc instance (Linux >= 6.7).

The command runs in a new user + mount namespace whose uid and gid maps are the
full identity range (0 0 4294967295), written by the (root) parent itself, so
apt, dpkg and every uid-changing tool behave as on the host, while a fresh
binfmt_misc is mounted over /proc/sys/fs/binfmt_misc. Registrations, toggles
and flock(2) on entries inside it are the kernel's own and invisible to the
host's global binfmt_misc instance.

usage: nsrun.py [--binfmt-misc PATH] [--no-mount] -- COMMAND [ARG...]

A single-uid map (`unshare -r`) is not enough: apt drops privileges to _apt
(uid 42) and fails with "seteuid 42 failed". newuidmap would refuse to write a
wide map without /etc/subuid, so the parent writes the maps directly, which
root may do.
"""
import argparse
import ctypes
import os
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
FULL_MAP = "0 0 4294967295\n"
DEFAULT_BINFMT_MISC = "/proc/sys/fs/binfmt_misc"

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret, what):
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, "%s: %s" % (what, os.strerror(err)))


def unshare(flags):
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def mount(source, target, fstype, flags=0):
    _check(_libc.mount(
        source.encode() if source else None, target.encode(),
        fstype.encode() if fstype else None, ctypes.c_ulong(flags), None),
        "mount %s on %s" % (fstype or source, target))


def enter_sandbox(binfmt_misc=DEFAULT_BINFMT_MISC, mount_binfmt=True):
    """Move the calling process into a new user + mount namespace with a full
    identity map and (optionally) a fresh binfmt_misc instance at binfmt_misc.

    A helper child writes the maps, because a process cannot write its own
    full map; it is the only extra process and exits at once.
    """
    if os.geteuid() != 0:
        raise SystemExit("nsrun: must run as root to write a full identity uid map")
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    parent = os.getpid()
    helper = os.fork()
    if helper == 0:  # the helper stays in the initial namespaces
        os.close(ready_w)
        os.close(done_r)
        os.read(ready_r, 1)
        code = 0
        try:
            for name in ("uid_map", "gid_map"):
                with open("/proc/%d/%s" % (parent, name), "w") as f:
                    f.write(FULL_MAP)
        except OSError as exc:
            sys.stderr.write("nsrun: writing id maps failed: %s\n" % exc)
            code = 1
        os.write(done_w, b"x")
        os._exit(code)
    os.close(ready_r)
    os.close(done_w)
    unshare(CLONE_NEWUSER | CLONE_NEWNS)
    os.write(ready_w, b"x")
    os.read(done_r, 1)
    _, status = os.waitpid(helper, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit("nsrun: could not map ids into the new user namespace")
    os.close(ready_w)
    os.close(done_r)
    # Mounts made here must not propagate back to the host.
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    if mount_binfmt:
        mount("binfmt_misc", binfmt_misc, "binfmt_misc")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binfmt-misc", default=DEFAULT_BINFMT_MISC)
    parser.add_argument("--no-mount", action="store_true",
                        help="only enter the namespaces, mount nothing")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("a command is required")
    enter_sandbox(args.binfmt_misc, not args.no_mount)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
