# -*- coding: utf-8 -*-
# Copyright: (c) 2026, nativearm.binfmt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The tier: which detection path decides how 32-bit ARM programs run on a host.

The one definition, after Armbian PR #117's four tiers, in its order. Every
module and role takes it from here: ``binfmt_info`` returns it (``tier``), the
``build_host`` role acts on that, and ``native_armhf_window`` and
``native_armhf_command`` report it for their lease.

1. ``packaged_descriptor``  a usable descriptor registers the entry (a package's,
                            an admin's, or the one ``build_host`` persisted), whether
                            or not the kernel has loaded it yet;
2. ``registered_entry``     the entry is registered and no descriptor defines it;
3. ``native_probe``         nothing registers it and the kernel runs armhf natively;
4. ``qemu_fallback``        nothing registers it and armhf does not run natively
                            (or that is not known): qemu-arm has to be registered.

What exists decides before the probe, as in PR #117: the probe matters only
where nothing registers the entry. So a host's tier does not depend on whether
the native answer could be had without touching the entry (binfmt_info cannot
on kernels older than 6.7 while qemu-arm is enabled), and a native-capable host
whose qemu-arm comes from a package stays in tier 1: qemu-arm is kept there for
the builds that need it, and native windows disable it only while they run.
Whether a given lease ran natively is the window's ``native``, not its tier.

Pure functions, standard library only; no I/O.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

TIERS = ("packaged_descriptor", "registered_entry", "native_probe", "qemu_fallback")


def usable_descriptors(records, name):
    """The descriptor records (descriptors.scan_descriptors / find_descriptor) that
    can register entry ``name``: parsed into a definition, and in effect (a masked
    binfmt.d file, one overridden by another directory, or an unreadable one is not)."""
    return [r for r in records or () if r.get("name") == name and r.get("definition")
            and r.get("effective") is not False and not r.get("masked")]


def decide_tier(native, entry_present, descriptor_found):
    """The tier (one of TIERS) from what exists and the native answer.

    ``descriptor_found``: a usable descriptor registers the entry
    (usable_descriptors); ``entry_present``: the kernel has the entry;
    ``native``: True, False or None (not known), asked only when neither exists.
    """
    if descriptor_found:
        return "packaged_descriptor"
    if entry_present:
        return "registered_entry"
    if native:
        return "native_probe"
    return "qemu_fallback"


def _descriptor_text(record):
    owner = record.get("package")
    return "%s (%s)" % (record.get("path"), ("package %s" % owner) if owner else "no package")


def tier_fact(name, entry, descriptors, native):
    """binfmt_info's ``tier``: {name, reason, descriptor}.

    ``name``: the entry (qemu-arm); ``entry``: its parsed registration or None;
    ``descriptors``: every descriptor record; ``native``: binfmt_info's native_armhf
    fact ({native, reason, ...}) or None when no probe was run.
    """
    usable = usable_descriptors(descriptors, name)
    answer = (native or {}).get("native")
    tier = decide_tier(answer, entry is not None, bool(usable))
    descriptor = usable[0].get("path") if usable else None
    if tier == "packaged_descriptor":
        state = ("registered, %s" % ("enabled" if entry.get("enabled") else "disabled")) if entry else "not loaded"
        reason = "a descriptor registers %s: %s; the kernel entry is %s" % (name, _descriptor_text(usable[0]), state)
    elif tier == "registered_entry":
        reason = ("%s is registered (%s, interpreter %s) and no descriptor defines it"
                  % (name, "enabled" if entry.get("enabled") else "disabled", entry.get("interpreter")))
    else:
        why = (native or {}).get("reason") or "the native armhf probe was not run"
        if tier == "native_probe":
            reason = "nothing registers %s and armhf runs natively: %s" % (name, why)
        elif answer is None:
            reason = "nothing registers %s and whether armhf runs natively is not known: %s" % (name, why)
        else:
            reason = "nothing registers %s and armhf does not run natively: %s" % (name, why)
    return {"name": tier, "reason": reason, "descriptor": descriptor}


def lease_tier(lease, name, descriptors):
    """The tier of a window's open result (native_armhf_window, native_armhf_command):
    the same decision, with the lease's ``native`` and the entry as the open left it.
    ``descriptors``: the records about ``name`` (descriptors.find_descriptor)."""
    return decide_tier(lease.get("native"), lease.get("entry_present"), bool(usable_descriptors(descriptors, name)))
