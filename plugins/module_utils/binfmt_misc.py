# -*- coding: utf-8 -*-
# Copyright: (c) 2026, nativearm.binfmt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The kernel's binfmt_misc interface, standard library only.

Pure functions parse what the kernel prints (entry files, ``status``,
mountinfo), normalise and validate a definition exactly as
``fs/binfmt_misc.c`` would, and render the ``register`` string. A few thin
I/O helpers at the bottom read and write the files; every one of them takes
the binfmt_misc directory as a parameter so tests can point it at a private
instance.

Every read and write of the instance lands on binfmt_misc itself, never on a
look-alike directory or through a planted symlink:

- ``open_dir(path)`` opens the directory (O_DIRECTORY) and checks with
  fstatfs(2) that it is a binfmt_misc filesystem (f_type ``BINFMTFS_MAGIC``),
  returning the directory fd; ``check_filesystem(path)`` does the same check
  and closes it. Both raise ``BinfmtError("binfmt_misc", ...)`` otherwise.
- ``open_entry(name, flags, path)`` opens one file of the instance (an entry,
  ``register`` or ``status``) relative to that checked directory fd with
  O_NOFOLLOW, so a symlink named like an entry is refused (ELOOP), never
  followed. It returns the fd (for flock(2), fstat or a write).
- ``read_entry_text(name, path)`` returns the file's text (None when absent);
  ``write_entry(name, data, path)`` writes ``data`` in one write(2), as the
  kernel parses each write alone. Both go through ``open_entry``.

``register``, ``unregister``, ``set_enabled``, ``read_status``,
``read_entry``, ``read_all_entries`` and ``list_entries`` are built on these.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ctypes
import errno
import os
import re
import unicodedata

DEFAULT_PATH = "/proc/sys/fs/binfmt_misc"
# statfs(2) f_type of a binfmt_misc filesystem (include/uapi/linux/magic.h: BINFMTFS_MAGIC).
BINFMTFS_MAGIC = 0x42494e4d
CONTROL_FILES = ("register", "status")

# fs/binfmt_misc.c: MAX_REGISTER_LENGTH; BINPRM_BUF_SIZE is 256 since Linux 5.1, 128 before.
MAX_REGISTER_LENGTH = 1920
BINPRM_BUF_SIZE = 256
BINPRM_BUF_SIZE_OLD = 128

# Entry names: an allowlist every consumer takes safely. The kernel refuses only '/', '.', '..'
# and the control files; update-binfmts takes the name as an argv word after --import (a leading
# '-' would be an option); systemd-binfmt and binfmt.d file names (NAME.conf) break on whitespace
# and control characters; the window keeps lock and record files named after the entry under
# /run. Letters, digits, '_', '.', '+' and '-', not starting with '.', '+' or '-', at most
# MAX_NAME_BYTES bytes (a file name plus the longest prefix and suffix stays under NAME_MAX, 255).
MAX_NAME_BYTES = 128
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")
NAME_RULE = ("letters, digits, '_', '.', '+' and '-', starting with a letter, a digit or '_', "
             "at most %d bytes (e.g. 'qemu-arm')" % MAX_NAME_BYTES)

# The order in which the kernel prints flags; C (credentials) implies O (open binary).
FLAG_ORDER = "POCF"

# Field delimiters tried in turn; magic and mask are always rendered as \xHH so
# they never contain one of these.
_DELIMITERS = ":|#!@,;%+=~^"

_HEX_PLAIN = re.compile(r"^(?:[0-9a-fA-F]{2})+$")
_HEX_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")


class BinfmtError(ValueError):
    """A definition the kernel would refuse; ``field`` names the offending option."""

    def __init__(self, field, message):
        super(BinfmtError, self).__init__("%s: %s" % (field, message))
        self.field = field
        self.message = message


# ---------------------------------------------------------------------------
# hex and flags
# ---------------------------------------------------------------------------

def parse_hex(value, field):
    """Decode a magic or mask given as plain hex (``7f454c46``) or with ``\\xHH``
    escapes mixed with literal printable characters (``\\x7fELF``)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BinfmtError(field, "must be a string of hex, e.g. '7f454c46' or '\\x7fELF'")
    if "\\" not in value:
        if not _HEX_PLAIN.match(value):
            raise BinfmtError(field, "%r is not plain hex (an even number of 0-9a-f digits); "
                                     "use \\xHH escapes to mix bytes and literal characters" % value)
        return bytes(bytearray.fromhex(value))
    out = bytearray()
    i = 0
    while i < len(value):
        if value[i] == "\\":
            match = _HEX_ESCAPE.match(value, i)
            if not match:
                raise BinfmtError(field, "malformed escape at position %d of %r: write every escaped "
                                         "byte as \\xHH with two hex digits (a backslash is \\x5c)" % (i, value))
            out.append(int(match.group(1), 16))
            i = match.end()
            continue
        char = value[i]
        if not (" " < char <= "~"):
            raise BinfmtError(field, "literal character %r at position %d of %r is not printable ASCII; "
                                     "escape it as \\xHH" % (char, i, value))
        out.append(ord(char))
        i += 1
    return bytes(out)


def escape_hex(data):
    """Render bytes as ``\\xHH`` escapes: safe for any delimiter and for descriptor files."""
    return "".join("\\x%02x" % b for b in bytearray(data))


def normalize_flags(flags, field="flags"):
    """Return flags in the kernel's normal form: letters in POCF order, C implying O."""
    if flags is None:
        flags = ""
    if not isinstance(flags, str):
        raise BinfmtError(field, "must be a string of flag letters such as 'F' or 'PF', got %r" % (flags,))
    bad = sorted(set(c for c in flags if c.upper() not in FLAG_ORDER))
    if bad:
        raise BinfmtError(field, "unknown flag(s) %s; the kernel accepts only P, O, C and F" % ", ".join(repr(c) for c in bad))
    letters = set(flags.upper())
    if "C" in letters:
        letters.add("O")
    return "".join(c for c in FLAG_ORDER if c in letters)


# ---------------------------------------------------------------------------
# parsing what the kernel prints
# ---------------------------------------------------------------------------

def parse_entry(text, name=None):
    """Parse an entry file into the module's entry dict.

    ``magic`` and ``mask`` are lower-case plain hex as the kernel prints them;
    ``mask`` is None when the entry has none.
    """
    entry = {"name": name, "enabled": None, "interpreter": None, "flags": "",
             "type": "magic", "offset": 0, "magic": None, "mask": None, "extension": None}
    for line in text.splitlines():
        if line in ("enabled", "disabled"):
            entry["enabled"] = line == "enabled"
        elif line.startswith("interpreter "):
            entry["interpreter"] = line[len("interpreter "):]
        elif line.startswith("flags:"):
            entry["flags"] = line[len("flags:"):].strip()
        elif line.startswith("offset "):
            entry["offset"] = int(line.split()[1])
        elif line.startswith("magic "):
            entry["magic"] = line.split()[1].lower()
        elif line.startswith("mask "):
            entry["mask"] = line.split()[1].lower()
        elif line.startswith("extension "):
            entry["type"] = "extension"
            entry["extension"] = line[len("extension "):].lstrip(".")
            entry["offset"] = None
    if entry["enabled"] is None or entry["interpreter"] is None:
        raise ValueError("not a binfmt_misc entry: %r" % text[:200])
    return entry


def parse_status(text):
    """True when the binfmt_misc instance is enabled."""
    return text.strip() == "enabled"


def parse_mountinfo(text, path):
    """Return True when a binfmt_misc filesystem is mounted exactly at ``path``
    (the last mount on a mount point is the one that counts)."""
    path = os.path.normpath(path)
    mounted = False
    for line in text.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        mount_point = fields[4].replace("\\040", " ")
        fstype = line.split(" - ", 1)[1].split()[0]
        if mount_point == path:
            mounted = fstype == "binfmt_misc"
    return mounted


def kernel_buf_size(release):
    """BINPRM_BUF_SIZE for a kernel release string such as ``6.1.0-28-arm64``."""
    match = re.match(r"(\d+)\.(\d+)", release or "")
    if match and (int(match.group(1)), int(match.group(2))) < (5, 1):
        return BINPRM_BUF_SIZE_OLD
    return BINPRM_BUF_SIZE


# ---------------------------------------------------------------------------
# definitions: normalise, validate, render, compare
# ---------------------------------------------------------------------------

def validate_name(name, field="name"):
    """Return ``name`` if it is an entry name every consumer takes safely (see NAME_RULE);
    raise BinfmtError naming ``field`` otherwise. Lengths are counted in bytes."""
    if not isinstance(name, str) or not name:
        raise BinfmtError(field, "must be a non-empty string of %s" % NAME_RULE)
    size = len(name.encode("utf-8", "surrogateescape"))
    if size > MAX_NAME_BYTES:
        raise BinfmtError(field, "is %d bytes; the limit is %d (%s)" % (size, MAX_NAME_BYTES, NAME_RULE))
    if name in CONTROL_FILES:
        raise BinfmtError(field, "%r is a binfmt_misc control file, not an entry name" % name)
    if not _NAME.match(name):
        bad = name[0] if name[0] in ".+-" else next(c for c in name if not re.match(r"[A-Za-z0-9_.+-]", c))
        raise BinfmtError(field, "%r is not allowed (%r%s): use only %s" % (
            name, bad, " at the start" if bad == name[0] and bad in ".+-" else "", NAME_RULE))
    return name


def _unsafe_char(text):
    """The first whitespace, control, format or undecodable character of ``text``, or None."""
    for char in text:
        if char.isspace() or unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"):
            return char
    return None


def validate_interpreter(interpreter, field="interpreter"):
    """An absolute path without whitespace or control characters (a \\r or \\v would end a
    line in a descriptor file and inject a second one), at most PATH_MAX bytes."""
    if not interpreter or not isinstance(interpreter, str):
        raise BinfmtError(field, "is required to register an entry (an absolute path, e.g. /usr/bin/qemu-arm-static)")
    if not interpreter.startswith("/"):
        raise BinfmtError(field, "%r must be an absolute path" % interpreter)
    bad = _unsafe_char(interpreter)
    if bad is not None:
        raise BinfmtError(field, "%r contains %r at position %d; whitespace and control characters cannot "
                                 "be carried safely by the kernel's register line or a descriptor file: "
                                 "use a path without them (a symlink to the interpreter works)"
                          % (interpreter, bad, interpreter.index(bad)))
    size = len(interpreter.encode("utf-8"))
    if size >= 4096:
        raise BinfmtError(field, "is %d bytes; the kernel's limit for a path is 4095" % size)
    return interpreter


def check_interpreter(interpreter, field="interpreter"):
    """Raise BinfmtError unless ``interpreter`` is an executable regular file on this host."""
    if not os.path.exists(interpreter):
        raise BinfmtError(field, "%s does not exist on the host; install the package that provides it "
                                 "or fix the path" % interpreter)
    if not os.path.isfile(interpreter):
        raise BinfmtError(field, "%s is not a regular file; point it at the interpreter program" % interpreter)
    if not os.access(interpreter, os.X_OK):
        raise BinfmtError(field, "%s is not executable; chmod +x it or point to the right file" % interpreter)


def make_definition(name, interpreter, type="magic", magic=None, mask=None, offset=None,
                    extension=None, flags="", buf_size=BINPRM_BUF_SIZE):
    """Validate a definition as the kernel would and return it in normal form.

    The result has the shape of a parsed entry (without ``enabled``): magic and
    mask as plain lower-case hex, flags in the kernel's normal form. Raises
    BinfmtError naming the field for anything the kernel would refuse.
    """
    validate_name(name)
    if type not in ("magic", "extension"):
        raise BinfmtError("type", "must be 'magic' or 'extension', got %r" % (type,))
    validate_interpreter(interpreter)
    definition = {"name": name, "interpreter": interpreter, "flags": normalize_flags(flags),
                  "type": type, "offset": None, "magic": None, "mask": None, "extension": None}
    if type == "extension":
        for field, value in (("magic", magic), ("mask", mask), ("offset", offset)):
            if value not in (None, "", 0):
                raise BinfmtError(field, "is only for type 'magic'; an extension entry matches the file name")
        if not extension:
            raise BinfmtError("extension", "is required for type 'extension' (e.g. 'jar')")
        if not isinstance(extension, str):
            raise BinfmtError("extension", "must be a string (a file suffix such as 'jar')")
        extension = extension[1:] if extension.startswith(".") else extension
        if not extension or "/" in extension or _unsafe_char(extension) is not None:
            raise BinfmtError("extension", "%r must be a non-empty file suffix without '/', whitespace "
                                           "or control characters" % extension)
        definition["extension"] = extension
        render_register(definition)   # the whole line within the kernel's limit, in bytes
        return definition
    if extension:
        raise BinfmtError("extension", "is only for type 'extension'")
    magic_bytes = parse_hex(magic, "magic")
    if not magic_bytes:
        raise BinfmtError("magic", "is required for type 'magic' (or give arch)")
    mask_bytes = parse_hex(mask, "mask")
    if isinstance(offset, bool):
        raise BinfmtError("offset", "must be a non-negative integer, got %r" % (offset,))
    try:
        offset = int(offset or 0)
    except (TypeError, ValueError):
        raise BinfmtError("offset", "must be a non-negative integer, got %r" % (offset,))
    if offset < 0:
        raise BinfmtError("offset", "must be a non-negative integer, got %d" % offset)
    if offset + len(magic_bytes) > buf_size:
        raise BinfmtError("offset", "offset %d + magic length %d exceeds the kernel's %d-byte buffer"
                          % (offset, len(magic_bytes), buf_size))
    if mask_bytes is not None and len(mask_bytes) != len(magic_bytes):
        raise BinfmtError("mask", "is %d bytes but magic is %d bytes; they must be the same length"
                          % (len(mask_bytes), len(magic_bytes)))
    definition.update(offset=offset, magic=magic_bytes.hex(),
                      mask=mask_bytes.hex() if mask_bytes is not None else None)
    render_register(definition)   # the whole line within the kernel's limit, in bytes
    return definition


def render_register(definition):
    """The string to write to ``register`` for a normalised definition.

    The kernel takes the first character as the field delimiter, so one is
    chosen that occurs in no field (an interpreter path may contain ':').
    """
    d = definition
    if d["type"] == "extension":
        fields = [d["name"], "E", "", d["extension"], "", d["interpreter"], d["flags"]]
    else:
        mask = escape_hex(bytes.fromhex(d["mask"])) if d["mask"] else ""
        fields = [d["name"], "M", str(d["offset"]) if d["offset"] else "",
                  escape_hex(bytes.fromhex(d["magic"])), mask, d["interpreter"], d["flags"]]
    text = "".join(fields)
    delim = next((c for c in _DELIMITERS if c not in text), None)
    if delim is None:
        raise BinfmtError("interpreter", "name, extension and interpreter together use every usable "
                                         "delimiter (%s); rename one of them" % _DELIMITERS)
    line = delim + delim.join(fields)
    size = len(line.encode("utf-8", "surrogateescape"))
    if size > MAX_REGISTER_LENGTH:
        raise BinfmtError("interpreter", "the register string is %d bytes; the kernel's limit is %d "
                                         "(shorten the interpreter path, e.g. with a symlink)"
                          % (size, MAX_REGISTER_LENGTH))
    return line


DEFINITION_KEYS = ("interpreter", "flags", "type", "offset", "magic", "mask", "extension")


def same_definition(entry, definition):
    """True when a parsed entry registers exactly the given definition."""
    return all(entry.get(k) == definition.get(k) for k in DEFINITION_KEYS)


def plan_entry(current, definition, state="present", enabled=True):
    """Steps that take ``current`` (parsed entry or None) to the desired state.

    Returns a list drawn from ``unregister``, ``register``, ``enable``,
    ``disable``; an empty list means nothing to change. A registration always
    starts enabled, so a disabled target registers and then disables.
    """
    if state == "absent":
        return ["unregister"] if current else []
    steps = []
    if current is None or not same_definition(current, definition):
        if current is not None:
            steps.append("unregister")
        steps.append("register")
        if not enabled:
            steps.append("disable")
        return steps
    if current["enabled"] != enabled:
        steps.append("enable" if enabled else "disable")
    return steps


def matches(entry, header, file_name=""):
    """Whether the kernel would hand a file with these first bytes (and name) to ``entry``."""
    if entry["type"] == "extension":
        return file_name.endswith("." + entry["extension"])
    magic = bytes.fromhex(entry["magic"])
    mask = bytes.fromhex(entry["mask"]) if entry["mask"] else b"\xff" * len(magic)
    window = bytearray(header[entry["offset"]:entry["offset"] + len(magic)])
    if len(window) < len(magic):
        return False
    return all((w & m) == (g & m) for w, m, g in zip(window, bytearray(mask), bytearray(magic)))


def expected_entry(definition, enabled):
    """The entry dict the kernel will show once ``definition`` is registered."""
    entry = dict(definition)
    entry["enabled"] = bool(enabled)
    return entry


# ---------------------------------------------------------------------------
# I/O on a binfmt_misc directory
# ---------------------------------------------------------------------------

_LIBC = []


def _fstatfs_type(fd):
    """f_type of the filesystem holding ``fd`` (os.statvfs has no f_type)."""
    if not _LIBC:
        _LIBC.append(ctypes.CDLL(None, use_errno=True))
    buf = ctypes.create_string_buffer(512)   # struct statfs is 120 bytes on 64-bit Linux
    if _LIBC[0].fstatfs(fd, buf) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return ctypes.c_long.from_buffer(buf).value & 0xffffffff


def open_dir(path=DEFAULT_PATH):
    """An O_DIRECTORY fd on ``path`` after checking that it is a binfmt_misc filesystem.

    Raises BinfmtError naming ``binfmt_misc`` when it is not (a plain directory with a
    ``status`` file, procfs under an unmounted mount point); OSError when it cannot be
    opened at all (ENOENT when it does not exist). The caller closes the fd.
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fstype = _fstatfs_type(fd)
    except BaseException:
        os.close(fd)
        raise
    if fstype != BINFMTFS_MAGIC:
        os.close(fd)
        raise BinfmtError("binfmt_misc", "%s is not a binfmt_misc filesystem (f_type 0x%x); point binfmt_misc "
                                         "at the mount, e.g. /proc/sys/fs/binfmt_misc" % (path, fstype))
    return fd


def check_filesystem(path=DEFAULT_PATH):
    """Raise BinfmtError unless ``path`` is a binfmt_misc filesystem (OSError if it cannot be opened)."""
    os.close(open_dir(path))


def _check_component(name):
    """A single file name in the instance (an entry or a control file), never a path."""
    if not name or not isinstance(name, str) or "/" in name or "\0" in name or name in (".", ".."):
        raise BinfmtError("name", "%r is not a binfmt_misc entry name (e.g. 'qemu-arm')" % (name,))


def open_entry(name, flags=os.O_RDONLY, path=DEFAULT_PATH):
    """An fd on the file ``name`` of the binfmt_misc instance at ``path``.

    The directory is checked to be binfmt_misc (open_dir) and the file is opened relative
    to it with O_NOFOLLOW, so a symlink in its place fails with ELOOP instead of being
    followed. OSError carries the errno (ENOENT: no such entry). The caller closes the fd.
    """
    _check_component(name)
    dfd = open_dir(path)
    try:
        return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    finally:
        os.close(dfd)


def entry_state(name, path=DEFAULT_PATH, dir_fd=None):
    """{present, enabled, ino} of the entry ``name`` right now: one open (O_NOFOLLOW,
    relative to ``dir_fd`` when given, else through open_entry), fstat and a small
    read. An entry unregistered meanwhile is absent; other errors raise OSError."""
    absent = {"present": False, "enabled": None, "ino": None}
    try:
        if dir_fd is None:
            fd = open_entry(name, os.O_RDONLY, path)
        else:
            _check_component(name)
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return absent
        raise
    try:
        ino = os.fstat(fd).st_ino
        first = os.read(fd, 64).split(b"\n", 1)[0]
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return absent
        raise
    finally:
        os.close(fd)
    return {"present": True, "enabled": first.strip() == b"enabled", "ino": ino}


def read_entry_text(name, path=DEFAULT_PATH):
    """The text of the file ``name`` of the instance, or None when it does not exist."""
    try:
        fd = open_entry(name, os.O_RDONLY, path)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            chunks.append(chunk)
    except OSError as exc:
        if exc.errno == errno.ENOENT:   # unregistered between open and read
            return None
        raise
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", "surrogateescape")


def write_entry(name, data, path=DEFAULT_PATH):
    """One write(2) of ``data`` (str or bytes) to the file ``name`` of the instance."""
    if not isinstance(data, bytes):
        data = data.encode("utf-8", "surrogateescape")
    fd = open_entry(name, os.O_WRONLY, path)
    try:
        written = os.write(fd, data)
    finally:
        os.close(fd)
    if written != len(data):
        raise OSError(errno.EIO, "short write to %s/%s (%d of %d bytes)" % (path, name, written, len(data)))


def _read(path):
    with open(path, "r") as f:
        return f.read()


def is_mounted(path=DEFAULT_PATH, mountinfo="/proc/self/mountinfo"):
    """True when a binfmt_misc instance is at ``path`` (checked with fstatfs on the directory,
    which also works through /proc/PID/root); False when nothing is mounted there. A
    directory that exists but is another filesystem with binfmt_misc's files in it (a
    look-alike) raises BinfmtError rather than being mistaken for either."""
    try:
        check_filesystem(path)
        return True
    except BinfmtError:
        if os.path.lexists(os.path.join(path, "register")) or os.path.lexists(os.path.join(path, "status")):
            raise
        return False
    except OSError:
        return False


def read_status(path=DEFAULT_PATH):
    text = read_entry_text("status", path)
    if text is None:
        raise BinfmtError("binfmt_misc", "%s has no status file" % path)
    return parse_status(text)


def list_entries(path=DEFAULT_PATH):
    try:
        dfd = open_dir(path)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return []
        raise
    try:
        names = os.listdir(dfd)
    finally:
        os.close(dfd)
    return sorted(n for n in names if n not in CONTROL_FILES)


def read_entry(name, path=DEFAULT_PATH):
    """The parsed entry, or None when it is not registered."""
    text = read_entry_text(name, path)
    return None if text is None else parse_entry(text, name)


def read_all_entries(path=DEFAULT_PATH):
    entries = {}
    for name in list_entries(path):
        entry = read_entry(name, path)
        if entry is not None:
            entries[name] = entry
    return entries


def register(definition, path=DEFAULT_PATH):
    """Register a normalised definition; OSError carries the kernel's errno."""
    write_entry("register", render_register(definition), path)


def set_enabled(name, enabled, path=DEFAULT_PATH):
    write_entry(name, "1" if enabled else "0", path)


def unregister(name, path=DEFAULT_PATH):
    write_entry(name, "-1", path)


class ApplyError(BinfmtError):
    """A kernel step failed after validation; the previous registration was put back (or the
    message says it could not be). ``errno`` is the kernel's, when it refused."""

    def __init__(self, field, message, errno_=None, restored=None):
        super(ApplyError, self).__init__(field, message)
        self.errno = errno_
        self.restored = restored


def restore_entry(name, previous, path):
    """Put ``previous`` (a parsed entry, or None) back exactly; return a sentence for the message."""
    try:
        current = read_entry(name, path)
        if previous is None:
            if current is not None:
                unregister(name, path)
            return True, "nothing was registered before and nothing is now"
        if current is None or not same_definition(current, previous):
            if current is not None:
                unregister(name, path)
            register(previous, path)
            current = read_entry(name, path)
        if current["enabled"] != previous["enabled"]:
            set_enabled(name, previous["enabled"], path)
        return True, "the previous registration was put back unchanged"
    except Exception as exc:   # the caller must learn both failures
        text = errno_text(exc) if isinstance(exc, OSError) else str(exc)
        if previous is None:
            return False, "removing the new registration ALSO failed (%s): %s may be left registered" % (text, name)
        try:
            was = render_register(previous)
        except BinfmtError:
            was = repr(previous)
        return False, "putting the previous registration back ALSO failed (%s): it was %s" % (text, was)


def apply_steps(name, steps, definition=None, previous=None, path=DEFAULT_PATH, check=True):
    """Carry out ``steps`` (from plan_entry) for entry ``name`` with rollback.

    Everything is validated before the first kernel write: the filesystem at ``path``,
    the name, the definition rendered to its register line (in bytes), and (``check``)
    that its interpreter is an executable file here. Any failure after that puts
    ``previous`` (the parsed entry before, or None) back, definition and enabled state,
    and raises ApplyError naming the field, the kernel's errno and what was restored.
    """
    if "register" in steps:
        validate_name(name)
        if definition is None or definition.get("name") != name:
            raise BinfmtError("name", "a registration of %s needs its definition" % name)
        render_register(definition)
        if check:
            check_interpreter(definition["interpreter"])
    else:
        _check_component(name)   # an existing entry may predate the allowlist
    check_filesystem(path)
    step = None
    try:
        for step in steps:
            if step == "unregister":
                unregister(name, path)
            elif step == "register":
                register(definition, path)
            elif step in ("enable", "disable"):
                set_enabled(name, step == "enable", path)
            else:
                raise BinfmtError("steps", "unknown step %r" % (step,))
    except Exception as exc:
        restored, sentence = restore_entry(name, previous, path)
        field = "interpreter" if step == "register" else "name"
        if isinstance(exc, OSError):
            what = "the kernel refused to %s %s: %s" % (step, name, errno_text(exc))
        else:
            what = "%s %s failed: %s" % (step, name, exc)
        raise ApplyError(field, "%s; %s" % (what, sentence), getattr(exc, "errno", None), restored)


def errno_text(exc):
    """``EINVAL (Invalid argument)`` for an OSError from the kernel."""
    code = getattr(exc, "errno", None)
    if code is None:
        return str(exc)
    return "%s (%s)" % (errno.errorcode.get(code, str(code)), os.strerror(code))
