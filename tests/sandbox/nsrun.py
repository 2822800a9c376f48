"""Run a command inside a private binfmt_misc instance (Linux >= 6.7).

The command runs in a new user + mount namespace whose uid and gid maps are the
full identity range (0 0 4294967295), written by the (root) parent itself, so
apt, dpkg and every uid-changing tool behave as on the host, while a fresh
binfmt_misc is mounted over /proc/sys/fs/binfmt_misc. Registrations, toggles
and flock(2) on entries inside it are the kernel's own and invisible to the
host's global binfmt_misc instance.

usage: nsrun.py [--binfmt-misc PATH] [--no-mount] -- COMMAND [ARG...]

--no-mount gives an unmounted view instead: nothing is mounted at PATH. If the
host has binfmt_misc mounted there (every real build host does), an empty
tmpfs covers it in the new mount namespace, so "not mounted" code paths are
tested whatever the host holds (the host's mount is inherited and locked, so
it cannot be unmounted from inside).

A single-uid map (`unshare -r`) is not enough: apt drops privileges to _apt
(uid 42) and fails with "seteuid 42 failed". newuidmap would refuse to write a
wide map without /etc/subuid, so the parent writes the maps directly, which
root may do.
"""
import argparse
import os
import sys

# The namespace code is the collection's own (plugins/module_utils/userns.py),
# shipped to targets inside the binfmt_namespace_command module.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "plugins", "module_utils"))

from binfmt_misc import parse_mountinfo  # noqa: E402
from userns import DEFAULT_BINFMT_MISC, SandboxError, enter_sandbox, mount  # noqa: E402


def hide_binfmt_misc(path):
    """Cover a binfmt_misc mounted at path with an empty tmpfs (this mount namespace only)."""
    with open("/proc/self/mountinfo") as f:
        if parse_mountinfo(f.read(), path):
            mount("nsrun-unmounted", path, "tmpfs")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binfmt-misc", default=DEFAULT_BINFMT_MISC)
    parser.add_argument("--no-mount", action="store_true",
                        help="enter the namespaces with nothing mounted at the binfmt_misc path")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("a command is required")
    try:
        enter_sandbox(args.binfmt_misc, not args.no_mount)
        if args.no_mount:
            hide_binfmt_misc(args.binfmt_misc)
    except (SandboxError, OSError) as exc:
        raise SystemExit("nsrun: %s" % exc)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
