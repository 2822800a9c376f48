"""Pure drift planning: resolve desired specs, compare with parsed entries."""
import pytest

from ansible_collections.nativearm.binfmt.plugins.module_utils import binfmt_misc as bm
from ansible_collections.nativearm.binfmt.plugins.module_utils import drift
from ansible_collections.nativearm.binfmt.plugins.module_utils.presets import preset

MAGIC, MASK = preset("arm")[:2]


def definition(interpreter="/usr/bin/qemu-arm-static", flags="F"):
    return bm.make_definition("qemu-arm", interpreter, magic=MAGIC, mask=MASK, flags=flags)


PACKAGED = definition("/usr/libexec/qemu-binfmt/arm-binfmt-P", "PF")
SYSTEMD = definition("/usr/libexec/qemu-binfmt/arm-binfmt-P", "OPF")


def entry(d, enabled=True):
    return bm.expected_entry(d, enabled)


def test_name_only_uses_every_packaged_definition():
    [want] = drift.resolve_desired([{"name": "qemu-arm"}], {"qemu-arm": [PACKAGED, SYSTEMD]})
    assert want["definition"] == PACKAGED
    assert want["alternatives"] == [SYSTEMD]
    assert want["source"] == "packaged descriptor"


def test_a_registration_from_any_packaged_descriptor_is_not_drift():
    desired = drift.resolve_desired([{"name": "qemu-arm"}], {"qemu-arm": [PACKAGED, SYSTEMD]})
    assert drift.plan_drift(desired, {"qemu-arm": entry(SYSTEMD)}) == []
    assert drift.plan_drift(desired, {"qemu-arm": entry(PACKAGED)}) == []


def test_preset_name_with_interpreter():
    [want] = drift.resolve_desired([{"name": "qemu-arm", "interpreter": "/usr/bin/qemu-arm-static",
                                     "flags": "F"}])
    assert want["definition"] == definition()


@pytest.mark.parametrize("spec, field, words", [
    ({"name": "qemu-foo"}, "name", "unknown entry name"),
    ({"name": "qemu-arm"}, "interpreter", "no packaged descriptor"),
    ({"name": "register"}, "name", "control file"),
    ({"name": "a/b", "arch": "arm", "interpreter": "/bin/true"}, "name", "'/'"),
    ({"name": "x", "arch": "vax", "interpreter": "/bin/true"}, "arch", "unknown arch"),
    ({"name": "x", "arch": "arm", "magic": "7f", "interpreter": "/bin/true"}, "arch", "not both"),
    ({"name": "x", "arch": "arm", "interpreter": "bin/true"}, "interpreter", "absolute"),
    ({"name": "x", "arch": "arm", "interpreter": "/bin/true", "flags": "Z"}, "flags", "unknown flag"),
    ({"name": "x", "arch": "arm", "interpreter": "/bin/true", "flags": "C"}, "flags", "allow_credentials"),
    ({"name": "x", "magic": "7f45", "mask": "ff", "interpreter": "/bin/true"}, "mask", "same length"),
    ({"name": "x", "state": "gone"}, "state", "present"),
    ({"name": "x", "state": "absent", "enabled": "maybe"}, "enabled", "boolean"),
    ({"name": "qemu-arm", "colour": "red"}, "colour", "unknown key"),
    ("qemu-arm", "name", "mapping"),
])
def test_bad_specs_name_the_field(spec, field, words):
    with pytest.raises(drift.DriftSpecError) as err:
        drift.resolve_desired([{"name": "ok", "state": "absent"}, spec])
    assert err.value.field == field
    assert err.value.index == 1
    assert words in str(err.value)
    assert str(err.value).startswith("entries[1].")


@pytest.mark.parametrize("given, enabled", [("yes", True), ("no", False), ("true", True), (0, False),
                                            (None, True), (False, False)])
def test_enabled_takes_what_ansible_takes_for_a_bool(given, enabled):
    # AWX surveys and -e give strings
    [want] = drift.resolve_desired([{"name": "x", "state": "absent", "enabled": given}])
    assert want["enabled"] is enabled


@pytest.mark.parametrize("text, words", [
    ("{", "not valid JSON"),
    ("[]", "no 'entries' list"),
    ('{"entries": {"name": "qemu-arm"}}', "no 'entries' list"),
    ('{"entries": ["qemu-arm"]}', "no 'entries' list"),
])
def test_a_bad_desired_state_file_is_named(text, words):
    with pytest.raises(drift.DesiredStateError) as err:
        drift.parse_desired_state(text, "/state/desired.json")
    assert words in str(err.value) and "/state/desired.json" in str(err.value)


def test_desired_state_file_entries():
    text = '{"format": 1, "entries": [{"name": "qemu-arm", "enabled": true}]}'
    assert drift.parse_desired_state(text, "f") == [{"name": "qemu-arm", "enabled": True}]


def test_duplicate_names_are_refused():
    with pytest.raises(drift.DriftSpecError, match="listed twice"):
        drift.resolve_desired([{"name": "x", "state": "absent"}, {"name": "x", "state": "absent"}])


def test_kinds():
    desired = drift.resolve_desired([
        {"name": "qemu-arm", "arch": "arm", "interpreter": "/usr/bin/qemu-arm-static", "flags": "F"},
        {"name": "gone", "state": "absent"},
    ])
    assert [(i["kind"], i["steps"]) for i in drift.plan_drift(desired, {})] == [("missing", ["register"])]
    current = {"qemu-arm": entry(definition(flags="PF")), "gone": entry(definition())}
    items = drift.plan_drift(desired, current)
    assert [(i["name"], i["kind"], i["steps"]) for i in items] == [
        ("qemu-arm", "definition", ["unregister", "register"]),
        ("gone", "unexpected", ["unregister"])]
    assert "flags" in items[0]["message"]
    items = drift.plan_drift(desired, {"qemu-arm": entry(definition(), enabled=False)})
    assert [(i["kind"], i["steps"]) for i in items] == [("enabled", ["enable"])]
    assert items[0]["expected"]["enabled"] is True and items[0]["actual"]["enabled"] is False


def test_window_leases_are_not_drift():
    desired = drift.resolve_desired([{"name": "qemu-arm", "arch": "arm",
                                      "interpreter": "/usr/bin/qemu-arm-static", "flags": "F"}])
    disabled = {"qemu-arm": entry(definition(), enabled=False)}
    assert drift.plan_drift(desired, disabled, {"qemu-arm": {"native": 2, "emulation": 0}}) == []
    assert len(drift.plan_drift(desired, disabled, {"qemu-arm": {"native": 0, "emulation": 1}})) == 1
    # another coordinator's native window (a PR #9769 builder building) disabled it on purpose too
    assert drift.plan_drift(desired, disabled, {"qemu-arm": {"native": 0, "foreign_native": 1}}) == []
    # a definition change under an open window is still drift
    other = {"qemu-arm": entry(definition(flags="PF"), enabled=False)}
    assert drift.plan_drift(desired, other, {"qemu-arm": {"native": 1}})[0]["kind"] == "definition"
    # an emulation lease may enable an entry the admin wants disabled
    desired_off = drift.resolve_desired([{"name": "qemu-arm", "arch": "arm", "enabled": False,
                                          "interpreter": "/usr/bin/qemu-arm-static", "flags": "F"}])
    enabled = {"qemu-arm": entry(definition())}
    assert drift.plan_drift(desired_off, enabled, {"qemu-arm": {"emulation": 1}}) == []
    assert drift.plan_drift(desired_off, enabled)[0]["kind"] == "disabled"
