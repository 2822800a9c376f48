# -*- coding: utf-8 -*-
# Copyright: (c) 2026, nativearm.binfmt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whole-or-nothing writes of files that root trusts.

One routine for the window records (``_window_records.py``), binfmt_drift's
report (``_drift_files.py``) and the persistent descriptors (``persist.py``).
``module.atomic_move`` is not used: it copies the destination's attributes
through a symlink (a binfmt.d mask to /dev/null became a 0666 file). Instead:

- a temporary file beside the name, created O_CREAT|O_EXCL|O_NOFOLLOW (never
  an existing file, never through a planted link), with an explicit mode
  (fchmod, whatever the umask) and owner;
- every byte written (a write that makes no progress is ENOSPC), fsync, the
  size checked against what was written (a full file system that truncated
  it is caught before the rename);
- renamed over the name, which must not be a symlink: a link there is
  refused (OSError ELOOP naming the path), like a descriptor's, unless the
  caller planned to replace that very link (``replace_link``: persist with
  ``force``); a link is never followed either way. The name is lstat'ed just
  before the rename: callers write in directories only root can write
  (checked before), so no one else can plant a link in between;
- on any failure, even an interrupt, the temporary file is removed and the
  old file is left as it was; then the directory is fsync'ed (best effort:
  the new version is in place; this only orders it before a crash).

Standard library only; raises OSError, which each caller words for its field.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import binascii
import errno
import os
import stat

TMP_INFIX = ".tmp."


def temp_name(name):
    """The temporary file name used for ``name`` (hidden, unique, contains TMP_INFIX)."""
    return ".%s%s%s" % (name, TMP_INFIX, binascii.hexlify(os.urandom(6)).decode("ascii"))


def _write_all(fd, data):
    view = memoryview(data)
    done = 0
    while done < len(data):
        n = os.write(fd, view[done:])
        if n <= 0:
            raise OSError(errno.ENOSPC, "short write")
        done += n


def refuse_symlink(path, dir_fd=None):
    """Raise OSError (ELOOP, naming ``path``) when ``path`` exists as a symlink."""
    try:
        st = os.lstat(path, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return
        raise
    if stat.S_ISLNK(st.st_mode):
        raise OSError(errno.ELOOP, "%s is a symlink: a file root trusts is never written over a link, nor "
                                   "through one; remove the link (or point at a real file)" % path, path)


def write_atomic(path, data, mode, owner=None, dir_fd=None, replace_link=False):
    """Replace ``path`` with ``data`` (bytes or text, UTF-8), whole or not at all.

    ``mode`` is the new file's mode; ``owner`` (uid, gid) its owner where we
    are root (None: whoever we are). With ``dir_fd``, ``path`` is a name in that
    directory. A symlink at ``path`` is refused unless ``replace_link`` (then
    the link itself is replaced). Raises OSError; the previous file (or link)
    is then intact and no temporary file is left."""
    if not isinstance(data, bytes):
        data = data.encode("utf-8")
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, temp_name(name))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode & 0o600,
                 dir_fd=dir_fd)
    try:
        try:
            _write_all(fd, data)
            if owner is not None and os.geteuid() == 0:
                os.fchown(fd, owner[0], owner[1])
            os.fchmod(fd, mode)
            os.fsync(fd)
            size = os.fstat(fd).st_size
            if size != len(data):
                raise OSError(errno.EIO, "the file holds %d of %d bytes after writing" % (size, len(data)))
        finally:
            os.close(fd)
        if not replace_link:
            refuse_symlink(path, dir_fd)
        os.rename(tmp, path, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except OSError:
            pass
        raise
    fsync_dir(directory or ".", dir_fd)


def fsync_dir(directory, dir_fd=None):
    """fsync a directory (``dir_fd`` itself when given); best effort."""
    try:
        if dir_fd is not None:
            os.fsync(dir_fd)
            return
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
