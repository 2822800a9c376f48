# -*- coding: utf-8 -*-
# Copyright: (c) 2026, nativearm.binfmt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What binfmt_drift needs besides the entries: packaged definitions and window health.

Both are thin adapters over the collection's own module_utils
(``descriptors`` for packaged descriptors, ``window`` for leases and locks),
so the drift module stays one round trip and no logic is duplicated.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import time

from ansible_collections.nativearm.binfmt.plugins.module_utils import _window_instance as instance
from ansible_collections.nativearm.binfmt.plugins.module_utils import descriptors

try:
    from ansible_collections.nativearm.binfmt.plugins.module_utils import window
except ImportError:  # the window protocol is not part of this build
    window = None

# Drift kinds that concern the window rather than an entry's definition.
KINDS = ("stale_window", "corrupt_records", "foreign_lock", "recreated_entry")
RECHECK = 0.3   # seconds: a root lock that looks wrong is looked at again this much later


def packaged_definitions(dirs, names):
    """{name: [definition, ...]} of packaged (or admin) descriptors for the given names.

    binfmt-support files come first: on Debian that is what update-binfmts
    registers. Unparsable descriptors are skipped.
    """
    binfmts_dirs = [d for d in dirs if os.path.basename(d.rstrip("/")) == "binfmts"]
    binfmt_d_dirs = tuple(d for d in dirs if d not in binfmts_dirs)
    found = {}
    for name in names:
        if not name or not isinstance(name, str) or "/" in name:
            continue
        records = []
        for binfmts_dir in binfmts_dirs or [descriptors.BINFMTS_DIR]:
            records.extend(r for r in descriptors.find_descriptor(name, binfmts_dir, binfmt_d_dirs, dpkg_query=None)
                           if r not in records)
        definitions = [r["definition"] for r in records if r.get("definition") and r.get("effective", True)]
        if definitions:
            found[name] = definitions
    return found


def check(entry, path, run_dir=None):
    """Window health on ``entry``: {"leases": {"native": n, "emulation": m},
    "drift": [items], "facts": window facts}. Read-only."""
    if window is None:
        return {"leases": {}, "drift": [], "facts": {"checked": False,
                                                     "reason": "window protocol not available"}}
    facts = window.window_facts(entry, path, run_dir or window.DEFAULT_RUN_DIR)
    facts["checked"] = True
    live = [lease for lease in facts.get("leases") or [] if lease.get("alive")]
    foreign = facts.get("foreign_windows") or {}
    # a PR #9769 builder building (root LOCK_SH on the entry) disabled it on purpose: not drift
    leases = {"native": sum(1 for lease in live if lease["mode"] == "native"),
              "emulation": sum(1 for lease in live if lease["mode"] == "emulation"),
              "foreign_native": len(foreign.get("native") or []), "foreign_emulation": foreign.get("emulation") or 0}
    items = []
    if facts.get("corrupt"):
        items.append(_item(entry, "corrupt_records", ["restore", "drop_records"],
                           "the native armhf window records of %s are unusable (%s): repairing ends "
                           "their holders, puts %s back to the state the records last showed (enabled "
                           "when unknown) and starts the records afresh"
                           % (entry, facts["corrupt"]["path"], entry)))
    elif facts.get("stale") and facts.get("stale_refusal"):
        items.append(_item(entry, "stale_window", ["drop_records"],
                           "the native armhf window on %s is stale (prior state %s recorded, no live "
                           "holder), but %s: repairing drops its records and leaves %s as it is"
                           % (entry, facts.get("prior_state"), facts["stale_refusal"], entry)))
    elif facts.get("stale"):
        items.append(_item(entry, "stale_window", ["restore"],
                           "the native armhf window on %s is stale: prior state %s recorded, no live "
                           "holder; restoring it puts %s back" % (entry, facts.get("prior_state"), entry)))
    wrong = wrong_locks(entry, path, run_dir, facts)
    if wrong:
        items.append(_item(entry, "foreign_lock", [], "; ".join(w["why"] for w in wrong),
                           actual=[h for w in wrong for h in w["holders"]]))
    open_ids = set(lease["lease_id"] for lease in live)
    recreated = [e for e in facts.get("events") or []
                 if e.get("event") == "entry_recreated" and e.get("lease") in open_ids]
    if recreated:
        items.append(_item(entry, "recreated_entry", [],
                           "%s was re-registered under an open window (%d time(s)); the holders "
                           "re-asserted it" % (entry, len(recreated)), actual=recreated))
    return {"leases": leases, "drift": items, "facts": facts}


def wrong_locks(entry, path, run_dir, facts):
    """Locks on the entry that are really wrong, [{why, holders}]. Not a native window
    of another coordinator (a root-owned LOCK_SH: a PR #9769 builder building, this
    collection with another run_dir or /run) with the entry disabled: that is the
    protocol working. Wrong are: locks of unprivileged users (never obeyed, but
    someone tries); a native window held while the entry is enabled (its armhf
    programs run under qemu); a root LOCK_EX that stays (it keeps every native
    window out). A builder takes its LOCK_SH just before it disables the entry and
    its LOCK_EX for a moment when it leaves, so root locks count only when they are
    still there RECHECK seconds later."""
    foreign = facts.get("foreign_windows") or {}
    out = []
    unprivileged = foreign.get("unprivileged") or []
    if unprivileged:
        out.append({"holders": unprivileged, "why": (
            "unprivileged processes hold locks on %s (it is world-readable); they are not obeyed (they can "
            "neither block a window nor keep %s disabled): %s"
            % (entry, entry, instance.describe(unprivileged)))})
    suspects = _root_suspects(entry, path, run_dir, facts)
    if suspects:
        time.sleep(RECHECK)
        again = _root_suspects(entry, path, run_dir, window.window_facts(entry, path, run_dir or window.DEFAULT_RUN_DIR))
        for kind, holders in suspects.items():
            pids = set(h["pid"] for h in again.get(kind) or [])
            stayed = [h for h in holders if h["pid"] in pids]
            if stayed and kind == "native":
                out.append({"holders": stayed, "why": (
                    "a native window of another coordinator holds %s (root-owned shared lock) while %s is "
                    "enabled: its armhf programs run under qemu, not natively: %s"
                    % (entry, entry, instance.describe(stayed)))})
            elif stayed:
                out.append({"holders": stayed, "why": (
                    "root-owned processes keep an exclusive lock on %s, which keeps every native window "
                    "out: %s" % (entry, instance.describe(stayed)))})
    return out


def _root_suspects(entry, path, run_dir, facts):
    """{"native": foreign native windows if the entry is enabled, "exclusive": root LOCK_EX holders}."""
    foreign = facts.get("foreign_windows") or {}
    out = {}
    exclusive = [h for h in facts.get("lock_holders") or []
                 if not h.get("ours") and h.get("uid") == 0 and h.get("access") == "WRITE" and not h.get("blocked")]
    if exclusive:
        out["exclusive"] = exclusive
    if foreign.get("native"):
        try:
            status = window.Window(entry, path, run_dir or window.DEFAULT_RUN_DIR).entry_status()
        except (window.WindowError, OSError):
            status = {}
        if status.get("enabled"):
            out["native"] = foreign["native"]
    return out


def reenable(entry, path, run_dir=None):
    """binfmt_drift's ``enable`` of the window's entry: through the window (instance
    mutex, exclusive lock on the entry), never under a native window of any
    coordinator. None when done, else why it was left as it is."""
    try:
        return window.Window(entry, path, run_dir or window.DEFAULT_RUN_DIR).reenable()
    except window.WindowError as exc:
        raise RuntimeError(exc.message)


def _item(entry, kind, steps, message, actual=None):
    return {"name": entry, "kind": kind, "steps": steps, "expected": None, "actual": actual,
            "fixed": False, "error": None, "message": message}


def remediate(item, entry, path, run_dir=None):
    """Repair one window drift item (a stale window or corrupt records)."""
    if item["kind"] not in ("stale_window", "corrupt_records"):
        raise RuntimeError("%s cannot be repaired by binfmt_drift: %s" % (item["kind"], item["message"]))
    try:
        outcome = window.Window(entry, path, run_dir or window.DEFAULT_RUN_DIR).repair()
    except window.WindowError as exc:
        raise RuntimeError(exc.message)
    if not outcome:
        raise RuntimeError("the %s on %s could not be repaired (a new lease opened meanwhile?)"
                           % (item["kind"].replace("_", " "), entry))
