# -*- coding: utf-8 -*-
# Copyright: (c) 2026, nativearm.binfmt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every coordinator of one binfmt_misc instance can see of the others.

Records live per run dir (``/run`` of one mount namespace); these kernel
objects belong to the binfmt_misc instance itself, so a build container with
its own /run, another ``run_dir`` and Armbian PR #9769 builders all see them
(``window.py``'s docstring states the rules that use them):

- the instance mutex: flock(LOCK_EX) on the instance's ``register`` file. It
  is mode 0200, so only root can open it (and only for writing: nothing is
  ever written), and no unprivileged process can block it;
- emulation markers: an OFD write lock (fcntl F_OFD_SETLK) on one byte of
  ``register`` at ``MARKER_BASE + n``, held by each emulation holder for its
  lease's life. OFD locks and flock locks do not interact, /proc/locks lists
  them (pid -1, with the byte offset), and the kernel drops them when the
  holder dies;
- native window users: LOCK_SH on the entry (as in PR #9769). The entry is
  world-readable, so only a root-owned LOCK_SH counts; other lock holders are
  reported, never obeyed.

Standard library only; holders import this file before they are forked.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import fcntl
import os
import random
import struct

REGISTER = "register"
MARKER_BASE = 1 << 40               # emulation markers: bytes [MARKER_BASE, MARKER_BASE + MARKER_SPAN)
MARKER_SPAN = 1 << 32
F_OFD_SETLK = getattr(fcntl, "F_OFD_SETLK", 37)
_FLOCK = "hhqqi4x"                   # struct flock: l_type, l_whence, l_start, l_len, l_pid (+ padding)


def parse_proc_locks(text):
    """Parse /proc/locks into dicts: kind (FLOCK/POSIX/OFDLCK), access (READ/WRITE),
    pid (-1 for OFD locks; 0 when not visible from here), dev (major, minor), ino,
    start (byte offset), blocked (a waiter, line with ``->``)."""
    locks = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 6:
            continue
        blocked = fields[1] == "->"
        if blocked:
            fields = fields[:1] + fields[2:]
        try:
            kind, access, pid, devino = fields[1], fields[3], int(fields[4]), fields[5]
            major, minor, ino = devino.split(":")
            start = int(fields[6]) if len(fields) > 6 and fields[6].isdigit() else 0
            locks.append({"kind": kind, "access": access, "pid": pid, "dev": (int(major, 16), int(minor, 16)),
                          "ino": int(ino), "start": start, "blocked": blocked})
        except (ValueError, IndexError):
            continue
    return locks


def read_proc_locks(path="/proc/locks"):
    try:
        with open(path, "r") as f:
            return parse_proc_locks(f.read())
    except (IOError, OSError):
        return []


def _devino(st):
    return (os.major(st.st_dev), os.minor(st.st_dev)), st.st_ino


# ---------------------------------------------------------------------------
# the register file: the instance mutex and the emulation markers
# ---------------------------------------------------------------------------

def open_register(binfmt_misc, dir_fd=None):
    """An O_WRONLY descriptor on the instance's ``register`` (root only), opened
    with O_NOFOLLOW (relative to ``dir_fd`` when given). Nothing is written to it."""
    flags = os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW
    if dir_fd is not None:
        return os.open(REGISTER, flags, dir_fd=dir_fd)
    return os.open(os.path.join(binfmt_misc, REGISTER), flags)


def take_marker(fd, tries=64):
    """Take an emulation marker (an OFD write lock on one free byte) on ``fd``, an
    O_WRONLY descriptor of ``register``; returns its offset."""
    rng = random.SystemRandom()
    for dummy in range(tries):
        offset = MARKER_BASE + rng.randrange(MARKER_SPAN)
        try:
            fcntl.fcntl(fd, F_OFD_SETLK, struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, offset, 1, 0))
            return offset
        except (IOError, OSError) as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
    raise OSError(errno.EAGAIN, "no free emulation marker on register after %d tries" % tries)


def markers(locks, register_devino):
    """Offsets of the emulation markers held on the instance (from parsed /proc/locks)."""
    dev, ino = register_devino
    return sorted(lk["start"] for lk in locks
                  if lk["kind"] == "OFDLCK" and not lk["blocked"] and lk["dev"] == dev and lk["ino"] == ino
                  and MARKER_BASE <= lk["start"] < MARKER_BASE + MARKER_SPAN)


# ---------------------------------------------------------------------------
# who holds locks on the entry
# ---------------------------------------------------------------------------

def proc_uid(pid):
    """Effective uid of ``pid`` as seen from here, or None when it is gone."""
    try:
        with open("/proc/%d/status" % pid, "r") as f:
            for line in f:
                if line.startswith("Uid:"):
                    return int(line.split()[2])
    except (IOError, OSError, ValueError, IndexError):
        pass
    return None


def proc_cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            raw = f.read()
    except (IOError, OSError):
        return "?"
    return " ".join(p.decode("utf-8", "replace") for p in raw.split(b"\0") if p) or "?"


def fd_holders(devino, proc="/proc"):
    """{lock pid: [(pid, uid), ...]} from every process holding a descriptor on the
    file ``devino`` whose fdinfo lists a lock: who really holds a lock taken by a
    process that has exited (``flock -s 9`` in a shell: flock(1) takes the lock on
    the shell's descriptor and exits). A directory scan: used only for such locks."""
    dev, ino = devino
    found = {}
    try:
        pids = [int(n) for n in os.listdir(proc) if n.isdigit()]
    except OSError:
        return found
    for pid in pids:
        base = "%s/%d" % (proc, pid)
        try:
            fds = os.listdir(base + "/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                st = os.stat("%s/fd/%s" % (base, fd))
            except OSError:
                continue
            if st.st_ino != ino or (os.major(st.st_dev), os.minor(st.st_dev)) != dev:
                continue
            try:
                with open("%s/fdinfo/%s" % (base, fd), "r") as f:
                    info = f.read()
            except (IOError, OSError):
                continue
            for lock in parse_proc_locks("\n".join(line.split(":", 1)[1] for line in info.splitlines()
                                                   if line.startswith("lock:"))):
                found.setdefault(lock["pid"], []).append((pid, proc_uid(pid)))
    return found


def classify(locks, devino, ours, uid_of=proc_uid, holders_of=fd_holders):
    """Sort the locks on the file ``devino`` (parsed /proc/locks) into
    {"ours": [...], "native": [...], "exclusive": [...], "unprivileged": [...]}:

    - ours: held by one of the pids in ``ours`` (our own holders);
    - native: a root-owned LOCK_SH (READ flock), i.e. a native window of another
      coordinator (a PR #9769 builder, this collection with another run dir or
      /run);
    - exclusive: a root-owned LOCK_EX (a PR #9769 builder's "last out" test);
    - unprivileged: any lock of a non-root process: reported, never obeyed.

    A lock whose pid is not a live process here (it exited, or lives in another pid
    namespace) is attributed through ``holders_of`` to the processes that hold the
    descriptor; when none is visible it counts as root's (the safe side: a native
    window is never ended under a builder we cannot see). Each item is
    {pid, uid, access, kind, blocked, cmdline}.
    """
    out = {"ours": [], "native": [], "exclusive": [], "unprivileged": []}
    dev, ino = devino
    fd_map = None
    for lock in locks:
        if lock["dev"] != dev or lock["ino"] != ino or lock["kind"] != "FLOCK":
            continue
        item = {"pid": lock["pid"], "access": lock["access"], "kind": lock["kind"], "blocked": lock["blocked"]}
        if lock["pid"] in ours:
            out["ours"].append(dict(item, uid=0, cmdline=proc_cmdline(lock["pid"])))
            continue
        uid = uid_of(lock["pid"]) if lock["pid"] > 0 else None
        cmdline = proc_cmdline(lock["pid"]) if uid is not None else None
        if uid is None:
            if fd_map is None:
                fd_map = holders_of(devino)
            owners = [o for o in fd_map.get(lock["pid"], []) if o[0] not in ours]
            if owners:
                uid = 0 if any(u == 0 for _p, u in owners) else owners[0][1]
                cmdline = "(pid %d has exited; held by %s)" % (lock["pid"], ", ".join(
                    "pid %d uid %s: %s" % (p, u, proc_cmdline(p)) for p, u in owners))
            else:
                uid = 0
                cmdline = "(pid %d is not visible from here; counted as root's)" % lock["pid"]
        item.update(uid=uid, cmdline=cmdline)
        if uid != 0:
            out["unprivileged"].append(item)
        elif lock["blocked"]:
            continue                        # a waiter holds nothing yet
        elif lock["access"] == "READ":
            out["native"].append(item)
        else:
            out["exclusive"].append(item)
    return out


def look(entry_path, register_path, ours=(), our_markers=(), locks=None):
    """The instance as other coordinators leave it: {"native", "exclusive",
    "unprivileged", "ours", "emulation" (foreign marker offsets)}."""
    if locks is None:
        locks = read_proc_locks()
    view = {"ours": [], "native": [], "exclusive": [], "unprivileged": [], "emulation": []}
    try:
        view.update(classify(locks, _devino(os.stat(entry_path)), set(ours)))
    except OSError:
        pass
    try:
        mine = set(our_markers)
        view["emulation"] = [m for m in markers(locks, _devino(os.stat(register_path))) if m not in mine]
    except OSError:
        pass
    return view


def describe(items):
    return "; ".join("pid %d uid %s (%s %s): %s" % (h["pid"], h.get("uid"), h.get("kind"), h.get("access"),
                                                    h.get("cmdline")) for h in items) or "none"
