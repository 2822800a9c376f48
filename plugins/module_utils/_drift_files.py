# -*- coding: utf-8 -*-
# Copyright: (c) 2026, nativearm.binfmt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The files binfmt_drift reads and writes on the host: the desired state that
build_host records, and the JSON report.

Both live in a directory that only their owner (root) may write: a desired state
planted by another user would be remediation input (an interpreter, flags), and a
report written through a planted symlink would overwrite any file. So the
directory and the desired-state file are checked (not a symlink, owned by us or
root, not writable by group or others) before they are trusted, and the report is
written into a temporary file of its own and renamed over the name, which must not
be a symlink (refused before anything changes, and again at the rename:
``_safe_files.write_atomic``). Functions raise DriftFileError; paths are parameters.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import os
import stat

from ansible_collections.nativearm.binfmt.plugins.module_utils._safe_files import refuse_symlink, write_atomic

DESIRED_STATE_FILE = "/var/lib/nativearm-binfmt/desired.json"
REPORT_FILE = "/var/lib/nativearm-binfmt/drift-report.json"


class DriftFileError(Exception):
    """A file that cannot be used; ``field`` is the option that names it."""

    def __init__(self, field, message):
        super(DriftFileError, self).__init__("%s: %s" % (field, message))
        self.field = field


class DesiredStateMissing(DriftFileError):
    pass


def _check_owned(field, path, st, kind):
    if st.st_uid not in (0, os.geteuid()):
        raise DriftFileError(field, "%s %s is owned by uid %d, not by root; remove it or choose another path"
                             % (kind, path, st.st_uid))
    if st.st_mode & 0o022:
        raise DriftFileError(field, "%s %s is writable by its group or by others (mode %04o); make it "
                             "writable by root only (chmod go-w %s)" % (kind, path, stat.S_IMODE(st.st_mode), path))


def check_dir(field, directory, create=False, holding=None):
    """Check (or create, mode 0755) the directory a drift file (``holding``) lives in."""
    try:
        st = os.lstat(directory)
    except OSError as exc:
        if exc.errno != errno.ENOENT or not create:
            raise DriftFileError(field, "cannot use directory %s: %s" % (directory, exc.strerror or exc))
        try:
            os.makedirs(directory, 0o755)
        except OSError as exc2:
            if exc2.errno != errno.EEXIST:
                raise DriftFileError(field, "cannot create directory %s: %s" % (directory, exc2.strerror or exc2))
        st = os.lstat(directory)
    if not stat.S_ISDIR(st.st_mode):
        raise DriftFileError(field, "%s is not a directory (a symlink is refused)" % directory)
    _check_owned(field, directory, st, "directory" if holding is None else "the directory of %s," % holding)


def read_desired_state(path, field="desired_state_file"):
    """The text of the desired-state file; DesiredStateMissing when it does not exist."""
    directory = os.path.dirname(path) or "."
    if not os.path.lexists(path):
        raise DesiredStateMissing(field, "%s does not exist: this host has no recorded desired state. "
                                  "Provision it with the nativearm.binfmt.build_host role (playbook "
                                  "nativearm.binfmt.provision), which records it there, or give the "
                                  "desired entries (binfmt_drift_entries)" % path)
    check_dir(field, directory, holding=path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DriftFileError(field, "%s is a symlink; it is not followed (remove it and provision again)" % path)
        raise DriftFileError(field, "cannot read %s: %s" % (path, exc.strerror or exc))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise DriftFileError(field, "%s is not a regular file" % path)
        _check_owned(field, path, st, "file")
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError:
        raise DriftFileError(field, "%s is not UTF-8 text" % path)


def check_report(path, field="report"):
    """Before anything changes: the report's directory is safe (created when missing) and
    the report itself is not a symlink."""
    check_dir(field, os.path.dirname(path) or ".", create=True, holding=path)
    try:
        refuse_symlink(path)
    except OSError as exc:
        raise DriftFileError(field, exc.strerror or str(exc))


def write_report(path, text, field="report"):
    """Replace ``path`` (mode 0644) with ``text``, whole or not at all (_safe_files.write_atomic)."""
    directory = os.path.dirname(path) or "."
    check_dir(field, directory, create=True, holding=path)
    try:
        write_atomic(path, text, 0o644)
    except OSError as exc:
        raise DriftFileError(field, "cannot write %s in %s: %s; the previous report was left as it was"
                             % (os.path.basename(path), directory, exc.strerror or exc))
