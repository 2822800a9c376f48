# -*- coding: utf-8 -*-
# Copyright: (c) 2026, nativearm.binfmt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Repairs of a window (``window.Window``), under the instance mutex: a close
whose records are corrupt (salvage), binfmt_drift's repair of a stale window or
of corrupt records, and its re-enable of an entry a tool left disabled.

The rules are window.py's (docstring: "Records that cannot be written or read",
"Recovery"); the ``Window`` methods ``repair`` and ``reenable`` and a close that
finds corrupt records call these. They are kept out of window.py so that what a
lease's open and close run (every module run compiles each file it imports,
twice from a zip) does not carry them. No holder ever runs them: a holder runs
from memory, and these are imported only when called.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import signal

from ansible_collections.nativearm.binfmt.plugins.module_utils import _window_instance as instance
from ansible_collections.nativearm.binfmt.plugins.module_utils._window_proc import (
    lock_holders_of, proc_start_time, signal_pid, wait_exit)
from ansible_collections.nativearm.binfmt.plugins.module_utils._window_records import (
    RecordsCorrupt, corrupt_files, empty_state, lock_name_lease, lock_path, salvage_prior)
from ansible_collections.nativearm.binfmt.plugins.module_utils._window_rules import describe_status, prior_text


def repair(win):
    """binfmt_drift's repair, under the mutex: end a stale window (recover),
    or repair corrupt records (see repair_records). Returns "restored",
    "dropped", "records_repaired" or None (nothing to repair)."""
    with win.mutex():
        try:
            state = win.load()
        except RecordsCorrupt as exc:
            return repair_records(win, exc)
        outcome = win.recover(state)
        if outcome:
            win.save(state)
        return outcome


def reenable(win):
    """binfmt_drift's ``enable`` of this entry (left disabled by a tool that never
    restores, such as Armbian main's native probe), under the mutex and through
    _enable: never while a native lease of ours is live or a native window of
    another coordinator is open. Returns None when done, else why it was left."""
    with win.mutex():
        try:
            state = win.load()
        except RecordsCorrupt:      # repaired on its own; meanwhile every root LOCK_SH counts
            state = empty_state(win.entry)
        live = [r for r in state["leases"].values() if r.get("mode") == "native" and win.lease_alive(r)]
        if live:
            return "%d native window lease(s) are open on it" % len(live)
        native = win._enable(state)
        if native:
            return ("a native window of another coordinator is open (root-owned shared locks: %s)"
                    % instance.describe(native))
        return None


def entry_holder_locks(win):
    """[(lock file name, lease id, holder pid or None, live)] of this entry's
    lease lock files in the instance dir. A holder names its entry in its
    title, so a live lock is this entry's only when its holder says so."""
    try:
        names = sorted(os.listdir(win.dir))
    except OSError:
        return []
    out = []
    for name in names:
        lease_id = lock_name_lease(name)
        if lease_id is None:
            continue
        path = lock_path(win.dir, name)
        if not win.lease_alive({"lock": name}):
            out.append((name, lease_id, None, False))
            continue
        title = "nativearm-window-holder %s lease=%s " % (win.entry, lease_id)
        pids = [h["pid"] for h in lock_holders_of(path) if h["cmdline"].startswith(title)]
        if pids:
            out.append((name, lease_id, pids[0], True))
    return out


def end_holder(pid):
    """SIGKILL a holder found by its lock (it touches nothing), and wait for its exit:
    its LOCK_SH must be gone before a restore decides (a SIGUSR1 would wait while
    the holder itself waits for the mutex we hold, to re-assert)."""
    start = proc_start_time(pid)
    if start is not None and signal_pid(pid, start, signal.SIGKILL):
        wait_exit(pid, start, 5)


def salvage_target(exc):
    """The enabled flag to restore when the records are corrupt: what they
    last showed, else enabled (the entry is only ever disabled by a window)."""
    prior = salvage_prior(exc.aside)
    if prior is not None and prior["present"]:
        return bool(prior["enabled"]), prior_text(prior)
    return True, "unknown (records unreadable): enabled if present"


def close_salvage(win, lease_id, exc):
    """Close with corrupt records (mutex held): end this lease's holder, and
    when no holder of this entry is left, put the entry back."""
    mine = [lock for lock in entry_holder_locks(win) if lock[1] == lease_id]
    before = win.summary(empty_state(win.entry))
    if not mine:
        result = win._closed_result(empty_state(win.entry), lease_id, None, False, False, before)
        result["warning"] += "; %s" % exc.message
        return result
    for name, dummy, pid, live in mine:
        if live:
            end_holder(pid)
        win._drop_lock_file({"lock": name})
    others = [lock for lock in entry_holder_locks(win) if lock[3]]
    record = {"mode": None, "pid": mine[0][2]}
    if others:
        restored = False
        what = ("leases of %d other holder(s) may still be open (pids %s): the entry was left as it is"
                % (len(others), ", ".join(str(o[2]) for o in others)))
    else:
        prior_shown, deferred = salvage_restore(win, exc, empty_state(win.entry))
        restored = deferred is None
        what = ("no other holder is left: the entry was put back (prior state %s)" % prior_shown if restored
                else "no other holder is left, but the restore (prior state %s) was deferred: %s"
                % (prior_shown, deferred))
    result = win._closed_result(empty_state(win.entry), lease_id, record, True, restored, before)
    result["warning"] = ("closed lease %s without its records: %s. %s" % (lease_id, exc.message, what))
    return result


def salvage_restore(win, exc, state):
    """Put the entry back to the prior corrupt records at ``exc.aside`` last showed
    (else enabled), as a last-out close does: deferred while another coordinator's
    window needs the entry as it is (_restore). Our holders of the entry must be
    gone. Returns (prior text, None or why it was deferred); events go to ``state``."""
    target, prior_shown = salvage_target(exc)
    state["prior"] = {"present": True, "enabled": target}
    return prior_shown, win._restore(state, "restored")


def repair_records(win, exc):
    """binfmt_drift's repair of corrupt records (mutex held): end this
    entry's holders (they touch nothing), put the entry back to what the
    records last showed (else enabled, if present), start the records
    afresh and remove the corrupt copies."""
    for name, dummy, pid, live in entry_holder_locks(win):
        if live:
            end_holder(pid)
        win._drop_lock_file({"lock": name})
    state = empty_state(win.entry)
    prior_shown, deferred = salvage_restore(win, exc, state)
    win._event(state, "records_repaired", detail="corrupt records %s dropped; prior state %s; entry now %s%s"
               % (exc.aside, prior_shown, describe_status(win.entry_status()),
                  "; restore deferred: %s" % deferred if deferred else ""))
    win.save(state)
    for name in corrupt_files(win.dir, win.entry):
        try:
            os.unlink(os.path.join(win.dir, name))
        except OSError:
            pass
    return "records_repaired"
