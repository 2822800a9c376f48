# -*- coding: utf-8 -*-
# Copyright: (c) 2026, nativearm.binfmt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The persistent-descriptor side of binfmt_entry: plan, diff and apply.

Descriptor files are trusted by root at boot (systemd-binfmt, update-binfmts),
so they are handled without ever following a link a local user could plant:

- the directory is opened with O_NOFOLLOW and must be a real directory that
  only its owner can write; every file operation is relative to that fd;
- the descriptor is lstat'ed first: a symlink to /dev/null is a *mask*
  (binfmt.d(5)), reported as ``masked`` and left alone unless ``force``;
  ``state: absent`` never removes a mask; any other symlink is refused unless
  ``force`` (then the link itself is replaced, its target never written);
- a file is written root:root 0644 through a temporary file created in the
  same directory with O_CREAT|O_EXCL|O_NOFOLLOW, fsync'ed, renamed over the
  name, and the directory fsync'ed (``_safe_files.write_atomic``). (``atomic_move`` is not used: it copies
  the attributes of the destination through a symlink, so a mask became a
  0666 file.)

Planning refuses, before anything changes, to replace or remove a descriptor
a package owns (unless ``force``), to shadow a package's binfmt.d file of the
same name from /etc (unless ``force``), or to write a binfmt-support file for
a definition that format cannot express. Everything raises BinfmtError
(field ``persist``); the module turns it into ``fail_json``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import os
import stat

from ansible_collections.nativearm.binfmt.plugins.module_utils import descriptors
from ansible_collections.nativearm.binfmt.plugins.module_utils._safe_files import write_atomic
from ansible_collections.nativearm.binfmt.plugins.module_utils.binfmt_misc import BinfmtError

# The default paths are descriptors.py's constants (BINFMTS_DIR, BINFMTS_ADMIN_DIR, BINFMT_D_DIR,
# BINFMT_D_VENDOR_DIRS); here every path comes from the task's parameters.

# The package line of binfmt-support files this collection writes. binfmt-support treats
# "package :" as a local edit it then refuses to unimport, so a name is used instead.
OWN_PACKAGE = descriptors.OWN_PACKAGE
FILE_MODE = 0o644


# ---------------------------------------------------------------------------
# files relative to a directory fd, never through a symlink
# ---------------------------------------------------------------------------

def open_directory(path, field, private=True):
    """An O_DIRECTORY|O_NOFOLLOW fd on ``path``, which must be a real directory (and, when
    ``private``, writable by its owner only: checked before anything is written or removed);
    None when it does not exist. Raises BinfmtError naming ``field``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise BinfmtError(field, "%s is a symlink or not a directory; descriptors are never written "
                                     "through a link: point %s at the real directory" % (path, field))
        raise BinfmtError(field, "cannot open %s: %s" % (path, os.strerror(exc.errno)))
    st = os.fstat(fd)
    if private and (st.st_mode & 0o022 or st.st_uid != os.geteuid()):
        os.close(fd)
        raise BinfmtError(field, "%s is writable by other users (owner uid %d, mode %04o): another user "
                                 "could swap the descriptor; make it root-owned 0755"
                          % (path, st.st_uid, stat.S_IMODE(st.st_mode)))
    return fd


def file_state(dfd, name):
    """('absent'|'file'|'masked'|'symlink'|'other', detail) for ``name`` in the directory ``dfd``,
    from lstat: detail is the text of a regular file, or the target of a link."""
    if dfd is None:
        return "absent", None
    try:
        st = os.lstat(name, dir_fd=dfd)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return "absent", None
        raise
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(name, dir_fd=dfd)
        return ("masked" if target == os.devnull else "symlink"), target
    if not stat.S_ISREG(st.st_mode):
        return "other", None
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dfd)
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
    return "file", b"".join(chunks).decode("utf-8", "replace")


def write_file(dfd, name, text, replace_link=False):
    """Replace ``name`` in the directory ``dfd`` by a root:root 0644 file holding ``text``
    (_safe_files.write_atomic: O_EXCL|O_NOFOLLOW temporary file, fsync, size checked, rename,
    fsync of the directory). A symlink at ``name`` is refused unless ``replace_link``."""
    write_atomic(name, text, FILE_MODE, owner=(0, 0), dir_fd=dfd, replace_link=replace_link)


def remove_file(dfd, name):
    os.unlink(name, dir_fd=dfd)
    os.fsync(dfd)


# ---------------------------------------------------------------------------
# one task's descriptor
# ---------------------------------------------------------------------------

class Persistence(object):
    """One task's descriptor: ``plan()`` first, then ``diff()`` and ``apply()``; all raise BinfmtError.

    ``params`` are binfmt_entry's; ``run_command(argv) -> (rc, out, err)`` and
    ``get_bin_path(name)`` run update-binfmts. ``warnings`` collects what the module should warn.
    """

    def __init__(self, definition, params, run_command=None, get_bin_path=None, dpkg_query="dpkg-query"):
        self.definition = definition
        self.params = params
        self.run_command = run_command
        self.get_bin_path = get_bin_path
        self.dpkg_query = dpkg_query
        self.mode = params["persist"]
        self.name = params["name"]
        self.force = bool(params.get("force"))
        self.directory = self.file_name = self.path = None
        self.field = None
        self.state = "absent"
        self.before = None       # text of the current regular file, or None
        self.link = None         # target of a current symlink (a mask or not)
        self.after = None        # text to write, or None for no file
        self.action = None       # None | "write" | "remove"
        self.import_needed = False
        self.warnings = []
        if self.mode == "binfmt-support":
            self.field, self.directory, self.file_name = "binfmts_dir", params["binfmts_dir"], self.name
        elif self.mode == "systemd":
            self.field, self.directory, self.file_name = "binfmt_d_dir", params["binfmt_d_dir"], self.name + ".conf"
        if self.directory:
            self.path = os.path.join(self.directory, self.file_name)

    @property
    def masked(self):
        return self.state == "masked"

    @property
    def changed(self):
        return self.action is not None or self.import_needed

    def _dir(self, private=True):
        return open_directory(self.directory, self.field, private)

    def plan(self):
        if self.path is None:
            return
        dfd = self._dir(private=False)   # reading is safe anywhere; a change needs a private directory
        try:
            self.state, detail = file_state(dfd, self.file_name)
        finally:
            if dfd is not None:
                os.close(dfd)
        if self.state == "file":
            self.before = detail
        elif self.state in ("masked", "symlink"):
            self.link = detail
        elif self.state == "other":
            raise BinfmtError("persist", "%s is neither a file nor a symlink; remove it by hand" % self.path)
        if self.params["state"] == "absent":
            self._plan_absent()
        else:
            self._plan_present()
        if self.action is not None:
            dfd = self._dir()
            if dfd is not None:
                os.close(dfd)

    def _plan_absent(self):
        if self.state == "masked":
            self.warnings.append("persist: %s is masked (a symlink to /dev/null); state: absent never removes "
                                 "a mask, it is left as it is" % self.path)
            return
        if self.state == "absent":
            return
        if self.state == "symlink" and not self.force:
            raise BinfmtError("persist", "%s is a symlink to %s; it is never followed or removed without "
                                         "force: true" % (self.path, self.link))
        self._check_owner("remove")
        self.action = "remove"
        if self.mode == "binfmt-support":
            self.import_needed = os.path.exists(os.path.join(self.params["binfmts_admin_dir"], self.name))

    def _plan_present(self):
        if self.mode == "binfmt-support":
            descriptors.check_binfmt_support_expressible(self.definition)
            descriptors.check_no_shared_magic(
                self.definition, descriptors.read_binfmt_support_dir(self.params["binfmts_dir"]))
            self.after = descriptors.render_binfmt_support(self.definition, OWN_PACKAGE)
            self._warn_competitor(descriptors.read_binfmt_d_dirs(self._binfmt_d_dirs(), self.name),
                                  "systemd-binfmt")
        else:
            self.after = descriptors.render_binfmt_d(self.definition)
            support = os.path.join(self.params["binfmts_dir"], self.name)
            if os.path.lexists(support):
                self._warn_competitor([{"path": support}], "update-binfmts (binfmt-support)")
        if self.state == "masked":
            if not self.force:
                self.warnings.append("persist: %s is masked (a symlink to /dev/null, see binfmt.d(5)); it is "
                                     "left alone and the entry is not persisted. Remove the mask, or set "
                                     "force: true to replace it with this module's file" % self.path)
                self.after = None
                return
        elif self.state == "symlink" and not self.force:
            raise BinfmtError("persist", "%s is a symlink to %s; descriptors are never written through a link: "
                                         "remove it, or set force: true to replace the link (not its target) "
                                         "with a file" % (self.path, self.link))
        if self.before != self.after:
            if self.state == "file":
                self._check_owner("replace")
            if self.mode == "systemd":
                self._check_shadowing()
            self.action = "write"
        if self.mode == "binfmt-support":
            # binfmt-support's database must know the format too, or it stays unmanaged
            self.import_needed = (self.action is not None or not os.path.exists(
                os.path.join(self.params["binfmts_admin_dir"], self.name)))

    def _binfmt_d_dirs(self):
        return [self.params["binfmt_d_dir"]] + list(self.params.get("binfmt_d_vendor_dirs") or [])

    def _warn_competitor(self, records, tool):
        paths = sorted(set(r["path"] for r in records if r.get("path") != self.path))
        if paths:
            self.warnings.append("persist: %s also register(s) %s at boot through %s; whichever runs last wins. "
                                 "Keep one descriptor per entry" % (", ".join(paths), self.name, tool))

    def _check_owner(self, verb):
        if self.force:
            return
        owner = descriptors.dpkg_owner(self.path, self.dpkg_query)
        if not owner and self.mode == "binfmt-support" and self.before is not None:
            fields = descriptors.parse_binfmt_support(self.before)
            if fields.get("package") not in (None, "", descriptors.ADMIN_PACKAGE, OWN_PACKAGE):
                owner = fields["package"]
        if owner:
            raise BinfmtError("persist", "%s belongs to package %s; leave it to the package (persist: none) "
                                         "or set force: true to %s it" % (self.path, owner, verb))

    def _check_shadowing(self):
        if self.force:
            return
        for directory in self.params.get("binfmt_d_vendor_dirs") or []:
            vendor = os.path.join(directory, self.file_name)
            if os.path.lexists(vendor) and os.path.normpath(vendor) != os.path.normpath(self.path):
                owner = descriptors.dpkg_owner(vendor, self.dpkg_query)
                raise BinfmtError("persist", "%s would silently override %s%s; keep the package's file "
                                             "(persist: none), or set force: true to shadow it"
                                  % (self.path, vendor, " (package %s)" % owner if owner else ""))

    def diff(self):
        if self.action is None:
            return []
        before = self.before if self.before is not None else (
            "symlink to %s\n" % self.link if self.link else "")
        return [dict(before_header=self.path, after_header=self.path, before=before, after=self.after or "")]

    def _update_binfmts(self, action):
        p = self.params
        argv = [self.get_bin_path("update-binfmts", required=True),
                "--importdir", p["binfmts_dir"], "--admindir", p["binfmts_admin_dir"], action, self.name]
        rc, out, err = self.run_command(argv)
        if rc != 0:
            raise BinfmtError("persist", "%s failed (rc %d): %s" % (" ".join(argv), rc, (err or out).strip()))

    def apply(self):
        """Write or remove the descriptor (and tell binfmt-support). On failure the previous file
        (or link) is put back and BinfmtError is raised."""
        if not self.changed:
            return
        dfd = self._dir()
        if dfd is None and self.action == "write":
            os.makedirs(self.directory, 0o755)
            dfd = self._dir()
        try:
            try:
                if self.action == "remove":
                    if self.mode == "binfmt-support" and self.import_needed:
                        self._update_binfmts("--unimport")
                    remove_file(dfd, self.file_name)
                    return
                if self.action == "write":     # over a link only where the plan found one (force)
                    write_file(dfd, self.file_name, self.after, replace_link=self.link is not None)
                if self.mode == "binfmt-support":
                    self._update_binfmts("--import")
            except Exception as exc:
                self._put_back(dfd)
                if isinstance(exc, BinfmtError):
                    raise
                raise BinfmtError("persist", "updating %s failed: %s; the previous descriptor was put back"
                                  % (self.path, exc))
        finally:
            if dfd is not None:
                os.close(dfd)

    def _put_back(self, dfd):
        try:
            state, detail = file_state(dfd, self.file_name)
            if self.before is not None:
                if detail != self.before:
                    write_file(dfd, self.file_name, self.before)
            elif self.link is not None:
                if detail != self.link:
                    if state != "absent":
                        os.unlink(self.file_name, dir_fd=dfd)
                    os.symlink(self.link, self.file_name, dir_fd=dfd)
            elif state == "file":
                os.unlink(self.file_name, dir_fd=dfd)
        except OSError:
            pass
