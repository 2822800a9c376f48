# -*- coding: utf-8 -*-
# Copyright: (c) 2026, nativearm.binfmt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The window's pure rules: admission, the entry state each mode needs, the
restore target, when a stale window may be restored, lease ids, tiers, and the
shape of a result.

Private to ``window.py``, whose docstring states the protocol these rules
serve. Standard library only; no I/O: every function takes the records
(``state``) and what was observed, and returns a decision.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import binascii
import os
import re

from ansible_collections.nativearm.binfmt.plugins.module_utils._window_records import LEASE_ID_PATTERN, WindowError

_LEASE_ID = re.compile(r"^%s$" % LEASE_ID_PATTERN)


def validate_lease_id(lease_id):
    if not isinstance(lease_id, str) or not _LEASE_ID.match(lease_id):
        raise WindowError("lease_id: %r must be 1-64 characters of letters, digits, '_', '.', '@', '-' "
                          "starting with a letter or digit" % (lease_id,))
    return lease_id


def new_lease_id():
    return binascii.hexlify(os.urandom(8)).decode("ascii")


def desired_enabled(mode):
    """The entry state a lease of ``mode`` needs (I1 / I2)."""
    return mode == "emulation"


def admissible(state, mode, seq=None, ignore_fairness=False, foreign=None):
    """(True, None) when a lease of ``mode`` may be admitted now; else (False, why).

    ``seq`` is the caller's waiter number (None for a fresh arrival). A fresh
    arrival queues behind every live waiter of the other mode; a waiter only
    behind those that arrived before it -- except that a window's *phase*
    admits every waiter of its mode that was already waiting when the window
    opened (``phase_seq``): batches stay large, and a waiter of the other mode
    still waits only for that bounded batch. ``state`` must be recovered first.
    ``foreign`` (_window_instance.look) holds the other coordinators' windows on
    the instance: a native one keeps emulation leases out, and emulation leases
    keep native ones out, whatever our records say.
    """
    if foreign:
        if mode == "emulation" and foreign.get("native"):
            return False, "foreign_native"
        if mode == "native" and foreign.get("emulation"):
            return False, "foreign_emulation"
    window = state.get("mode")
    if window is not None and window != mode:
        return False, "window_mode"
    if ignore_fairness:
        return True, None
    if window == mode and seq is not None and seq <= (state.get("phase_seq") or 0):
        return True, None
    for waiter in state.get("waiters", {}).values():
        if waiter["mode"] != mode and (seq is None or waiter["seq"] < seq):
            return False, "fairness"
    return True, None


def restore_target(state):
    """The enabled flag the entry must be given when the window ends, or None
    when nothing is to be written (prior absent and nothing appeared)."""
    prior = state.get("prior") or {}
    if prior.get("present"):
        return bool(prior.get("enabled"))
    if state.get("adopted") is not None:
        return bool(state["adopted"])
    return None


def stale_restore_refusal(state, status, boot_id):
    """Why a stale window must *not* be restored onto the entry as it is now
    (``status``: {present, enabled, ino}), or None when it may.

    A stale window's records can outlive what they describe: a run_dir that
    survives a reboot, or -- since anonymous device numbers and namespace
    inodes are reused -- a new binfmt_misc instance that gets the dead one's
    instance key. Entry inodes come from one per-boot counter shared by every
    instance, so "same boot, same entry inode" means "the entry this window
    changed". An entry re-registered after the holders died (new inode) got
    its state from its registrant; the stale prior is not forced onto it.
    """
    if state.get("boot_id") and boot_id and state["boot_id"] != boot_id:
        return "the records are from an earlier boot (boot id %s, now %s)" % (state["boot_id"], boot_id)
    recorded = state.get("entry_ino")
    if recorded is not None and status.get("present") and status.get("ino") != recorded:
        return ("the entry now is a different registration (inode %s; the window changed inode %s): "
                "re-registered after the window's holders died, or another binfmt_misc instance "
                "that reuses a dead one's key; its state is its registrant's" % (status.get("ino"), recorded))
    return None


# ---------------------------------------------------------------------------
# texts and results
# ---------------------------------------------------------------------------

def prior_text(prior):
    if prior is None:
        return None
    if not prior.get("present"):
        return "absent"
    return "enabled" if prior.get("enabled") else "disabled"


def describe_prior(prior):
    return prior_text(prior) or "none"


def describe_status(status):
    if not status["present"]:
        return "absent"
    return "enabled" if status["enabled"] else "disabled"


def short_probe(result):
    """The part of a probe result that records and results keep."""
    if not result:
        return None
    return {"native": bool(result.get("native")), "method": result.get("method"),
            "command": result.get("command"), "rc": result.get("rc"),
            "output": (result.get("output") or "")[-500:], "reason": result.get("reason")}


def lease_result(changed, lease_id, status, before, after, mode=None, native=False, leases=0, first=False,
                 restored=False, prior_state=None, reason=None, holder_pid=None, expires=None):
    """An open's or close's result (the module's RETURN): one shape for every
    path. ``status`` is the entry's {present, enabled} after the call."""
    return {"changed": changed, "lease_id": lease_id, "mode": mode, "native": native, "leases": leases,
            "first": first, "restored": restored, "prior_state": prior_state, "reason": reason,
            "holder_pid": holder_pid, "expires": expires,
            "entry_present": status["present"], "entry_enabled": status["enabled"],
            "before": before, "after": after}
