"""tier: the one definition of the tier (binfmt_info, build_host, the window modules)."""
import pytest

from ansible_collections.nativearm.binfmt.plugins.module_utils import _window_rules
from ansible_collections.nativearm.binfmt.plugins.module_utils import tier as T
from ansible_collections.nativearm.binfmt.plugins.module_utils import window

DEFINITION = {"name": "qemu-arm", "type": "magic", "interpreter": "/usr/libexec/qemu-binfmt/arm-binfmt-P",
              "flags": "PF", "offset": 0, "magic": "7f454c46", "mask": "ffffffff"}
ENTRY = dict(DEFINITION, enabled=True)


def descriptor(path="/usr/share/binfmts/qemu-arm", name="qemu-arm", package="qemu-user-static", **extra):
    record = {"path": path, "format": "binfmt-support", "name": name, "definition": dict(DEFINITION, name=name),
              "package": package, "effective": True, "error": None}
    record.update(extra)
    return record


def native_fact(native, reason="the probe ran natively (exit status 0)"):
    return {"native": native, "reason": reason, "method": "private_instance"}


# ---------------------------------------------------------------------------
# decide_tier: what exists decides before the probe (Armbian PR #117's order)
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("native, present, descriptor_found, tier", [
    # tier 1: a usable descriptor, whatever the kernel has and the probe says
    (False, True, True, "packaged_descriptor"),
    (True, True, True, "packaged_descriptor"),      # native arm64 whose qemu-arm comes from a package
    (None, True, True, "packaged_descriptor"),      # the probe could not be run without touching the entry
    (False, False, True, "packaged_descriptor"),    # a descriptor the kernel has not loaded (yet)
    (True, False, True, "packaged_descriptor"),
    # tier 2: registered, no descriptor
    (False, True, False, "registered_entry"),
    (True, True, False, "registered_entry"),
    (None, True, False, "registered_entry"),
    # tier 3: nothing registers it, native
    (True, False, False, "native_probe"),
    # tier 4: nothing registers it, not native or not known
    (False, False, False, "qemu_fallback"),
    (None, False, False, "qemu_fallback"),
])
def test_decide_tier(native, present, descriptor_found, tier):
    assert T.decide_tier(native, present, descriptor_found) == tier
    assert tier in T.TIERS


def test_the_tiers_are_in_pr_117_order():
    assert T.TIERS == ("packaged_descriptor", "registered_entry", "native_probe", "qemu_fallback")


def test_the_window_has_no_tier_of_its_own():
    # one definition: the window modules take the tier from tier.py, they keep no copy or alias
    for module in (window, _window_rules):
        assert not hasattr(module, "decide_tier") and not hasattr(module, "TIERS"), module.__name__


# ---------------------------------------------------------------------------
# usable descriptors: what build_host can load
# ---------------------------------------------------------------------------

def test_usable_descriptors_are_parsed_effective_and_for_the_entry():
    good = descriptor()
    ours = descriptor(path="/etc/binfmt.d/qemu-arm.conf", package=None, format="systemd", masked=False,
                      overridden_by=None)
    records = [
        good, ours,
        descriptor(name="qemu-armeb", path="/usr/share/binfmts/qemu-armeb"),          # another entry
        descriptor(path="/etc/binfmt.d/x.conf", definition=None, error="bad line"),    # unparsable
        descriptor(path="/etc/binfmt.d/qemu-arm.conf", definition=None, masked=True),  # masked (-> /dev/null)
        descriptor(path="/usr/lib/binfmt.d/qemu-arm.conf", effective=False,            # overridden by the mask
                   overridden_by="/etc/binfmt.d/qemu-arm.conf"),
    ]
    assert T.usable_descriptors(records, "qemu-arm") == [good, ours]
    assert T.usable_descriptors(None, "qemu-arm") == []
    assert T.usable_descriptors([], "qemu-arm") == []


def test_a_masked_descriptor_does_not_make_tier_1():
    """binfmt.d(5)'s mask: the admin wants no boot-time registration; there is nothing to load."""
    masked = [descriptor(path="/etc/binfmt.d/qemu-arm.conf", definition=None, masked=True, format="systemd"),
              descriptor(path="/usr/lib/binfmt.d/qemu-arm.conf", effective=False, format="systemd",
                         overridden_by="/etc/binfmt.d/qemu-arm.conf")]
    assert T.tier_fact("qemu-arm", ENTRY, masked, native_fact(False))["name"] == "registered_entry"
    assert T.tier_fact("qemu-arm", None, masked, native_fact(False))["name"] == "qemu_fallback"


# ---------------------------------------------------------------------------
# tier_fact: binfmt_info's tier
# ---------------------------------------------------------------------------

def test_tier_fact_packaged_descriptor():
    fact = T.tier_fact("qemu-arm", ENTRY, [descriptor()], native_fact(True))
    assert fact["name"] == "packaged_descriptor" and fact["descriptor"] == "/usr/share/binfmts/qemu-arm"
    assert "/usr/share/binfmts/qemu-arm (package qemu-user-static)" in fact["reason"]
    assert fact["reason"].endswith("the kernel entry is registered, enabled")
    loaded_not = T.tier_fact("qemu-arm", None, [descriptor(package=None)], native_fact(False))
    assert loaded_not["name"] == "packaged_descriptor"
    assert "(no package)" in loaded_not["reason"] and loaded_not["reason"].endswith("is not loaded")
    disabled = T.tier_fact("qemu-arm", dict(ENTRY, enabled=False), [descriptor()], None)
    assert disabled["reason"].endswith("registered, disabled")


def test_tier_fact_registered_entry():
    fact = T.tier_fact("qemu-arm", dict(ENTRY, enabled=False), [], native_fact(True))
    assert fact == {"name": "registered_entry", "descriptor": None,
                    "reason": "qemu-arm is registered (disabled, interpreter /usr/libexec/qemu-binfmt/arm-binfmt-P) "
                              "and no descriptor defines it"}


def test_tier_fact_native_probe():
    fact = T.tier_fact("qemu-arm", None, [descriptor(name="qemu-aarch64")], native_fact(True))
    assert fact["name"] == "native_probe" and fact["descriptor"] is None
    assert fact["reason"] == ("nothing registers qemu-arm and armhf runs natively: "
                              "the probe ran natively (exit status 0)")


def test_tier_fact_qemu_fallback_says_whether_native_was_known():
    no = T.tier_fact("qemu-arm", None, [], native_fact(False, "this host is x86_64: it can only emulate armhf"))
    assert no["name"] == "qemu_fallback"
    assert no["reason"] == ("nothing registers qemu-arm and armhf does not run natively: "
                            "this host is x86_64: it can only emulate armhf")
    unknown = T.tier_fact("qemu-arm", None, [], native_fact(None, "no private instance"))
    assert unknown["name"] == "qemu_fallback" and "is not known: no private instance" in unknown["reason"]
    not_run = T.tier_fact("qemu-arm", None, [], None)         # binfmt_info probe=false
    assert not_run["name"] == "qemu_fallback"
    assert not_run["reason"].endswith("is not known: the native armhf probe was not run")


def test_tier_fact_is_about_the_entry_asked_for():
    fact = T.tier_fact("qemu-armeb", None, [descriptor()], native_fact(False))
    assert fact["name"] == "qemu_fallback"


# ---------------------------------------------------------------------------
# lease_tier: the window modules' tier, the same decision with the lease's native
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("lease, records, tier", [
    ({"native": True, "entry_present": True}, [descriptor()], "packaged_descriptor"),
    ({"native": True, "entry_present": True}, [], "registered_entry"),
    ({"native": False, "entry_present": True}, [descriptor()], "packaged_descriptor"),
    ({"native": False, "entry_present": True}, [], "registered_entry"),
    ({"native": True, "entry_present": False}, [], "native_probe"),
    ({"native": False, "entry_present": False}, [], "qemu_fallback"),
    ({"native": False, "entry_present": False}, [descriptor()], "packaged_descriptor"),
    ({"native": None, "entry_present": True}, [descriptor(definition=None, masked=True)], "registered_entry"),
])
def test_lease_tier(lease, records, tier):
    assert T.lease_tier(lease, "qemu-arm", records) == tier


def test_lease_tier_and_tier_fact_agree_when_the_lease_native_is_the_host_native():
    for native in (True, False, None):
        for entry in (ENTRY, None):
            for records in ([], [descriptor()]):
                lease = {"native": native, "entry_present": entry is not None}
                assert (T.lease_tier(lease, "qemu-arm", records)
                        == T.tier_fact("qemu-arm", entry, records, native_fact(native))["name"])
