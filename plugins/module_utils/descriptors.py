# -*- coding: utf-8 -*-
# Copyright: (c) 2026, nativearm.binfmt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Persistent binfmt descriptors: Debian binfmt-support and systemd binfmt.d.

Pure functions parse and render both formats and convert them to and from the
normalised definition of ``binfmt_misc.make_definition`` (magic/mask as plain
lower-case hex, flags in the kernel's "POCF" normal form). Thin I/O helpers at
the bottom scan directories and ask dpkg who owns a file; every path is a
parameter, and one bad file is reported in its record, never raised.

Both formats hand their magic and mask to the kernel as written, so they are
decoded as the kernel does (``string_unescape`` with UNESCAPE_HEX): ``\\xH`` or
``\\xHH`` is a byte, every other character (a lone backslash included) is
itself. ``magic BC`` is the two bytes "BC", not the one byte 0xbc.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re
import subprocess

from ansible_collections.nativearm.binfmt.plugins.module_utils.binfmt_misc import (
    BINPRM_BUF_SIZE, BinfmtError, escape_hex, make_definition, render_register)

BINFMTS_DIR = "/usr/share/binfmts"
BINFMTS_ADMIN_DIR = "/var/lib/binfmts"
# systemd's search path for binfmt.d, highest precedence first.
BINFMT_D_DIRS = ("/etc/binfmt.d", "/run/binfmt.d", "/usr/local/lib/binfmt.d", "/usr/lib/binfmt.d")
# Where binfmt_entry writes NAME.conf, and the lower-precedence (package, runtime) directories it shadows.
BINFMT_D_DIR = BINFMT_D_DIRS[0]
BINFMT_D_VENDOR_DIRS = BINFMT_D_DIRS[1:]

# The package line of the binfmt-support files this collection writes.
OWN_PACKAGE = "nativearm.binfmt"
# binfmt-support's marker for a format the administrator installed by hand.
ADMIN_PACKAGE = ":"
BINFMT_D_HEADER = ("# Managed by nativearm.binfmt (Ansible); local changes will be overwritten.\n"
                   "# Format: binfmt.d(5), one register line per entry.\n")

# The keys binfmt-support reads from a format file, in the order this module writes them.
BINFMT_SUPPORT_KEYS = ("package", "interpreter", "magic", "offset", "mask", "extension",
                       "detector", "credentials", "preserve", "fix_binary")
_SUPPORT_FLAGS = (("credentials", "C"), ("preserve", "P"), ("fix_binary", "F"))

_KERNEL_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{1,2})")
_SUGGEST_SYSTEMD = "; use persist: systemd (binfmt.d), which writes the kernel's register line as is"


def decode_magic(text):
    """Bytes of a magic or mask as the kernel decodes it (``\\xHH``, else literal)."""
    out = bytearray()
    pos = 0
    for match in _KERNEL_ESCAPE.finditer(text):
        out.extend(text[pos:match.start()].encode("utf-8"))
        out.append(int(match.group(1), 16))
        pos = match.end()
    out.extend(text[pos:].encode("utf-8"))
    return bytes(out)


def _hex_or_none(text):
    return decode_magic(text).hex() if text else None


# ---------------------------------------------------------------------------
# Debian binfmt-support: /usr/share/binfmts/NAME
# ---------------------------------------------------------------------------

def parse_binfmt_support(text):
    """Parse a binfmt-support format file into an ordered {key: value} dict.

    As update-binfmts reads it: the key is the text before the first space,
    lower-cased; the value is the rest with trailing whitespace removed; a
    repeated key overrides the earlier one. Blank lines are skipped.
    """
    fields = {}
    for line in text.splitlines():
        line = line.rstrip()
        if not line:
            continue
        key, _sep, value = line.partition(" ")
        fields[key.lower()] = value
    return fields


def render_binfmt_support_fields(fields):
    """Render a parsed binfmt-support dict back to text (the inverse of parse)."""
    return "".join("%s %s\n" % (key, value) if value else "%s\n" % key
                   for key, value in fields.items())


def binfmt_support_to_definition(fields, name, buf_size=BINPRM_BUF_SIZE):
    """The normalised definition a binfmt-support format file registers.

    Raises BinfmtError naming the field for a file update-binfmts or the
    kernel would refuse. (A format with a ``detector``, or one sharing its
    magic with another, is registered with binfmt-support's run-detectors as
    the kernel's interpreter; the definition keeps the format's interpreter.)
    """
    if "magic" in fields and "extension" in fields:
        raise BinfmtError("extension", "a binfmt-support file has either magic or extension, not both")
    if "magic" not in fields and "extension" not in fields:
        raise BinfmtError("magic", "a binfmt-support file needs a magic or an extension line")
    flags = "".join(letter for key, letter in _SUPPORT_FLAGS if fields.get(key) == "yes")
    if fields.get("detector") and "F" in flags:
        raise BinfmtError("detector", "update-binfmts refuses a userspace detector with fix_binary yes")
    if "extension" in fields:
        for field in ("mask", "offset"):
            if fields.get(field) not in (None, "", "0" if field == "offset" else ""):
                raise BinfmtError(field, "is only for magic formats, not for an extension")
        return make_definition(name, fields.get("interpreter"), type="extension",
                               extension=fields["extension"], flags=flags, buf_size=buf_size)
    offset = fields.get("offset") or "0"
    if not offset.isdigit():
        raise BinfmtError("offset", "%r is not a non-negative decimal number" % offset)
    return make_definition(name, fields.get("interpreter"), magic=_hex_or_none(fields["magic"]),
                           mask=_hex_or_none(fields.get("mask")), offset=int(offset),
                           flags=flags, buf_size=buf_size)


# update-binfmts' database (/var/lib/binfmts/NAME) holds one value per line, in this order.
_DATABASE_LINES = ("package", "type", "offset", "magic", "mask", "interpreter",
                   "detector", "credentials", "preserve", "fix_binary")


def parse_binfmt_support_db(text):
    """An update-binfmts database file as format-file fields (for binfmt_support_to_definition).

    The last four lines (detector onwards) are optional, as update-binfmts
    reads them; for an extension format the magic line holds the extension.
    """
    values = [line.rstrip() for line in text.splitlines()]
    if len(values) < 6:
        raise BinfmtError("database", "%d lines; an update-binfmts database entry has at least 6 "
                                      "(package, type, offset, magic, mask, interpreter)" % len(values))
    fields = dict(zip(_DATABASE_LINES, values + [""] * len(_DATABASE_LINES)))
    kind = fields.pop("type")
    if kind == "extension":
        fields["extension"] = fields.pop("magic")
    elif kind != "magic":
        raise BinfmtError("type", "%r must be 'magic' or 'extension'" % kind)
    return fields


def check_binfmt_support_expressible(definition):
    """Raise BinfmtError("persist") when binfmt-support cannot register ``definition`` as is."""
    flags = definition["flags"]
    if "O" in flags and "C" not in flags:
        raise BinfmtError("persist", "binfmt-support cannot express flag O without C (it only knows "
                                     "credentials, preserve and fix_binary)" + _SUGGEST_SYSTEMD)
    for field in ("name", "interpreter", "extension"):
        if ":" in (definition.get(field) or ""):
            raise BinfmtError("persist", "binfmt-support always registers with ':' as the delimiter, and "
                                         "the %s %r contains one%s" % (field, definition[field], _SUGGEST_SYSTEMD))


def definition_to_binfmt_support(definition, package=OWN_PACKAGE):
    """The binfmt-support fields (ordered dict) that register ``definition``."""
    check_binfmt_support_expressible(definition)
    fields = {"package": package, "interpreter": definition["interpreter"]}
    if definition["type"] == "extension":
        fields["extension"] = definition["extension"]
    else:
        fields["magic"] = escape_hex(bytes.fromhex(definition["magic"]))
        fields["offset"] = str(definition["offset"] or 0)
        if definition["mask"]:
            fields["mask"] = escape_hex(bytes.fromhex(definition["mask"]))
    for key, letter in _SUPPORT_FLAGS:
        fields[key] = "yes" if letter in definition["flags"] else "no"
    return fields


def render_binfmt_support(definition, package=OWN_PACKAGE):
    """The text of /usr/share/binfmts/NAME for a normalised definition."""
    return render_binfmt_support_fields(definition_to_binfmt_support(definition, package))


def _match_key(definition):
    """What the kernel matches on: two definitions with the same key claim the same files."""
    if definition["type"] == "extension":
        return ("extension", definition["extension"])
    mask = definition["mask"] or "ff" * (len(definition["magic"]) // 2)
    return ("magic", definition["offset"] or 0, definition["magic"], mask)


def shared_magic_conflicts(definition, descriptors):
    """Names of other descriptors that match the same files as ``definition``.

    binfmt-support registers such formats through run-detectors (and refuses
    them with fix_binary). ``descriptors`` is a list of records (dicts with
    ``name`` and ``definition``, as from read_binfmt_support_dir) or a
    {name: definition} mapping. A missing mask counts as all 0xff, so the
    check is a little wider than update-binfmts' textual comparison.
    """
    if isinstance(descriptors, dict):
        descriptors = [{"name": n, "definition": d} for n, d in descriptors.items()]
    key = _match_key(definition)
    return sorted(set(
        d["name"] for d in descriptors
        if d.get("definition") and d["name"] != definition["name"] and _match_key(d["definition"]) == key))


def check_no_shared_magic(definition, descriptors):
    """Raise BinfmtError("persist") when another descriptor shares the magic."""
    others = shared_magic_conflicts(definition, descriptors)
    if others:
        raise BinfmtError("persist", "binfmt-support would route %s through run-detectors because %s "
                                     "match(es) the same files%s" % (definition["name"], ", ".join(others),
                                                                     _SUGGEST_SYSTEMD))


# ---------------------------------------------------------------------------
# systemd binfmt.d: {/etc,/run,/usr/local/lib,/usr/lib}/binfmt.d/NAME.conf
# ---------------------------------------------------------------------------

def parse_register_line(line, buf_size=BINPRM_BUF_SIZE):
    """The normalised definition of one ``:name:type:offset:magic:mask:interpreter:flags`` line.

    The first character is the delimiter, as for the kernel. Raises BinfmtError.
    """
    line = line.strip()
    if len(line) < 2:
        raise BinfmtError("line", "too short to be a register line ':name:type:offset:magic:mask:interpreter:flags'")
    fields = line[1:].split(line[0])
    if len(fields) != 7:
        raise BinfmtError("line", "has %d fields separated by %r; a register line has 7 "
                                  "(name:type:offset:magic:mask:interpreter:flags)" % (len(fields), line[0]))
    name, kind, offset, magic, mask, interpreter, flags = fields
    if kind == "E":
        return make_definition(name, interpreter, type="extension", extension=magic,
                               flags=flags, buf_size=buf_size)
    if kind != "M":
        raise BinfmtError("type", "%r must be M (magic) or E (extension)" % kind)
    if offset and not offset.isdigit():
        raise BinfmtError("offset", "%r is not a non-negative decimal number" % offset)
    return make_definition(name, interpreter, magic=_hex_or_none(magic), mask=_hex_or_none(mask),
                           offset=int(offset or 0), flags=flags, buf_size=buf_size)


def parse_binfmt_d(text, buf_size=BINPRM_BUF_SIZE):
    """Every register line of a binfmt.d file: a list of {line, name, definition, error}.

    Blank lines and lines starting with '#' or ';' are skipped, as systemd does.
    A bad line gives a record with ``definition`` None and the reason in ``error``.
    """
    records = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        record = {"line": number, "name": None, "definition": None, "error": None}
        try:
            definition = parse_register_line(line, buf_size)
            record.update(definition=definition, name=definition["name"])
        except BinfmtError as exc:
            record["error"] = str(exc)
            parts = line[1:].split(line[0])
            record["name"] = parts[0] if len(parts) == 7 and parts[0] else None
        records.append(record)
    return records


def render_binfmt_d(definition):
    """The text of binfmt.d/NAME.conf: a header comment and the register line."""
    line = render_register(definition)
    if line[0] in "#;":
        # systemd would read this line as a comment: pick another delimiter.
        fields = line[1:].split(line[0])
        text = "".join(fields)
        delim = next((c for c in "!@,%+=~^" if c not in text), None)
        if delim is None:
            raise BinfmtError("interpreter", "no delimiter is free for a binfmt.d line; rename the interpreter")
        line = delim + delim.join(fields)
    return BINFMT_D_HEADER + line + "\n"


def binfmt_d_files(dirs=BINFMT_D_DIRS):
    """Every NAME.conf in the binfmt.d directories: a list of (file name, path, overridden_by).

    systemd reads one file per name, from the first directory that has it
    (/etc over /run over /usr/local/lib over /usr/lib); ``overridden_by`` is
    that file's path for the ones it hides, None for the effective one.
    """
    seen = {}
    files = []
    for directory in dirs:
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for name in names:
            path = os.path.join(directory, name)
            if not name.endswith(".conf") or os.path.isdir(path):
                continue
            files.append((name, path, seen.get(name)))
            seen.setdefault(name, path)
    return files


def effective_binfmt_d(dirs=BINFMT_D_DIRS):
    """{file name: path} of the binfmt.d files systemd actually reads."""
    return dict((name, path) for name, path, hidden in binfmt_d_files(dirs) if hidden is None)


# ---------------------------------------------------------------------------
# package ownership
# ---------------------------------------------------------------------------

def _glob_escape(path):
    return re.sub(r"([\\*?\[\]])", r"\\\1", path)


def parse_dpkg_search(output, paths):
    """{path: "pkg[, pkg...]"} from ``dpkg-query -S`` output, for the exact paths asked."""
    wanted = set(paths)
    owners = {}
    for line in output.splitlines():
        if line.startswith(("diversion by", "local diversion")) or ": " not in line:
            continue
        packages, path = line.split(": ", 1)
        if path in wanted:
            owners[path] = ", ".join(p.strip().split(":")[0] for p in packages.split(","))
    return owners


def dpkg_owners(paths, dpkg_query="dpkg-query", timeout=60):
    """{path: package} for the paths dpkg knows, in one dpkg-query call ({} without dpkg)."""
    paths = list(paths)
    if not paths:
        return {}
    try:
        proc = subprocess.run([dpkg_query, "-S"] + [_glob_escape(p) for p in paths],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              universal_newlines=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return {}
    return parse_dpkg_search(proc.stdout, paths)


def dpkg_owner(path, dpkg_query="dpkg-query"):
    """The package that ships ``path``, or None (unknown path, or no dpkg on this host)."""
    return dpkg_owners([path], dpkg_query).get(path)


# ---------------------------------------------------------------------------
# scanning directories (never raises for one bad file)
# ---------------------------------------------------------------------------

def _read_text(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def read_binfmt_support_dir(binfmts_dir=BINFMTS_DIR, database=False):
    """A record per file in a binfmt-support directory (no dpkg lookup).

    The import directory by default; with ``database`` the records of
    update-binfmts' own database (/var/lib/binfmts: what it has installed,
    and what it checks for shared magic), format "binfmt-support-db".
    Record keys: path, format, name, definition, package_field, package,
    managed, effective, error. ``package`` is the package line unless it is the
    admin marker ':' or this collection's own.
    """
    try:
        names = sorted(os.listdir(binfmts_dir))
    except OSError:
        return []
    paths = [os.path.join(binfmts_dir, name) for name in names]
    return [binfmt_support_record(path, database) for path in paths if os.path.isfile(path)]


def binfmt_support_record(path, database=False):
    """The record of one binfmt-support file (see read_binfmt_support_dir)."""
    name = os.path.basename(path)
    record = {"path": path, "format": "binfmt-support-db" if database else "binfmt-support",
              "name": name, "definition": None, "package_field": None, "package": None,
              "managed": False, "effective": True, "error": None}
    try:
        text = _read_text(path)
        fields = parse_binfmt_support_db(text) if database else parse_binfmt_support(text)
        record["package_field"] = fields.get("package")
        record["managed"] = fields.get("package") == OWN_PACKAGE
        if fields.get("package") not in (None, "", ADMIN_PACKAGE, OWN_PACKAGE):
            record["package"] = fields["package"]
        record["definition"] = binfmt_support_to_definition(fields, name)
    except (BinfmtError, OSError, ValueError) as exc:
        record["error"] = str(exc)
    return record


def read_binfmt_d_dirs(binfmt_d_dirs=BINFMT_D_DIRS, name=None):
    """A record per register line (or per empty or unreadable file) in the binfmt.d directories.

    With ``name``, only the records about that entry: files named NAME.conf and
    lines registering NAME (other files are not parsed).
    """
    records = []
    for file_name, path, overridden_by in binfmt_d_files(binfmt_d_dirs):
        own_file = name is None or file_name == name + ".conf"
        base = {"path": path, "format": "systemd", "name": file_name[:-len(".conf")],
                "definition": None, "package": None, "managed": False,
                "effective": overridden_by is None, "overridden_by": overridden_by,
                "masked": os.path.realpath(path) == os.devnull, "line": None, "error": None}
        try:
            text = _read_text(path)
        except OSError as exc:
            if own_file:
                records.append(dict(base, error=str(exc)))
            continue
        if not own_file and name not in text:
            continue
        base["managed"] = text.startswith(BINFMT_D_HEADER.splitlines()[0])
        lines = parse_binfmt_d(text)
        if not lines and own_file:
            records.append(base)
        for parsed in lines:
            record = dict(base)
            record.update(parsed)
            record["name"] = parsed["name"] or base["name"]
            if own_file or record["name"] == name:
                records.append(record)
    return records


def _add_owners(records, dpkg_query):
    owners = dpkg_owners(sorted(set(r["path"] for r in records)), dpkg_query) if dpkg_query else {}
    for record in records:
        record["dpkg_package"] = owners.get(record["path"])
        record["package"] = record["dpkg_package"] or record["package"]
    return records


def scan_descriptors(binfmts_dir=BINFMTS_DIR, binfmt_d_dirs=BINFMT_D_DIRS, dpkg_query="dpkg-query"):
    """Every descriptor on the host, with the owning package where dpkg knows it.

    One record per binfmt-support file and per binfmt.d register line; see
    read_binfmt_support_dir and read_binfmt_d_dirs for the keys. ``package``
    is dpkg's owner of the file, else (binfmt-support) the package line;
    ``dpkg_query=None`` skips dpkg (about 0.15 s on a typical host).
    """
    return _add_owners(read_binfmt_support_dir(binfmts_dir) + read_binfmt_d_dirs(binfmt_d_dirs), dpkg_query)


def find_descriptor(name, binfmts_dir=BINFMTS_DIR, binfmt_d_dirs=BINFMT_D_DIRS, dpkg_query="dpkg-query"):
    """The descriptor records for entry ``name`` (both formats; [] when there is none).

    Matches /usr/share/binfmts/NAME, binfmt.d files named NAME.conf and every
    binfmt.d line that registers NAME; package-owned ones have ``package`` set.
    """
    path = os.path.join(binfmts_dir, name)
    records = [binfmt_support_record(path)] if os.path.isfile(path) else []
    return _add_owners(records + read_binfmt_d_dirs(binfmt_d_dirs, name), dpkg_query)
