# -*- coding: utf-8 -*-
# Copyright: (c) 2026, nativearm.binfmt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The window's records on disk: run dir, state file, lease lock file names.

Private to ``window.py`` (which documents the protocol); standard library
only. Everything here fails closed:

- the run dir and the instance dir are created 0700 and root-owned; an
  existing one must already be safe (a real directory, ours, not group or
  other writable) and is never chmodded;
- a record is written whole or not at all (``_safe_files.write_atomic``:
  temp file (O_EXCL, O_NOFOLLOW, 0600), every byte written, fsync, size
  checked, rename, directory fsync); any failure removes the temp file,
  leaves the old version in place and raises ``RecordsWriteError``;
- a record is read only when it has the schema and ``version`` this code
  writes; anything else is moved aside (``state-ENTRY.json.corrupt-TIME``)
  and ``RecordsCorrupt`` is raised, now and on every later read, until
  ``binfmt_drift`` repairs it (``Window.repair_records``);
- lease lock file names come from records only after they match the name
  pattern this code generates, so no record can name a path outside the
  instance dir.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import binascii
import errno
import json
import os
import re
import stat
import time

from ansible_collections.nativearm.binfmt.plugins.module_utils._safe_files import write_atomic

STATE_VERSION = 1
MAX_EVENTS = 50
MODES = ("native", "emulation")
LEASE_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}"
_LEASE_ID = re.compile(r"^%s$" % LEASE_ID_PATTERN)
_LOCK_NAME = re.compile(r"^lease-(%s)-[0-9a-f]{8}\.lock$" % LEASE_ID_PATTERN)
CORRUPT_INFIX = ".corrupt-"


class WindowError(Exception):
    """A window operation that cannot be done; the message names the holders."""

    def __init__(self, message, holders=None):
        super(WindowError, self).__init__(message)
        self.message = message
        self.holders = holders or []


class RecordsWriteError(WindowError):
    """A record could not be written; the previous version is still in place."""


class RecordsCorrupt(WindowError):
    """The records are unusable (moved aside); ``aside`` is where they are now."""

    def __init__(self, message, path, aside):
        super(RecordsCorrupt, self).__init__(message)
        self.path = path
        self.aside = aside


def empty_state(entry):
    return {"version": STATE_VERSION, "entry": entry, "mode": None, "prior": None,
            "adopted": None, "opened_at": None, "native": None, "tier": None,
            "probe": None, "entry_ino": None, "boot_id": None, "leases": {}, "waiters": {}, "seq": 0,
            "phase_seq": 0, "events": []}


def add_event(state, kind, lease=None, detail=None):
    state.setdefault("events", []).append({"time": round(time.time(), 3), "event": kind, "lease": lease,
                                           "pid": os.getpid(), "detail": detail})
    del state["events"][:-MAX_EVENTS]


# ---------------------------------------------------------------------------
# directories
# ---------------------------------------------------------------------------

def instance_key(binfmt_misc):
    """A name for the binfmt_misc instance at ``binfmt_misc``: the mount's
    st_dev and the inode of the user namespace that sees it. A path seen
    through ``/proc/PID/root`` belongs to PID's user namespace."""
    st = os.stat(binfmt_misc)
    match = re.match(r"^/proc/(\d+)/root/", os.path.abspath(binfmt_misc))
    ns = "/proc/%s/ns/user" % (match.group(1) if match else "self")
    try:
        userns = os.stat(ns).st_ino
    except OSError:
        userns = 0
    return "dev%d.%d-userns%d" % (os.major(st.st_dev), os.minor(st.st_dev), userns)


def check_dir(path, st):
    """Refuse a directory that is not safe to keep root-only records in."""
    if not stat.S_ISDIR(st.st_mode):
        raise WindowError("run_dir: %s is not a directory (a symlink is refused); remove it or choose "
                          "another run_dir" % path)
    if st.st_uid != os.geteuid():
        raise WindowError("run_dir: %s is owned by uid %d, not by us (uid %d); remove it or choose "
                          "another run_dir" % (path, st.st_uid, os.geteuid()))
    if st.st_mode & 0o022:
        raise WindowError("run_dir: %s is writable by its group or by others (mode %04o); it is not "
                          "changed here: make it root-only (chmod 0700 %s) or choose another run_dir"
                          % (path, stat.S_IMODE(st.st_mode), path))


def secure_dir(path, create=True):
    """Create ``path`` 0700 (parents 0755) or check that it is already safe.
    An existing directory is never chmodded or chowned."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        if exc.errno != errno.ENOENT or not create:
            raise WindowError("run_dir: cannot use %s: %s" % (path, exc.strerror or exc))
        parent = os.path.dirname(path.rstrip("/"))
        try:
            if parent and not os.path.isdir(parent):
                os.makedirs(parent, 0o755)
            os.mkdir(path, 0o700)
        except OSError as exc2:
            if exc2.errno != errno.EEXIST:
                raise WindowError("run_dir: cannot create %s: %s" % (path, exc2.strerror or exc2))
        st = os.lstat(path)
    check_dir(path, st)
    return path


def open_private(path, flags):
    return os.open(path, flags | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)


def lock_path(directory, name):
    """The path of a lease lock file named in a record, or None when the name
    is not one this code generates (``../../x`` never leaves ``directory``)."""
    if not isinstance(name, str) or not _LOCK_NAME.match(name):
        return None
    return os.path.join(directory, name)


def new_lock_name(lease_id):
    """A fresh lock file name for a holder of ``lease_id`` (the pattern ``lock_path`` accepts)."""
    return "lease-%s-%s.lock" % (lease_id, binascii.hexlify(os.urandom(4)).decode("ascii"))


def lock_name_lease(name):
    """The lease id in a lock file name, or None."""
    match = _LOCK_NAME.match(name) if isinstance(name, str) else None
    return match.group(1) if match else None


# ---------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------

def _write_error(path, exc):
    directory = os.path.dirname(path)
    if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
        why = "no space left on the file system of run_dir %s (free some, or point run_dir elsewhere)" % directory
    else:
        why = "%s" % (getattr(exc, "strerror", None) or exc)
    return RecordsWriteError("run_dir %s: cannot save the window records %s: %s; the records on disk "
                             "were left as they were" % (directory, os.path.basename(path), why))


def write_private(path, data):
    """Replace ``path`` (0600) with ``data``, whole or not at all (_safe_files.write_atomic).
    Raises RecordsWriteError (the old version intact, no temp file left)."""
    try:
        write_atomic(path, data, 0o600)
    except OSError as exc:
        raise _write_error(path, exc)


def save_state(path, state):
    write_private(path, json.dumps(state, separators=(",", ":")))


# ---------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------

def _is_int(value, none=False):
    return (value is None and none) or (isinstance(value, int) and not isinstance(value, bool))


def _is_num(value, none=False):
    return (value is None and none) or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _is_bool(value, none=False):
    return (value is None and none) or isinstance(value, bool)


def _is_str(value, none=False):
    return (value is None and none) or isinstance(value, str)


def _check_prior(prior):
    return prior is None or (isinstance(prior, dict) and isinstance(prior.get("present"), bool)
                             and _is_bool(prior.get("enabled"), none=True))


def validate_state(state, entry):
    """The first problem that makes ``state`` unusable, or None when it is a
    whole, current version of the records of ``entry``."""
    if not isinstance(state, dict):
        return "not a JSON object"
    if state.get("version") != STATE_VERSION:
        return "version %r, expected %d" % (state.get("version"), STATE_VERSION)
    if state.get("entry") != entry:
        return "entry %r, expected %r" % (state.get("entry"), entry)
    checks = (("mode", lambda v: v is None or v in MODES), ("prior", _check_prior),
              ("adopted", lambda v: _is_bool(v, True)), ("opened_at", lambda v: _is_num(v, True)),
              ("native", lambda v: _is_bool(v, True)), ("tier", lambda v: _is_str(v, True)),
              ("probe", lambda v: v is None or isinstance(v, dict)), ("entry_ino", lambda v: _is_int(v, True)),
              ("boot_id", lambda v: _is_str(v, True)), ("seq", _is_int), ("phase_seq", _is_int),
              ("events", lambda v: isinstance(v, list) and all(isinstance(e, dict) for e in v)),
              ("leases", lambda v: isinstance(v, dict)), ("waiters", lambda v: isinstance(v, dict)))
    for key in ("leases", "waiters"):
        if key not in state:
            return "no %r" % key
    for key, ok in checks:
        if key in state and not ok(state[key]):
            return "%r is %r" % (key, state[key])
    for lease_id, rec in state["leases"].items():
        why = _lease_problem(lease_id, rec)
        if why:
            return "lease %r: %s" % (lease_id, why)
    for token, waiter in state["waiters"].items():
        if not (isinstance(waiter, dict) and waiter.get("mode") in MODES and _is_int(waiter.get("seq"))
                and _is_int(waiter.get("pid")) and waiter["pid"] > 0 and _is_int(waiter.get("start"), True)):
            return "waiter %r: %r" % (token, waiter)
    if state["leases"] and state.get("prior") is None:
        return "leases recorded without a window (no prior state)"
    return None


def _lease_problem(lease_id, rec):
    if not _LEASE_ID.match(lease_id):
        return "not a lease id"
    if not isinstance(rec, dict):
        return "not an object"
    if rec.get("mode") not in MODES:
        return "mode %r" % (rec.get("mode"),)
    if not _is_int(rec.get("pid")) or rec["pid"] <= 0:
        return "pid %r" % (rec.get("pid"),)
    if lock_name_lease(rec.get("lock")) != lease_id:
        return "lock %r is not this lease's lock file name" % (rec.get("lock"),)
    for key in ("start", "owner_pid", "owner_start"):
        if not _is_int(rec.get(key), True):
            return "%s %r" % (key, rec.get(key))
    for key in ("created", "expires"):
        if not _is_num(rec.get(key), True):
            return "%s %r" % (key, rec.get(key))
    return None


def corrupt_files(directory, entry):
    """Records of ``entry`` moved aside as corrupt (names, oldest first)."""
    prefix = "state-%s.json%s" % (entry, CORRUPT_INFIX)
    try:
        return sorted(n for n in os.listdir(directory) if n.startswith(prefix))
    except OSError:
        return []


def _corrupt_message(path, aside, why):
    return ("the window records %s are corrupt (%s) and were moved aside to %s. No window opens on "
            "this entry until they are repaired: run binfmt_drift (the nativearm.binfmt.binfmt_drift "
            "role or playbooks/remediate.yml), which puts the entry back and drops the records"
            % (path, why, aside))


def move_aside(path, why, move=True):
    """Rename the unusable records ``path`` out of the way (unless not ``move``:
    a read-only look); RecordsCorrupt to raise."""
    if not move:
        return RecordsCorrupt(_corrupt_message(path, path, why).replace(" and were moved aside to %s" % path,
                                                                        ""), path, path)
    aside = "%s%s%s" % (path, CORRUPT_INFIX, time.strftime("%Y%m%dT%H%M%S", time.gmtime()))
    n = 0
    while os.path.lexists(aside + ("" if n == 0 else ".%d" % n)):
        n += 1
    aside += "" if n == 0 else ".%d" % n
    try:
        os.rename(path, aside)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            aside = path                # could not move it: it stays, and is refused on every read
    return RecordsCorrupt(_corrupt_message(path, aside, why), path, aside)


def load_state(path, entry, move=True):
    """The records at ``path``: an empty state when there are none. Raises
    RecordsCorrupt (after moving the file aside, when ``move``) when they are
    unusable, and while earlier corrupt records wait for repair."""
    try:
        fd = open_private(path, os.O_RDONLY)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            directory = os.path.dirname(path)
            aside = corrupt_files(directory, entry)
            if aside:
                raise RecordsCorrupt(_corrupt_message(path, os.path.join(directory, aside[-1]),
                                                      "found earlier, not yet repaired"),
                                     path, os.path.join(directory, aside[-1]))
            return empty_state(entry)
        raise move_aside(path, "unreadable: %s" % (exc.strerror or exc), move)
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    except OSError as exc:
        raise move_aside(path, "unreadable: %s" % (exc.strerror or exc), move)
    finally:
        os.close(fd)
    try:
        state = json.loads(b"".join(chunks).decode("utf-8"))
    except ValueError as exc:
        raise move_aside(path, "not valid JSON: %s" % exc, move)
    why = validate_state(state, entry)
    if why:
        raise move_aside(path, why, move)
    base = empty_state(entry)
    base.update(state)
    return base


def salvage_prior(aside):
    """The prior state corrupt records at ``aside`` still show, or None."""
    try:
        with open(aside, "rb") as f:
            state = json.loads(f.read().decode("utf-8"))
    except (IOError, OSError, ValueError):
        return None
    if isinstance(state, dict) and state.get("prior") is not None and _check_prior(state["prior"]):
        return {"present": state["prior"]["present"], "enabled": state["prior"].get("enabled")}
    return None
