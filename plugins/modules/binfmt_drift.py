#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, nativearm.binfmt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
---
module: binfmt_drift
short_description: Check (and fix) binfmt_misc entries and native armhf window health in one call
version_added: "0.1.0"
description:
  - Compares a list of desired entries (the shape of M(nativearm.binfmt.binfmt_entry)'s options)
    with the kernel's binfmt_misc and checks the health of the native armhf window on
    O(window_entry), all in one module call whatever the number of entries.
  - In check mode it changes nothing and reports every drift item. Otherwise it remediates
    entry drift (registers, re-registers, enables, disables, unregisters), stale windows and
    corrupt window records.
  - A disabled C(qemu-arm) while native leases are open (or an enabled one while emulation leases
    are open) is the window working, not drift.
  - Every desired entry is validated before anything is read or changed; a bad one fails naming
    its index and field.
  - Writes a machine-readable JSON report to O(report) when given (also in check mode, because the report
    is the output of the check, not host state).
author:
  - nativearm.binfmt contributors (@nativearm)
options:
  entries:
    description:
      - Desired entries. Keys as in M(nativearm.binfmt.binfmt_entry) (C(name), C(state), C(enabled),
        C(arch), C(type), C(magic), C(mask), C(offset), C(extension), C(interpreter), C(flags),
        C(allow_credentials)); C(persist) and C(force) are accepted for symmetry and ignored (drift
        covers the kernel registration; descriptors are managed by binfmt_entry).
      - An entry with only a C(name) means "as the packaged descriptor on the host defines it"; such a
        name must have a packaged descriptor (in C(/usr/share/binfmts), C(/etc/binfmt.d),
        C(/run/binfmt.d) or C(/usr/lib/binfmt.d)), otherwise it is an unknown entry name.
      - A C(qemu-<arch>) name with an C(interpreter) but no C(arch) or C(magic) uses the arch preset.
    type: list
    elements: dict
    default: []
  window:
    description:
      - Also check the native armhf window on O(window_entry) (stale window, foreign lock holders,
        entry re-created under an open window, unusable window records) and, outside check mode,
        repair a stale window or unusable records (the entry is put back to the state the records
        last showed, enabled when that is unknown, and the records start afresh).
    type: bool
    default: true
  window_entry:
    description:
      - The entry the native armhf window toggles.
    type: str
    default: qemu-arm
  report:
    description:
      - Path of the JSON report to write on the host; its directory is created (mode 0755) when missing.
    type: path
  descriptor_dirs:
    description:
      - Directories searched for packaged descriptors (binfmt-support format in C(binfmts) dirs,
        systemd format in C(binfmt.d) dirs).
    type: list
    elements: path
    default: [/usr/share/binfmts, /etc/binfmt.d, /run/binfmt.d, /usr/lib/binfmt.d]
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - nativearm.binfmt.window
attributes:
  check_mode:
    support: full
    details: Reports drift without changing anything (the JSON report is still written).
  diff_mode:
    support: full
  platform:
    platforms: posix
    details: Linux with binfmt_misc.
notes:
  - The role C(nativearm.binfmt.binfmt_drift) runs this module for a fleet.
seealso:
  - module: nativearm.binfmt.binfmt_entry
  - module: nativearm.binfmt.binfmt_info
"""

EXAMPLES = r"""
- name: Report drift only
  nativearm.binfmt.binfmt_drift:
    entries:
      - name: qemu-arm
      - name: qemu-riscv64
        interpreter: /usr/bin/qemu-riscv64-static
        flags: F
      - name: old-jar
        state: absent
    report: /var/lib/nativearm-binfmt/drift.json
  check_mode: true
"""

RETURN = r"""
drift:
  description: One item per difference found (before remediation).
  returned: always
  type: list
  elements: dict
  contains:
    name: {description: Entry name., type: str}
    kind:
      description: >-
        C(missing), C(unexpected), C(definition), C(enabled), C(disabled) for entries;
        C(stale_window), C(corrupt_records), C(foreign_lock), C(recreated_entry) for the window.
      type: str
    message: {description: "What differs, in words.", type: str}
    steps: {description: "Steps that remove it (unregister, register, enable, disable, restore).", type: list, elements: str}
    expected: {description: The entry as it should be (null when it should be absent)., type: dict}
    actual: {description: The entry as it is (null when absent); for window items the lock holders or events., type: raw}
    fixed: {description: True when this run removed it., type: bool}
    error: {description: "Why remediation failed, or null.", type: str}
remaining:
  description: Drift items still present after this run (all of them in check mode).
  returned: always
  type: list
  elements: dict
report:
  description: The report written to O(report) (same content), for a fleet summary.
  returned: always
  type: dict
window:
  description: Window state as seen by the check (leases by mode, holders, stale flag).
  returned: always
  type: dict
"""

import datetime
import json
import os
import socket

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nativearm.binfmt.plugins.module_utils import binfmt_misc
from ansible_collections.nativearm.binfmt.plugins.module_utils import drift
from ansible_collections.nativearm.binfmt.plugins.module_utils import window_health


def build_module():
    return AnsibleModule(
        argument_spec=dict(
            entries=dict(type="list", elements="dict", default=[]),
            window=dict(type="bool", default=True),
            window_entry=dict(type="str", default="qemu-arm"),
            report=dict(type="path"),
            binfmt_misc=dict(type="path", default=binfmt_misc.DEFAULT_PATH),
            run_dir=dict(type="path", default="/run/nativearm-binfmt"),
            descriptor_dirs=dict(type="list", elements="path",
                                 default=["/usr/share/binfmts", "/etc/binfmt.d", "/run/binfmt.d",
                                          "/usr/lib/binfmt.d"]),
        ),
        supports_check_mode=True,
    )


def write_report(module, path, report):
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        json.dump(report, f, indent=2, sort_keys=True)
        f.write("\n")
    module.atomic_move(tmp, path)


def run(module):
    p = module.params
    path = p["binfmt_misc"]
    try:
        packaged = window_health.packaged_definitions(p["descriptor_dirs"], [
            e.get("name") for e in p["entries"] if isinstance(e, dict)])
        desired = drift.resolve_desired(p["entries"], packaged)
    except drift.DriftSpecError as exc:
        module.fail_json(msg="binfmt_drift_entries: %s" % exc, field=exc.field, index=exc.index)
    if not binfmt_misc.is_mounted(path):
        module.fail_json(msg="binfmt_misc: nothing is mounted at %s; mount it (the build_host role "
                             "does) before checking drift" % path)

    window = window_health.check(p["window_entry"], path, p["run_dir"]) if p["window"] else {}
    current = binfmt_misc.read_all_entries(path)
    items = drift.plan_drift(desired, current, {p["window_entry"]: window.get("leases") or {}})
    items.extend(window.get("drift") or [])

    if not module.check_mode:
        for item in items:
            if not item["steps"]:
                continue  # reported only (a foreign lock holder, an entry re-created mid-window)
            try:
                if item["kind"] in window_health.KINDS:
                    window_health.remediate(item, p["window_entry"], path, p["run_dir"])
                else:
                    drift.apply_item(item, item["expected"], path)
                item["fixed"] = bool(item["steps"])
            except (OSError, RuntimeError, ValueError) as exc:
                item["error"] = binfmt_misc.errno_text(exc) if isinstance(exc, OSError) else str(exc)
    remaining = [i for i in items if not i["fixed"]]
    changed = any(i["fixed"] for i in items)
    report = {
        "host": socket.gethostname(),
        "checked_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "check_mode": module.check_mode,
        "binfmt_misc": path,
        "entries_checked": [d["name"] for d in desired],
        "drift": items,
        "remaining": remaining,
        "fixed": len(items) - len(remaining),
        "window": window.get("facts") or {},
    }
    if p["report"]:
        write_report(module, p["report"], report)
    errors = [i for i in items if i["error"]]
    result = dict(changed=changed, drift=items, remaining=remaining, report=report,
                  window=report["window"],
                  diff=dict(before={i["name"]: i["actual"] for i in items if i["kind"] not in window_health.KINDS},
                            after={i["name"]: i["expected"] for i in items if i["kind"] not in window_health.KINDS}))
    if errors:
        module.fail_json(msg="remediation failed for %s" % ", ".join(
            "%s (%s: %s)" % (i["name"], i["kind"], i["error"]) for i in errors), **result)
    module.exit_json(**result)


def main():
    module = build_module()
    try:
        run(module)
    except Exception as exc:   # never a traceback: the exception's text is the message
        module.fail_json(msg="binfmt_drift: %s" % (str(exc) or repr(exc)))


if __name__ == "__main__":
    main()
