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
  - Compares the desired entries (O(entries), or when it is not given the state that the
    C(nativearm.binfmt.build_host) role recorded on the host in O(desired_state_file)) with the
    kernel's binfmt_misc and checks the health of the native armhf window on O(window_entry), all in
    one module call whatever the number of entries.
  - In check mode it changes nothing on the host, writes no file and creates no directory, and reports
    every drift item. Otherwise it remediates entry drift (registers, re-registers, enables, disables,
    unregisters), stale windows and corrupt window records, and writes the report.
  - A disabled C(qemu-arm) while native leases are open (or an enabled one while emulation leases
    are open) is the window working, not drift. A C(qemu-arm) left disabled by a tool that never
    restores it (Armbian's native armhf probe does) is drift.
  - Every desired entry is validated before anything is read or changed; a bad one fails naming
    its index and field.
author:
  - nativearm.binfmt contributors (@nativearm)
options:
  entries:
    description:
      - Desired entries. Keys as in M(nativearm.binfmt.binfmt_entry); C(persist) and C(force) are
        accepted for symmetry and ignored (drift covers the kernel registration; descriptors are managed
        by binfmt_entry).
      - An entry with only a C(name) means "as the packaged descriptor on the host defines it"; such a
        name must have a packaged descriptor (in C(/usr/share/binfmts), C(/etc/binfmt.d),
        C(/run/binfmt.d) or C(/usr/lib/binfmt.d)), otherwise it is an unknown entry name.
      - A C(qemu-<arch>) name with an C(interpreter) but no C(arch) or C(magic) uses the arch preset.
      - When not given, the entries come from O(desired_state_file). An empty list checks no entry
        (the window only).
    type: list
    elements: dict
    suboptions:
      name:
        description: Entry name.
        type: str
        required: true
      state:
        description: Whether the entry should be registered.
        type: str
        choices: [present, absent]
        default: present
      enabled:
        description: Whether the entry should be enabled.
        type: bool
        default: true
      arch:
        description: A preset giving magic, mask and offset (see M(nativearm.binfmt.binfmt_entry)).
        type: str
      type:
        description: C(magic) or C(extension).
        type: str
        choices: [magic, extension]
      magic:
        description: Magic bytes (hex, C(\xHH) escapes accepted).
        type: str
      mask:
        description: Mask bytes, same length as O(entries[].magic).
        type: str
      offset:
        description: Offset of the magic in the file.
        type: int
      extension:
        description: File name extension, for O(entries[].type=extension).
        type: str
      interpreter:
        description: Absolute path of the interpreter.
        type: str
      flags:
        description: Kernel flag letters (C(P), C(O), C(C), C(F)).
        type: str
      allow_credentials:
        description: Accept the C(C) flag (the interpreter runs with the binary's credentials).
        type: bool
        default: false
      persist:
        description: Accepted for symmetry with M(nativearm.binfmt.binfmt_entry); ignored.
        type: str
      force:
        description: Accepted for symmetry with M(nativearm.binfmt.binfmt_entry); ignored.
        type: bool
  desired_state_file:
    description:
      - The desired state recorded by the C(nativearm.binfmt.build_host) role (JSON with an C(entries)
        list), used when O(entries) is not given. A missing file fails with a message saying how to
        record one.
      - It must be a regular file (not a symlink) owned by root and writable by root only, in a
        directory writable by root only; anything else is refused, because its content decides what
        is registered.
    type: path
    default: /var/lib/nativearm-binfmt/desired.json
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
      - Path of the JSON report to write on the host (mode 0644), outside check mode only.
      - Its directory is created (mode 0755) when missing; an existing one must be owned by root and
        writable by root only, and must not be a symlink. The report is written to a temporary file
        and renamed over the name. A symlink at O(report) itself is refused before anything changes
        (never followed, never replaced).
    type: path
  fail_on_drift:
    description:
      - Fail when drift remains after the run (in check mode, when any drift is found), after the
        remediation and the report, with a message naming what remains. The result still holds
        RV(drift), RV(remaining) and RV(report).
    type: bool
    default: false
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
    details: Reports drift without changing anything on the host; no report is written.
  diff_mode:
    support: full
  platform:
    platforms: posix
    details: Linux with binfmt_misc.
notes:
  - The role C(nativearm.binfmt.binfmt_drift) runs this module for a fleet and prints a fleet summary.
seealso:
  - module: nativearm.binfmt.binfmt_entry
  - module: nativearm.binfmt.binfmt_info
"""

EXAMPLES = r"""
- name: Restore what build_host provisioned (the state it recorded on the host)
  nativearm.binfmt.binfmt_drift:
    report: /var/lib/nativearm-binfmt/drift-report.json

- name: Report drift only
  nativearm.binfmt.binfmt_drift:
    entries:
      - name: qemu-arm
      - name: qemu-riscv64
        interpreter: /usr/bin/qemu-riscv64-static
        flags: F
      - name: old-jar
        state: absent
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
        A native window of another coordinator (an Armbian PR #9769 builder building: a root-owned
        shared lock on the entry, which it disabled) is not drift, and qemu-arm is never re-enabled
        under it; C(foreign_lock) reports only locks that are wrong: unprivileged holders, such a
        window while the entry is enabled, or a root-owned exclusive lock that stays.
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
  description: >-
    The report (host, check_mode, desired_source, entries_checked, drift, remaining, fixed, window);
    the same content is written to O(report) outside check mode.
  returned: always
  type: dict
ansible_facts:
  description: Facts this module sets on the host (not when the task fails).
  returned: always
  type: dict
  contains:
    binfmt_drift_report:
      description: The same as RV(report), as the fact C(binfmt_drift_report).
      type: dict
desired_source:
  description: Where the desired entries came from, C(entries) or the path of O(desired_state_file).
  returned: always
  type: str
window:
  description: Window state as seen by the check (leases by mode, holders, stale flag).
  returned: always
  type: dict
"""

import datetime
import json
import socket

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nativearm.binfmt.plugins.module_utils import _drift_files as files
from ansible_collections.nativearm.binfmt.plugins.module_utils import binfmt_misc
from ansible_collections.nativearm.binfmt.plugins.module_utils import drift
from ansible_collections.nativearm.binfmt.plugins.module_utils import window_health

ENTRY_OPTIONS = dict(
    name=dict(type="str", required=True),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    enabled=dict(type="bool", default=True),
    arch=dict(type="str"),
    type=dict(type="str", choices=["magic", "extension"]),
    magic=dict(type="str"),
    mask=dict(type="str"),
    offset=dict(type="int"),
    extension=dict(type="str"),
    interpreter=dict(type="str"),
    flags=dict(type="str"),
    allow_credentials=dict(type="bool", default=False),
    persist=dict(type="str"),
    force=dict(type="bool"),
)


def build_module():
    return AnsibleModule(
        argument_spec=dict(
            entries=dict(type="list", elements="dict", options=ENTRY_OPTIONS),
            desired_state_file=dict(type="path", default=files.DESIRED_STATE_FILE),
            window=dict(type="bool", default=True),
            window_entry=dict(type="str", default="qemu-arm"),
            report=dict(type="path"),
            fail_on_drift=dict(type="bool", default=False),
            binfmt_misc=dict(type="path", default=binfmt_misc.DEFAULT_PATH),
            run_dir=dict(type="path", default="/run/nativearm-binfmt"),
            descriptor_dirs=dict(type="list", elements="path",
                                 default=["/usr/share/binfmts", "/etc/binfmt.d", "/run/binfmt.d",
                                          "/usr/lib/binfmt.d"]),
        ),
        supports_check_mode=True,
    )


class Failure(Exception):
    """Ends the task with ``msg`` and the extra result keys."""

    def __init__(self, msg, **extra):
        super(Failure, self).__init__(msg)
        self.extra = extra


def desired_entries(p):
    """(specs, source): the given entries, or those of the recorded desired state."""
    if p["entries"] is not None:
        return p["entries"], "entries"
    path = p["desired_state_file"]
    try:
        return drift.parse_desired_state(files.read_desired_state(path), path), path
    except files.DriftFileError as exc:
        raise Failure(str(exc), field=exc.field)
    except drift.DesiredStateError as exc:
        raise Failure("desired_state_file: %s" % exc, field="desired_state_file")


def resolve(p, specs, source):
    try:
        packaged = window_health.packaged_definitions(p["descriptor_dirs"], [e.get("name") for e in specs])
        return drift.resolve_desired(specs, packaged)
    except drift.DriftSpecError as exc:
        where = "binfmt_drift_entries" if source == "entries" else "desired_state_file %s" % source
        raise Failure("%s: %s" % (where, exc), field=exc.field, index=exc.index)


def remediate(items, p):
    for item in items:
        if not item["steps"]:
            continue  # reported only (a foreign lock holder, an entry re-created mid-window)
        try:
            if item["kind"] in window_health.KINDS:
                window_health.remediate(item, p["window_entry"], p["binfmt_misc"], p["run_dir"])
            elif p["window"] and item["name"] == p["window_entry"] and item["steps"] == ["enable"]:
                left = window_health.reenable(p["window_entry"], p["binfmt_misc"], p["run_dir"])
                if left:        # a native window opened since the check: it is no drift now
                    item["message"] += "; left disabled: %s" % left
                    continue
            else:
                drift.apply_item(item, item["expected"], p["binfmt_misc"])
            item["fixed"] = True
        except (OSError, RuntimeError, ValueError) as exc:
            item["error"] = binfmt_misc.errno_text(exc) if isinstance(exc, OSError) else str(exc)


def run(module):
    p = module.params
    path = p["binfmt_misc"]
    specs, source = desired_entries(p)
    desired = resolve(p, specs, source)
    if not binfmt_misc.is_mounted(path):
        raise Failure("binfmt_misc: nothing is mounted at %s; mount it (the build_host role does) before "
                      "checking drift" % path)
    if p["report"] and not module.check_mode:
        try:    # before anything changes: a report that cannot be written stops the run here
            files.check_report(p["report"])
        except files.DriftFileError as exc:
            raise Failure(str(exc), field=exc.field)

    window = window_health.check(p["window_entry"], path, p["run_dir"]) if p["window"] else {}
    current = binfmt_misc.read_all_entries(path)
    items = drift.plan_drift(desired, current, {p["window_entry"]: window.get("leases") or {}})
    items.extend(window.get("drift") or [])
    if not module.check_mode:
        remediate(items, p)
    remaining = [i for i in items if not i["fixed"]]
    report = {
        "host": socket.gethostname(),
        "checked_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "check_mode": module.check_mode,
        "binfmt_misc": path,
        "desired_source": source,
        "entries_checked": [d["name"] for d in desired],
        "drift": items,
        "remaining": remaining,
        "fixed": len(items) - len(remaining),
        "window": window.get("facts") or {},
    }
    result = dict(changed=any(i["fixed"] for i in items), drift=items, remaining=remaining, report=report,
                  window=report["window"], desired_source=source,
                  ansible_facts=dict(binfmt_drift_report=report),
                  diff=dict(before={i["name"]: i["actual"] for i in items if i["kind"] not in window_health.KINDS},
                            after={i["name"]: i["expected"] for i in items if i["kind"] not in window_health.KINDS}))
    if p["report"] and not module.check_mode:
        try:
            files.write_report(p["report"], json.dumps(report, indent=2, sort_keys=True) + "\n")
        except files.DriftFileError as exc:
            raise Failure(str(exc), field=exc.field, **result)
    errors = [i for i in items if i["error"]]
    if errors:
        raise Failure("remediation failed for %s" % ", ".join(
            "%s (%s: %s)" % (i["name"], i["kind"], i["error"]) for i in errors), **result)
    if p["fail_on_drift"] and remaining:
        raise Failure("binfmt drift remains%s: %s (fail_on_drift is set)" % (
            " (check mode: reported only)" if module.check_mode else "",
            "; ".join(i["message"] for i in remaining)), **result)
    return result


def main():
    module = build_module()
    try:
        module.exit_json(**run(module))
    except Failure as exc:
        module.fail_json(msg=str(exc), **exc.extra)
    except Exception as exc:  # pylint: disable=broad-except
        module.fail_json(msg="binfmt_drift failed unexpectedly: %s: %s; nothing further was changed"
                             % (type(exc).__name__, exc))


if __name__ == "__main__":
    main()
