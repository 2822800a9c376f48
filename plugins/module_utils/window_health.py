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

from ansible_collections.nativearm.binfmt.plugins.module_utils import descriptors

try:
    from ansible_collections.nativearm.binfmt.plugins.module_utils import window
except ImportError:  # the window protocol is not part of this build
    window = None

# Drift kinds that concern the window rather than an entry's definition.
KINDS = ("stale_window", "foreign_lock", "recreated_entry")


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


def check(entry, path):
    """Window health on ``entry``: {"leases": {"native": n, "emulation": m},
    "drift": [items], "facts": {...}}. Without the window protocol there is no
    window to check and the result is empty."""
    if window is None or not hasattr(window, "health"):
        return {"leases": {}, "drift": [], "facts": {"checked": False,
                                                     "reason": "window protocol not available"}}
    return window.health(entry, path)


def remediate(item, entry, path):
    """Repair one window drift item (only a stale window can be repaired)."""
    if item["kind"] != "stale_window":
        raise RuntimeError("%s cannot be repaired by binfmt_drift: %s" % (item["kind"], item["message"]))
    window.repair_stale(entry, path)
