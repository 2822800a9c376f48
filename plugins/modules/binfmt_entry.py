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
      - Entry name, for example C(qemu-arm).
      - "Allowed: letters, digits, C(_), C(.), C(+) and C(-), starting with a letter, a digit or C(_),
        at most 128 bytes; not C(register) or C(status). Why this allowlist: the kernel refuses only
        C(/), C(.) and C(..), but the name also becomes an argument of C(update-binfmts --import)
        (a leading C(-) would be read as an option), a file name in O(binfmts_dir) and O(binfmt_d_dir)
        (C(NAME.conf)), a field of the register line that C(systemd-binfmt) reads line by line
        (whitespace and control characters such as C(\\r) end or split a line), and part of the
        lock and record file names of native armhf windows. Every name that passes is safe in all of them."
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
      - Absolute path of the interpreter. Required to register; must be an executable regular file on
        the host (the kernel itself only checks it with the C(F) flag).
      - No whitespace or control characters (a C(\\r) or C(\\v) would end the line in a descriptor
        file and let a second, attacker-chosen line in). Lengths are counted in bytes; the whole
        register line must fit the kernel's 1920 bytes. Use a symlink for an awkward path.
    type: path
  flags:
    description:
      - "Kernel flag letters, any of C(P) (preserve argv0), C(O) (open binary), C(C) (credentials,
        implies C(O)), C(F) (fix binary: the kernel opens the interpreter at registration)."
      - C(O) makes the kernel open the binary and pass the interpreter an open file descriptor instead
        of a path, so it can run binaries the caller may execute but not read (mode 0711). The
        interpreter then handles files it could otherwise not read; only give it to an interpreter
        meant for that. C(C) additionally runs the interpreter with the binary's setuid/setgid
        credentials and needs O(allow_credentials).
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
      - With O(persist=systemd), shadow a package's C(NAME.conf) in O(binfmt_d_vendor_dirs)
        (C(/usr/lib/binfmt.d) and friends) by writing C(/etc/binfmt.d/NAME.conf); without it that is refused.
      - Replace a masked descriptor (a symlink to C(/dev/null), see binfmt.d(5)) with this module's file.
        Without it a mask is reported (RV(masked), a warning) and left alone. Replacing a mask is
        always explicit; O(state=absent) never removes a mask, even with O(force).
      - Replace a descriptor that is a symlink elsewhere by a file (the link is replaced, its target is
        never written).
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
      - Descriptor directories must be real directories (not symlinks) writable only by their owner.
        Files are written root:root 0644 through a temporary file in the same directory, fsync'ed and
        renamed; a descriptor is never written through a symlink.
    type: path
    default: /etc/binfmt.d
  binfmt_d_vendor_dirs:
    description:
      - binfmt.d directories of lower precedence than O(binfmt_d_dir), where packages put theirs. A
        C(NAME.conf) there is shadowed by O(binfmt_d_dir)'s only with O(force).
    type: list
    elements: path
    default: [/run/binfmt.d, /usr/local/lib/binfmt.d, /usr/lib/binfmt.d]
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
masked:
  description: The descriptor is masked (a symlink to /dev/null) and was left alone.
  returned: when persist is not none
  type: bool
  sample: false
kernel_errno:
  description: The kernel's errno when it refused a step (the previous registration was put back).
  returned: on a kernel refusal
  type: int
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.nativearm.binfmt.plugins.module_utils import binfmt_misc as bm
from ansible_collections.nativearm.binfmt.plugins.module_utils import descriptors
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
            binfmts_dir=dict(type="path", default=descriptors.BINFMTS_DIR),
            binfmts_admin_dir=dict(type="path", default=descriptors.BINFMTS_ADMIN_DIR),
            binfmt_d_dir=dict(type="path", default=descriptors.BINFMT_D_DIR),
            binfmt_d_vendor_dirs=dict(type="list", elements="path", default=list(descriptors.BINFMT_D_VENDOR_DIRS)),
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


def definition_from_params(p, buf_size=bm.BINPRM_BUF_SIZE):
    """The normalised definition the task asks for (None for state absent); raises BinfmtError
    naming the option. Pure: the interpreter's existence is checked by the caller."""
    bm.validate_name(p["name"])
    if p["state"] == "absent":
        return None
    magic, mask, offset = p["magic"], p["mask"], p["offset"]
    if p["arch"]:
        magic, mask, offset = preset(p["arch"])
    definition = bm.make_definition(
        p["name"], p["interpreter"], type=p["type"], magic=magic, mask=mask, offset=offset,
        extension=p["extension"], flags=p["flags"], buf_size=buf_size)
    if "C" in definition["flags"] and not p["allow_credentials"]:
        raise bm.BinfmtError("flags", "'C' runs the interpreter with the credentials of setuid binaries, a "
                                      "privilege escalation risk; remove it or set allow_credentials: true")
    return definition


class BinfmtEntry(object):
    """Holds one task's state: validate, plan, apply, and build the result. Raises on failure;
    ``self.result`` then holds what is known (previous, actions) for the failure result."""

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.path = self.params["binfmt_misc"]
        self.name = self.params["name"]
        self.definition = None
        self.result = dict(changed=False, actions=[], previous=None, entry=None)

    # -- validation: everything is checked before anything changes --------------------------
    def validate(self):
        self.definition = definition_from_params(self.params, bm.kernel_buf_size(os.uname()[2]))
        if self.definition is not None:
            bm.check_interpreter(self.definition["interpreter"])

    # -- the mount -------------------------------------------------------------------------
    def ensure_mounted(self):
        if bm.is_mounted(self.path):
            return
        if not self.params["mount"]:
            raise bm.BinfmtError("binfmt_misc", "not mounted at %s; mount it or set mount: true" % self.path)
        if self.module.check_mode:
            self.result["mounted"] = True
            return
        rc, out, err = self.module.run_command(["mount", "-t", "binfmt_misc", "binfmt_misc", self.path])
        if rc != 0:
            raise bm.BinfmtError("binfmt_misc", "mounting at %s failed: %s" % (self.path, (err or out).strip()))
        bm.check_filesystem(self.path)
        self.result["mounted"] = True
        self.result["changed"] = True

    def persistence(self):
        if self.params["persist"] == "none":
            return None
        # Imported only when needed: AnsiballZ payloads carry no .pyc, so every module_utils
        # file imported is compiled again on every run.
        from ansible_collections.nativearm.binfmt.plugins.module_utils.persist import Persistence
        persistence = Persistence(self.definition, self.params, self.module.run_command, self.module.get_bin_path)
        persistence.plan()  # raises (before any change) on a package-owned file or an inexpressible format
        for warning in persistence.warnings:
            self.module.warn(warning)
        self.result.update(descriptor=persistence.path, masked=persistence.masked)
        return persistence

    def run(self):
        self.validate()
        p = self.params
        persistence = self.persistence()
        if p["state"] == "present":
            self.ensure_mounted()
        mounted = bm.is_mounted(self.path)
        previous = bm.read_entry(self.name, self.path) if mounted else None
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
        if self.module.check_mode:
            self.result["entry"] = expected if self.result["changed"] else previous
            return self.result
        if steps:
            bm.apply_steps(self.name, steps, self.definition, previous, self.path)
        if persistence:
            try:
                persistence.apply()
            except Exception as exc:
                restored, sentence = bm.restore_entry(self.name, previous, self.path) if mounted else (True, "")
                raise bm.BinfmtError("persist", "%s; %s" % (exc, sentence or "the kernel entry was not changed"))
        self.result["entry"] = bm.read_entry(self.name, self.path) if mounted or steps else None
        return self.result


def main():
    module = build_module()
    task = BinfmtEntry(module)
    try:
        result = task.run()
    except Exception as exc:   # never a traceback: the message names the option when it can
        extra = dict(task.result)
        if isinstance(exc, bm.ApplyError):
            extra["kernel_errno"] = exc.errno
        module.fail_json(msg=str(exc) or repr(exc), **extra)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
