#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, nativearm.binfmt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
module: binfmt_entry
short_description: Manage one binfmt_misc registration and its persistent descriptor
version_added: 0.1.0
description:
  - Registers, re-registers, enables, disables or removes one kernel binfmt_misc entry, idempotently.
  - A definition that differs from the registered one (interpreter, flags, magic, mask, offset,
    extension) is re-registered. If the kernel refuses the new definition, the previous registration
    is put back exactly (definition and enabled state) and the task fails naming the kernel's errno.
  - Optionally writes a persistent descriptor, either a binfmt-support format file imported with
    C(update-binfmts --import), or a systemd C(binfmt.d) file, without replacing a descriptor owned
    by a package unless O(force=true).
  - Enabling and disabling write C(1)/C(0) to the entry itself. C(update-binfmts --disable) is never
    used because it deletes the kernel entry, and C(systemd-binfmt) is never run because without
    arguments it flushes every entry.
  - Every input is validated as the kernel validates it before anything is changed; a bad value fails
    with a message naming the option and leaves the host unchanged.
author:
  - nativearm.binfmt contributors (@nativearm)
options:
  name:
    description:
      - Entry name, for example C(qemu-arm). Not C(.), C(..), C(register) or C(status), no C(/).
    type: str
    required: true
  state:
    description:
      - V(present) registers the entry, V(absent) removes it (and the descriptor when O(persist) is set).
    type: str
    choices: [present, absent]
    default: present
  enabled:
    description:
      - The entry's enabled switch (writes C(1) or C(0) to the entry).
    type: bool
    default: true
  arch:
    description:
      - A preset giving O(magic), O(mask) and O(offset) from qemu's binfmt table.
      - Mutually exclusive with O(magic), O(mask), O(offset) and O(extension).
    type: str
    choices: [aarch64, aarch64_be, arm, armeb, i386, m68k, mips64el, ppc, ppc64, ppc64le,
              riscv32, riscv64, s390x, sparc64, x86_64]
  type:
    description:
      - Match on a magic byte sequence or on a file name extension.
    type: str
    choices: [magic, extension]
    default: magic
  magic:
    description:
      - Magic bytes as plain hex (V(7f454c46)) or with C(\\xHH) escapes mixed with literal
        printable characters (V(\\x7fELF)).
    type: str
  mask:
    description:
      - Mask ANDed with the file's bytes before comparing with O(magic); same length as O(magic).
    type: str
  offset:
    description:
      - Byte offset of the magic in the file. O(offset) plus the magic length must fit the kernel's
        buffer (256 bytes since Linux 5.1, 128 before).
    type: int
  extension:
    description:
      - File name extension for O(type=extension), with or without the leading dot.
    type: str
  interpreter:
    description:
      - Absolute path of the interpreter. Required to register; must exist and be executable on the
        host (the kernel itself only checks it with the C(F) flag).
    type: path
  flags:
    description:
      - "Kernel flag letters, any of C(P) (preserve argv0), C(O) (open binary), C(C) (credentials,
        implies C(O)), C(F) (fix binary: the kernel opens the interpreter at registration)."
      - Compared in the kernel's normal form, so V(CF) and V(OCF) are the same definition.
    type: str
    default: ''
  allow_credentials:
    description:
      - The C(C) flag runs the interpreter with the credentials of a setuid binary, a privilege
        escalation risk; it is refused unless this is V(true).
    type: bool
    default: false
  persist:
    description:
      - V(none) manages the kernel entry only.
      - V(binfmt-support) writes a format file in O(binfmts_dir) and imports it with
        C(update-binfmts). It cannot express every flag set (C(O) without C(C)) and routes formats
        that share a magic through run-detectors; both are refused with a hint to use V(systemd).
      - V(systemd) writes C(NAME.conf) in O(binfmt_d_dir).
    type: str
    choices: [none, binfmt-support, systemd]
    default: none
  force:
    description:
      - Replace or remove a descriptor owned by a package (by dpkg, or by its C(package) line).
    type: bool
    default: false
  mount:
    description:
      - Mount binfmt_misc at O(binfmt_misc) when it is not mounted.
    type: bool
    default: true
  binfmt_misc:
    description:
      - Where binfmt_misc is (or is to be) mounted.
    type: path
    default: /proc/sys/fs/binfmt_misc
  binfmts_dir:
    description:
      - binfmt-support's import directory.
    type: path
    default: /usr/share/binfmts
  binfmts_admin_dir:
    description:
      - binfmt-support's administrative directory.
    type: path
    default: /var/lib/binfmts
  binfmt_d_dir:
    description:
      - Directory for systemd binfmt.d files written by this module.
    type: path
    default: /etc/binfmt.d
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
notes:
  - Runs on the managed host with the Python standard library only.
  - Re-registering an entry gives it a new inode; native armhf windows held on the old inode notice
    and re-assert themselves (see M(nativearm.binfmt.native_armhf_window)).
seealso:
  - module: nativearm.binfmt.binfmt_info
  - module: nativearm.binfmt.native_armhf_window
"""

EXAMPLES = r"""
- name: Register qemu-arm for a fleet without the packaged descriptor (Debian arm64)
  nativearm.binfmt.binfmt_entry:
    name: qemu-arm
    arch: arm
    interpreter: /usr/bin/qemu-arm-static
    flags: F
    persist: systemd

- name: Keep the entry registered but switched off
  nativearm.binfmt.binfmt_entry:
    name: qemu-arm
    arch: arm
    interpreter: /usr/bin/qemu-arm-static
    flags: F
    enabled: false

- name: An extension-based entry
  nativearm.binfmt.binfmt_entry:
    name: jar
    type: extension
    extension: jar
    interpreter: /usr/bin/jexec

- name: Remove an entry and the descriptor this module wrote
  nativearm.binfmt.binfmt_entry:
    name: qemu-riscv64
    state: absent
    persist: systemd
"""

RETURN = r"""
entry:
  description: The entry after the task (what the kernel shows); null when absent.
  returned: always
  type: dict
  sample:
    name: qemu-arm
    enabled: true
    interpreter: /usr/bin/qemu-arm-static
    flags: F
    type: magic
    offset: 0
    magic: 7f454c4601010100000000000000000002002800
    mask: ffffffffffffff00fffffffffffffffffeffffff
    extension: null
previous:
  description: The entry before the task, same shape as RV(entry); null when it was absent.
  returned: always
  type: dict
actions:
  description: Kernel steps taken (or, in check mode, that would be taken).
  returned: always
  type: list
  elements: str
  sample: [unregister, register]
descriptor:
  description: Path of the persistent descriptor managed by this task, when O(persist) is not V(none).
  returned: when persist is not none
  type: str
  sample: /etc/binfmt.d/qemu-arm.conf
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.nativearm.binfmt.plugins.module_utils import binfmt_misc as bm
from ansible_collections.nativearm.binfmt.plugins.module_utils.presets import ARCHES, preset


def build_module():
    return AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            enabled=dict(type="bool", default=True),
            arch=dict(type="str", choices=ARCHES),
            type=dict(type="str", default="magic", choices=["magic", "extension"]),
            magic=dict(type="str"),
            mask=dict(type="str"),
            offset=dict(type="int"),
            extension=dict(type="str"),
            interpreter=dict(type="path"),
            flags=dict(type="str", default=""),
            allow_credentials=dict(type="bool", default=False),
            persist=dict(type="str", default="none", choices=["none", "binfmt-support", "systemd"]),
            force=dict(type="bool", default=False),
            mount=dict(type="bool", default=True),
            binfmt_misc=dict(type="path", default=bm.DEFAULT_PATH),
            binfmts_dir=dict(type="path", default="/usr/share/binfmts"),
            binfmts_admin_dir=dict(type="path", default="/var/lib/binfmts"),
            binfmt_d_dir=dict(type="path", default="/etc/binfmt.d"),
        ),
        mutually_exclusive=[("arch", "magic"), ("arch", "mask"), ("arch", "offset"), ("arch", "extension")],
        supports_check_mode=True,
    )


def entry_text(entry):
    """An entry as the kernel prints it, for diff output."""
    if entry is None:
        return ""
    lines = ["enabled" if entry["enabled"] else "disabled",
             "interpreter %s" % entry["interpreter"], "flags: %s" % entry["flags"]]
    if entry["type"] == "extension":
        lines.append("extension .%s" % entry["extension"])
    else:
        lines += ["offset %d" % entry["offset"], "magic %s" % entry["magic"]]
        if entry["mask"]:
            lines.append("mask %s" % entry["mask"])
    return "\n".join(lines) + "\n"


class BinfmtEntry(object):
    """Holds one task's state: validate, plan, apply, and build the result."""

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.path = self.params["binfmt_misc"]
        self.name = self.params["name"]
        self.definition = None
        self.result = dict(changed=False, actions=[], previous=None, entry=None)

    def fail(self, msg, **extra):
        self.module.fail_json(msg=msg, **dict(self.result, **extra))

    # -- validation: everything is checked before anything changes --------------------------
    def validate(self):
        p = self.params
        try:
            bm.validate_name(self.name)
        except bm.BinfmtError as exc:
            self.fail(str(exc))
        if p["state"] == "absent":
            return
        magic, mask, offset = p["magic"], p["mask"], p["offset"]
        if p["arch"]:
            magic, mask, offset = preset(p["arch"])
        try:
            self.definition = bm.make_definition(
                self.name, p["interpreter"], type=p["type"], magic=magic, mask=mask, offset=offset,
                extension=p["extension"], flags=p["flags"], buf_size=bm.kernel_buf_size(os.uname()[2]))
        except bm.BinfmtError as exc:
            self.fail(str(exc))
        interpreter = self.definition["interpreter"]
        if not os.path.isfile(interpreter):
            self.fail("interpreter: %s does not exist on the host; install the package that provides it "
                      "or fix the path" % interpreter)
        if not os.access(interpreter, os.X_OK):
            self.fail("interpreter: %s is not executable; chmod +x it or point to the right file" % interpreter)
        if "C" in self.definition["flags"] and not p["allow_credentials"]:
            self.fail("flags: 'C' runs the interpreter with the credentials of setuid binaries, a privilege "
                      "escalation risk; remove it or set allow_credentials: true")

    # -- the mount -------------------------------------------------------------------------
    def ensure_mounted(self):
        if bm.is_mounted(self.path):
            return
        if not self.params["mount"]:
            self.fail("binfmt_misc: not mounted at %s; mount it or set mount: true" % self.path)
        if self.module.check_mode:
            self.result["mounted"] = True
            return
        rc, out, err = self.module.run_command(["mount", "-t", "binfmt_misc", "binfmt_misc", self.path])
        if rc != 0:
            self.fail("binfmt_misc: mounting at %s failed: %s" % (self.path, (err or out).strip()))
        self.result["mounted"] = True
        self.result["changed"] = True

    # -- kernel steps with rollback --------------------------------------------------------
    def apply_kernel(self, steps, previous):
        target_enabled = self.params["enabled"]
        try:
            for step in steps:
                if step == "unregister":
                    bm.unregister(self.name, self.path)
                elif step == "register":
                    bm.register(self.definition, self.path)
                elif step in ("enable", "disable"):
                    bm.set_enabled(self.name, step == "enable", self.path)
        except (IOError, OSError) as exc:
            restore = self.restore_previous(previous)
            self.fail("%s: the kernel refused to %s %s: %s%s" % (
                "interpreter" if step == "register" else "name", step, self.name, bm.errno_text(exc), restore),
                kernel_errno=exc.errno)
        return target_enabled

    def restore_previous(self, previous):
        """Put the prior registration back exactly; return a sentence for the failure message."""
        try:
            current = bm.read_entry(self.name, self.path)
            if previous is None:
                if current is not None:
                    bm.unregister(self.name, self.path)
                return "; nothing was registered before and nothing is now"
            if current is None or not bm.same_definition(current, previous):
                if current is not None:
                    bm.unregister(self.name, self.path)
                bm.register(previous, self.path)
            if not previous["enabled"]:
                bm.set_enabled(self.name, False, self.path)
            return "; the previous registration was put back unchanged"
        except (IOError, OSError) as exc:
            return "; putting the previous registration back ALSO failed (%s): it was %r" % (
                bm.errno_text(exc), previous)

    def run(self):
        self.validate()
        p = self.params
        persistence = None
        if p["persist"] != "none":
            # Imported only when needed: AnsiballZ payloads carry no .pyc, so every module_utils
            # file imported is compiled again on every run.
            from ansible_collections.nativearm.binfmt.plugins.module_utils.persist import Persistence
            persistence = Persistence(self.module, self.definition, p)
            persistence.plan()  # fails (before any change) on a package-owned file or an inexpressible format
        if p["state"] == "present":
            self.ensure_mounted()
        previous = bm.read_entry(self.name, self.path) if bm.is_mounted(self.path) else None
        self.result["previous"] = previous
        steps = bm.plan_entry(previous, self.definition, p["state"], p["enabled"])
        expected = None if p["state"] == "absent" else bm.expected_entry(self.definition, p["enabled"])
        self.result["actions"] = steps
        if steps or (persistence and persistence.changed):
            self.result["changed"] = True
        if self.module._diff:
            self.result["diff"] = [dict(before_header="%s/%s" % (self.path, self.name),
                                        after_header="%s/%s" % (self.path, self.name),
                                        before=entry_text(previous), after=entry_text(expected))]
            self.result["diff"] += persistence.diff() if persistence else []
        if persistence:
            self.result["descriptor"] = persistence.path
        if self.module.check_mode:
            self.result["entry"] = expected if self.result["changed"] else previous
            return self.result
        if steps:
            self.apply_kernel(steps, previous)
        if persistence:
            persistence.apply(on_error=lambda msg: self.fail(msg + self.restore_previous(previous)))
        self.result["entry"] = bm.read_entry(self.name, self.path) if bm.is_mounted(self.path) else None
        return self.result


def main():
    module = build_module()
    try:
        result = BinfmtEntry(module).run()
    except Exception as exc:   # never a traceback: the message names the field when it can
        module.fail_json(msg=str(exc) or repr(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
