# -*- coding: utf-8 -*-
# Copyright: (c) 2026, nativearm.binfmt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Drift between desired binfmt_misc entries and the kernel, as pure functions.

``resolve_desired`` turns the user's entry specs (the shape of binfmt_entry's
options) into normalised definitions, failing on the first bad one before
anything is read or changed. ``plan_drift`` compares them with the parsed
kernel entries and returns one item per difference, each with the steps of
:func:`binfmt_misc.plan_entry` that remove it. A disabled entry held by open
native leases is the window working, not drift: it yields no item.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json

from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.nativearm.binfmt.plugins.module_utils import binfmt_misc
from ansible_collections.nativearm.binfmt.plugins.module_utils.presets import PRESETS, preset

SPEC_KEYS = ("name", "state", "enabled", "arch", "type", "magic", "mask", "offset", "extension",
             "interpreter", "flags", "persist", "force", "allow_credentials")


class DriftSpecError(ValueError):
    """A desired entry that cannot be checked; ``index`` and ``field`` locate it."""

    def __init__(self, index, field, message):
        super(DriftSpecError, self).__init__(
            "entries[%d].%s: %s" % (index, field, message))
        self.index = index
        self.field = field


class DesiredStateError(ValueError):
    """A desired-state file whose content cannot be used."""


def preset_arch_of(name):
    """``arm`` for ``qemu-arm``; None when the name is not qemu-<preset arch>."""
    if name and name.startswith("qemu-") and name[len("qemu-"):] in PRESETS:
        return name[len("qemu-"):]
    return None


def resolve_desired(specs, packaged=None):
    """Normalise every spec; raise DriftSpecError for the first bad one.

    ``packaged`` maps an entry name to a definition dict found in a packaged
    descriptor on the host (used when a spec gives only a name). A spec with
    only a name must be a packaged descriptor or qemu-<arch>; anything else is
    an unknown entry name.
    """
    packaged = packaged or {}
    desired = []
    seen = set()
    for index, spec in enumerate(specs):
        if not isinstance(spec, dict):
            raise DriftSpecError(index, "name", "each entry must be a mapping with at least 'name'")
        unknown = sorted(set(spec) - set(SPEC_KEYS))
        if unknown:
            raise DriftSpecError(index, unknown[0], "unknown key; allowed: %s" % ", ".join(SPEC_KEYS))
        name = spec.get("name")
        try:
            binfmt_misc.validate_name(name)
        except binfmt_misc.BinfmtError as exc:
            raise DriftSpecError(index, "name", exc.message)
        if name in seen:
            raise DriftSpecError(index, "name", "%r is listed twice" % name)
        seen.add(name)
        state = spec.get("state") or "present"
        if state not in ("present", "absent"):
            raise DriftSpecError(index, "state", "must be 'present' or 'absent', got %r" % state)
        enabled = spec.get("enabled")
        try:   # what Ansible takes for a bool ("yes" from an AWX survey or -e included)
            enabled = True if enabled is None else boolean(enabled, strict=True)
        except TypeError:
            raise DriftSpecError(index, "enabled", "must be a boolean (true/false, yes/no), got %r" % (enabled,))
        item = {"name": name, "state": state, "enabled": enabled, "definition": None,
                "alternatives": [], "source": None}
        if state == "present":
            definitions, item["source"] = _definition(index, spec, packaged)
            item["definition"], item["alternatives"] = definitions[0], definitions[1:]
        desired.append(item)
    return desired


def parse_desired_state(text, path):
    """The entries of a desired-state file (JSON ``{"entries": [...]}``, as build_host
    writes it). Raises DesiredStateError naming the file for anything else."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise DesiredStateError("%s is not valid JSON (%s); provision the host again to rewrite it" % (path, exc))
    entries = data.get("entries") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise DesiredStateError("%s has no 'entries' list of mappings; provision the host again to rewrite it"
                                % path)
    return entries


def _definition(index, spec, packaged):
    name = spec["name"]
    explicit = any(spec.get(k) not in (None, "") for k in ("arch", "magic", "extension"))
    if not explicit and not spec.get("interpreter"):
        if packaged.get(name):
            return list(packaged[name]), "packaged descriptor"
        arch = preset_arch_of(name)
        if arch is None:
            raise DriftSpecError(
                index, "name", "unknown entry name %r: it is not qemu-<arch> for a known arch (%s) "
                "and no packaged descriptor defines it; give arch or magic/mask (or extension) and "
                "interpreter" % (name, ", ".join(sorted(PRESETS))))
        raise DriftSpecError(index, "interpreter", "%r has no packaged descriptor on this host; "
                             "give interpreter (e.g. /usr/bin/qemu-%s-static)" % (name, arch))
    try:
        flags = binfmt_misc.normalize_flags(spec.get("flags"))
    except binfmt_misc.BinfmtError as exc:
        raise DriftSpecError(index, exc.field, exc.message)
    if "C" in flags and not spec.get("allow_credentials"):
        raise DriftSpecError(index, "flags", "C runs the interpreter with the binary's credentials "
                             "(privilege escalation risk); set allow_credentials: true to accept it")
    arch = spec.get("arch") or (None if explicit else preset_arch_of(name))
    magic, mask, offset = spec.get("magic"), spec.get("mask"), spec.get("offset")
    if arch:
        if arch not in PRESETS:
            raise DriftSpecError(index, "arch", "unknown arch %r; known: %s" % (arch, ", ".join(sorted(PRESETS))))
        if magic or mask or offset or spec.get("extension"):
            raise DriftSpecError(index, "arch", "give either arch or magic/mask/offset/extension, not both")
        magic, mask, offset = preset(arch)
    try:
        definition = binfmt_misc.make_definition(
            name, spec.get("interpreter"), type=spec.get("type") or ("extension" if spec.get("extension") else "magic"),
            magic=magic, mask=mask, offset=offset, extension=spec.get("extension"),
            flags=spec.get("flags") or "")
    except binfmt_misc.BinfmtError as exc:
        raise DriftSpecError(index, exc.field, exc.message)
    return [definition], "given"


def plan_drift(desired, current, window_leases=None):
    """Drift items for ``desired`` (from resolve_desired) against ``current``
    ({name: parsed entry}). ``window_leases`` maps an entry name to
    ``{"native": n, "emulation": m}`` open leases (``foreign_native`` /
    ``foreign_emulation``: windows of other coordinators, such as a PR #9769
    builder): a qemu-arm disabled by open native windows (or enabled by
    emulation leases) is the window, not drift."""
    window_leases = window_leases or {}
    items = []
    for want in desired:
        name = want["name"]
        have = current.get(name)
        definition = want["definition"]
        if have is not None and definition is not None:
            # any packaged descriptor's definition is a legitimate registration
            definition = next((d for d in [definition] + want["alternatives"]
                               if binfmt_misc.same_definition(have, d)), definition)
        steps = binfmt_misc.plan_entry(have, definition, want["state"], want["enabled"])
        if not steps:
            continue
        leases = window_leases.get(name) or {}
        if steps == ["enable"] and (leases.get("native") or leases.get("foreign_native")):
            continue  # an open native window (ours or another coordinator's) disabled it on purpose
        if steps == ["disable"] and (leases.get("emulation") or leases.get("foreign_emulation")):
            continue  # an emulation lease enabled it for its duration
        if want["state"] == "absent":
            kind = "unexpected"
        elif have is None:
            kind = "missing"
        elif "register" in steps:
            kind = "definition"
        else:
            kind = "enabled" if want["enabled"] else "disabled"
        items.append({
            "name": name, "kind": kind, "steps": steps,
            "expected": None if want["state"] == "absent" else binfmt_misc.expected_entry(
                definition, want["enabled"]),
            "actual": have, "fixed": False, "error": None,
            "message": _describe(kind, name, have, want),
        })
    return items


def _describe(kind, name, have, want):
    """One sentence for a drift item."""
    if kind == "missing":
        return "%s is not registered" % name
    if kind == "unexpected":
        return "%s is registered but should be absent" % name
    if kind == "definition":
        diffs = [k for k in binfmt_misc.DEFINITION_KEYS if have.get(k) != want["definition"].get(k)]
        return "%s is registered with a different %s" % (name, ", ".join(diffs))
    return "%s is %s but should be %s" % (name, "enabled" if have["enabled"] else "disabled",
                                          "enabled" if want["enabled"] else "disabled")


def apply_item(item, definition, path):
    """Carry out an item's steps on the binfmt_misc at ``path`` through the kernel interface's
    one apply-with-rollback routine: a registration whose interpreter is not an executable file
    here (a packaged descriptor of an uninstalled package, say) is refused before anything is
    written, and one the kernel refuses puts the previous entry back and raises
    binfmt_misc.ApplyError."""
    binfmt_misc.apply_steps(item["name"], item["steps"], definition, item["actual"], path)
