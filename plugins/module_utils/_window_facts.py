# -*- coding: utf-8 -*-
# Copyright: (c) 2026, nativearm.binfmt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read-only views of a window (``window.Window``): its facts (binfmt_info,
binfmt_drift's check) and the check-mode predictions of an open and a close.

Nothing here takes the mutex or writes anything. The ``Window`` methods of the
same names call these; they are kept out of window.py so that what a lease's
open and close run (every module run compiles each file it imports, twice
from a zip) does not carry them. No holder ever runs them: a holder runs
from memory, and these are imported only when called.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.nativearm.binfmt.plugins.module_utils._window_proc import boot_id
from ansible_collections.nativearm.binfmt.plugins.module_utils._window_records import (
    RecordsCorrupt, empty_state, load_state)
from ansible_collections.nativearm.binfmt.plugins.module_utils._window_rules import (
    desired_enabled, lease_result, prior_text, restore_target, stale_restore_refusal)


def facts(win):
    """Window facts, read-only: no mutex, nothing written, unusable records
    reported (``corrupt``), not moved. A stale window is reported with
    ``stale_refusal`` (why its prior would not be applied, or None)."""
    corrupt = None
    try:
        state = load_state(win.state_path, win.entry, move=False) if win.exists() else \
            empty_state(win.entry)
    except RecordsCorrupt as exc:
        state = empty_state(win.entry)
        corrupt = {"path": exc.aside, "message": exc.message}
    alive = dict((k, win.lease_alive(v)) for k, v in state["leases"].items())
    stale = state.get("prior") is not None and not any(alive.values())
    facts = _facts(win, state, stale=stale, alive=alive)
    if stale:
        facts["stale_refusal"] = stale_restore_refusal(state, win.entry_status(), boot_id())
    facts["corrupt"] = corrupt
    return facts


def _facts(win, state, stale, alive=None):
    leases = []
    for lease_id, rec in sorted(state["leases"].items()):
        leases.append({"lease_id": lease_id, "mode": rec["mode"], "pid": rec["pid"],
                       "owner_pid": rec.get("owner_pid"), "expires": rec.get("expires"),
                       "created": rec.get("created"),
                       "alive": alive[lease_id] if alive is not None else True})
    foreign = win.look(state)
    return {"entry": win.entry, "records": win.dir, "mode": state.get("mode"),
            "foreign_windows": {"native": foreign["native"], "emulation": len(foreign["emulation"]),
                                "unprivileged": foreign["unprivileged"]},
            "lease_count": len(leases), "leases": leases, "prior_state": prior_text(state.get("prior")),
            "native": state.get("native"), "stale": stale,
            "waiters": len(state.get("waiters") or {}), "events": list(state.get("events") or []),
            "lock_holders": _lock_holders_marked(win, state, alive), "stale_refusal": None,
            "corrupt": None}


def _lock_holders_marked(win, state, alive):
    """The entry's lock holders, each marked ``ours`` when it is a live lease's holder."""
    ours = set(rec["pid"] for lease_id, rec in state["leases"].items() if (alive or {}).get(lease_id))
    holders = win.entry_lock_holders()
    for holder in holders:
        holder["ours"] = holder["pid"] in ours
    return holders


def open_check(win, mode, lease_id):
    """Check mode: predict, change nothing (no holder, no records, no toggle)."""
    state = win.load(move=False) if os.path.exists(win.state_path) else empty_state(win.entry)
    live = dict((k, v) for k, v in state["leases"].items() if win.lease_alive(v))
    status = win.entry_status()
    before = {"entry": win.entry, "entry_present": status["present"], "entry_enabled": status["enabled"],
              "window_mode": state.get("mode") if live else None, "leases": len(live),
              "prior_state": prior_text(state.get("prior")) if live else None}
    if lease_id in live:
        rec = live[lease_id]
        return lease_result(False, lease_id, status, before, before, mode=rec["mode"],
                            native=bool(state.get("native")) and rec["mode"] == "native", leases=len(live),
                            prior_state=before["prior_state"], holder_pid=rec["pid"], expires=rec.get("expires"))
    window = before["window_mode"]
    first = window is None
    native = None
    reason = None
    if mode == "native" and window == "native":
        native = True
    elif mode == "native" and window == "emulation":
        reason = "check mode: emulation leases are open; a native open would wait"
    elif mode == "native":
        reason = "check mode: the native probe is not run (it needs the entry disabled)"
    else:
        native = False
    after = dict(before)
    after.update(window_mode=window or mode, leases=len(live) + 1)
    if first and status["present"]:
        after["entry_enabled"] = desired_enabled(mode)
        after["prior_state"] = prior_text({"present": True, "enabled": status["enabled"]})
    elif first:
        after["prior_state"] = "absent"
    return lease_result(True, lease_id, status, before, after, mode=mode, native=native, leases=len(live) + 1,
                        first=first, prior_state=after["prior_state"], reason=reason)


def close_check(win, lease_id):
    """Check mode of a close: predict, change nothing."""
    try:
        state = load_state(win.state_path, win.entry, move=False)
    except RecordsCorrupt as exc:
        state = empty_state(win.entry)
        result = win._closed_result(state, lease_id, None, False, False, win.summary(state))
        result["warning"] = "check mode: %s" % exc.message
        return result
    before = win.summary(state)
    rec = state["leases"].get(lease_id)
    live = [k for k, v in state["leases"].items() if win.lease_alive(v)]
    restored = rec is not None and not [k for k in live if k != lease_id] and state.get("prior") is not None
    after = dict(before)
    if rec is not None:
        after["leases"] = len([k for k in live if k != lease_id])
        if restored:
            target = restore_target(state)
            after.update(window_mode=None, prior_state=None)
            if target is not None and after["entry_present"]:
                after["entry_enabled"] = target
    return win._closed_result(state, lease_id, rec, rec is not None, restored, before, after)
