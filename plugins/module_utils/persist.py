# -*- coding: utf-8 -*-
# Copyright: (c) 2026, nativearm.binfmt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The persistent-descriptor side of binfmt_entry: plan, diff and apply.

Planning reads the current descriptor and refuses, before anything changes,
to replace or remove one that a package owns (unless ``force``) or to write
a binfmt-support file for a definition that format cannot express.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import tempfile

from ansible_collections.nativearm.binfmt.plugins.module_utils import descriptors
from ansible_collections.nativearm.binfmt.plugins.module_utils.binfmt_misc import BinfmtError

# The package line of binfmt-support files this collection writes. binfmt-support treats
# "package :" as a local edit it then refuses to unimport, so a name is used instead.
OWN_PACKAGE = descriptors.OWN_PACKAGE


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except (IOError, OSError):
        return None


class Persistence(object):
    """One task's descriptor: ``plan()`` first, then ``diff()`` and ``apply()``."""

    def __init__(self, module, definition, params):
        self.module = module
        self.definition = definition
        self.params = params
        self.mode = params["persist"]
        self.name = params["name"]
        self.path = None
        self.before = None
        self.after = None
        self.import_needed = False
        if self.mode == "binfmt-support":
            self.path = os.path.join(params["binfmts_dir"], self.name)
        elif self.mode == "systemd":
            self.path = os.path.join(params["binfmt_d_dir"], self.name + ".conf")

    @property
    def changed(self):
        return self.path is not None and (self.before != self.after or self.import_needed)

    def owner(self):
        """The package that owns the current descriptor, or None if it is ours or unowned."""
        owner = descriptors.dpkg_owner(self.path)
        if owner:
            return owner
        if self.mode == "binfmt-support" and self.before is not None:
            return descriptors.binfmt_support_record(self.path).get("package")
        return None

    def plan(self):
        if self.path is None:
            return
        self.before = _read(self.path)
        if self.params["state"] == "absent":
            self.after = None
        elif self.mode == "binfmt-support":
            try:
                descriptors.check_binfmt_support_expressible(self.definition)
                descriptors.check_no_shared_magic(
                    self.definition, descriptors.read_binfmt_support_dir(self.params["binfmts_dir"]))
            except BinfmtError as exc:
                self.module.fail_json(msg=str(exc))
            self.after = descriptors.render_binfmt_support(self.definition, OWN_PACKAGE)
            # binfmt-support's database must know the format too, or it stays unmanaged
            self.import_needed = not os.path.exists(os.path.join(self.params["binfmts_admin_dir"], self.name))
        else:
            self.after = descriptors.render_binfmt_d(self.definition)
        if self.before != self.after and self.before is not None and not self.params["force"]:
            owner = self.owner()
            if owner:
                self.module.fail_json(
                    msg="persist: %s belongs to package %s; leave it to the package (persist: none) "
                        "or set force: true to %s it" % (
                            self.path, owner, "remove" if self.after is None else "replace"))

    def diff(self):
        if self.before == self.after:
            return []
        return [dict(before_header=self.path, after_header=self.path,
                     before=self.before or "", after=self.after or "")]

    def _update_binfmts(self, action):
        p = self.params
        argv = [self.module.get_bin_path("update-binfmts", required=True),
                "--importdir", p["binfmts_dir"], "--admindir", p["binfmts_admin_dir"], action, self.name]
        rc, out, err = self.module.run_command(argv)
        if rc != 0:
            raise OSError("%s failed (rc %d): %s" % (" ".join(argv), rc, (err or out).strip()))

    def _write(self, text):
        directory = os.path.dirname(self.path)
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o755)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".%s." % self.name)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        self.module.atomic_move(tmp, self.path)

    def apply(self, on_error):
        """Write or remove the descriptor (and tell binfmt-support). On failure the previous
        file is put back and ``on_error(msg)`` restores the kernel entry and fails the task."""
        if not self.changed:
            return
        try:
            if self.after is None:
                if self.mode == "binfmt-support" and os.path.exists(
                        os.path.join(self.params["binfmts_admin_dir"], self.name)):
                    self._update_binfmts("--unimport")
                if os.path.exists(self.path):
                    os.unlink(self.path)
                return
            self._write(self.after)
            if self.mode == "binfmt-support":
                self._update_binfmts("--import")
        except (IOError, OSError) as exc:
            try:
                if self.before is None:
                    if os.path.exists(self.path):
                        os.unlink(self.path)
                else:
                    self._write(self.before)
            except (IOError, OSError):
                pass
            on_error("persist: updating %s failed: %s" % (self.path, exc))
