"""binfmt_info on the real kernel, inside private binfmt_misc instances."""
import os

from ansible_env import run_module
from ansible_collections.nativearm.binfmt.plugins.module_utils import binfmt_misc as bm
from ansible_collections.nativearm.binfmt.plugins.module_utils.presets import preset
from ansible_collections.nativearm.binfmt.plugins.module_utils.probe import CAPABILITY_ENV


def register_qemu_arm(instance, enabled=True):
    magic, mask, offset = preset("arm")
    bm.register(bm.make_definition("qemu-arm", "/usr/bin/qemu-arm-static", magic=magic, mask=mask,
                                   offset=offset, flags="F"), instance.path)
    if not enabled:
        bm.set_enabled("qemu-arm", False, instance.path)


def info(instance, tmp_path, check=False, **args):
    """binfmt_info inside the instance, with its real capability check (not the tests' hook)."""
    args.setdefault("run_dir", str(tmp_path / "run"))
    return run_module("binfmt_info", args, check=check, wrap=instance.nsenter, env={CAPABILITY_ENV: ""})


def test_reports_mount_entries_host_and_changes_nothing(instance, tmp_path):
    register_qemu_arm(instance, enabled=False)
    before = instance.snapshot()
    result = info(instance, tmp_path)
    assert result["_status"] == "ok", result.get("msg")
    assert result["changed"] is False
    assert result["binfmt_misc"] == {"path": "/proc/sys/fs/binfmt_misc", "mounted": True, "enabled": True}
    assert result["entries"]["qemu-arm"] == bm.read_entry("qemu-arm", instance.path)
    assert result["entries"]["qemu-arm"]["enabled"] is False
    assert result["host"]["machine"] == os.uname().machine
    assert result["host"]["page_size"] == os.sysconf("SC_PAGE_SIZE")
    assert result["window"]["lease_count"] == 0 and result["window"]["stale"] is False
    assert instance.snapshot() == before


def test_native_armhf_facts_come_from_checks_that_touch_no_entry(instance, tmp_path):
    """With qemu-arm enabled on the "host" (the instance) a naive probe would succeed through
    emulation. On this x86_64 kernel the architecture alone says not native: no probe runs, and the
    instance's entry stays enabled and byte-identical."""
    register_qemu_arm(instance)
    before = instance.snapshot()
    result = info(instance, tmp_path)
    native = result["native_armhf"]
    assert set(native) >= {"native", "reason", "method", "arch", "page_size", "aarch32_el0", "probe"}
    assert native["page_size"] == result["host"]["page_size"] == os.sysconf("SC_PAGE_SIZE")
    assert result["host"]["aarch32_el0"] == native["aarch32_el0"]
    if os.uname().machine == "x86_64":
        assert native["native"] is False and native["method"] == "architecture"
        assert native["reason"] == "this host is x86_64: it can only emulate armhf"
        assert native["aarch32_el0"] is None and native["probe"] is None
    else:
        assert native["method"] in ("personality", "page_size", "private_instance", "direct", None)
    assert instance.snapshot() == before
    assert result["changed"] is False


def test_probe_false_reports_no_native_facts(instance, tmp_path):
    result = info(instance, tmp_path, probe=False, probe_command=["/bin/true"])
    assert result["native_armhf"] is None
    # the personality check is no probe: it is made on ARM machines whatever O(probe) says
    expected = None if os.uname().machine not in ("aarch64", "armv7l", "armv8l") else result["host"]["aarch32_el0"]
    assert result["host"]["aarch32_el0"] is expected and expected in (None, True, False)


def test_descriptors_with_package_owner(instance, tmp_path):
    binfmts = tmp_path / "binfmts"
    binfmts.mkdir()
    (binfmts / "mine").write_text("package nativearm.binfmt\ninterpreter /bin/true\nmagic \\x61\\x62\n"
                                  "offset 0\ncredentials no\npreserve no\nfix_binary no\n")
    result = info(instance, tmp_path, binfmts_dir=str(binfmts), binfmt_d_dirs=["/usr/lib/binfmt.d"], probe=False)
    by_path = {d["path"]: d for d in result["descriptors"]}
    assert by_path[str(binfmts / "mine")]["definition"]["interpreter"] == "/bin/true"
    assert by_path[str(binfmts / "mine")]["package"] is None
    packaged = by_path["/usr/lib/binfmt.d/qemu-arm.conf"]
    assert packaged["package"] == "qemu-user-static"  # dpkg's own answer
    assert packaged["format"] == "systemd"
    assert result["native_armhf"] is None


def test_unmounted_binfmt_misc_is_reported(tmp_path):
    import sys
    from sandbox.instance import NSRUN
    result = run_module("binfmt_info", {"probe": False, "binfmt_misc": str(tmp_path / "nothing"),
                                        "run_dir": str(tmp_path / "run")},
                        wrap=lambda argv: [sys.executable, NSRUN, "--no-mount", "--"] + argv)
    assert result["_status"] == "ok", result.get("msg")
    assert result["binfmt_misc"]["mounted"] is False and result["entries"] == {}


def _records(run_dir):
    """{path: bytes} of every file under the window run dir."""
    out = {}
    for top, dirs, files in os.walk(run_dir):
        for name in files:
            with open(os.path.join(top, name), "rb") as f:
                out[os.path.join(top, name)] = f.read()
    return out


def test_stale_window_only_reported_then_binfmt_drift_repairs(instance, tmp_path):
    """A holder killed with SIGKILL leaves a stale window: qemu-arm disabled, prior state recorded.
    binfmt_info reports it and changes nothing, in check mode or not (records byte-identical);
    binfmt_drift restores it."""
    import signal
    import time
    register_qemu_arm(instance)
    run_dir = str(tmp_path / "run")
    opened = run_module("native_armhf_window", {"state": "open", "probe": ["/bin/true"], "run_dir": run_dir},
                        wrap=instance.nsenter)
    assert opened["_status"] == "ok", opened.get("msg")
    assert bm.read_entry("qemu-arm", instance.path)["enabled"] is False
    os.kill(opened["holder_pid"], signal.SIGKILL)
    deadline = time.time() + 5
    while os.path.exists("/proc/%d" % opened["holder_pid"]) and time.time() < deadline:
        time.sleep(0.02)
    before, records = instance.snapshot(), _records(run_dir)
    for check in (True, False):
        seen = info(instance, tmp_path, check=check, probe=False)
        assert seen["_status"] == "ok", seen.get("msg")
        assert seen["window"]["stale"] is True and seen["changed"] is False
        assert seen["window"]["leases"][0]["alive"] is False
        assert instance.snapshot() == before and _records(run_dir) == records
    fixed = run_module("binfmt_drift", {"entries": [], "run_dir": run_dir}, wrap=instance.nsenter)
    assert fixed["changed"] is True and [i["kind"] for i in fixed["drift"]] == ["stale_window"], fixed
    assert bm.read_entry("qemu-arm", instance.path)["enabled"] is True
    again = info(instance, tmp_path, probe=False)
    assert again["changed"] is False and again["window"]["stale"] is False
    assert again["window"]["events"][-1]["event"] == "stale_window_restored"


def test_corrupt_records_reported_not_moved(instance, tmp_path):
    register_qemu_arm(instance)
    run_dir = str(tmp_path / "run")
    opened = run_module("native_armhf_window", {"state": "open", "mode": "emulation", "run_dir": run_dir},
                        wrap=instance.nsenter)
    assert opened["_status"] == "ok", opened.get("msg")
    closed = run_module("native_armhf_window", {"state": "closed", "lease_id": opened["lease_id"],
                                                "run_dir": run_dir}, wrap=instance.nsenter)
    assert closed["_status"] == "ok", closed.get("msg")
    (state,) = [p for p in _records(run_dir) if os.path.basename(p) == "state-qemu-arm.json"]
    with open(state, "w") as f:
        f.write('{"leases": null}')
    records = _records(run_dir)
    seen = info(instance, tmp_path, probe=False)
    assert seen["_status"] == "ok" and seen["changed"] is False, seen.get("msg")
    assert seen["window"]["corrupt"]["path"] == state and "binfmt_drift" in seen["window"]["corrupt"]["message"]
    assert _records(run_dir) == records


def test_tier_is_decided_by_what_exists_before_the_probe(instance, tmp_path):
    """binfmt_info's tier (tier.py, what build_host acts on), one instance state after another.
    The tests' capability hook lets /bin/true stand in for a kernel that runs armhf natively."""
    empty = tmp_path / "empty"
    empty.mkdir()
    binfmts = tmp_path / "binfmts"
    binfmts.mkdir()
    binfmt_d = tmp_path / "binfmt.d"
    binfmt_d.mkdir()
    dirs = {"binfmts_dir": str(empty), "binfmt_d_dirs": [str(empty)]}

    def tier(**args):
        args.setdefault("run_dir", str(tmp_path / "run"))
        result = run_module("binfmt_info", dict(dirs, **args), wrap=instance.nsenter, env={CAPABILITY_ENV: "probe"})
        assert result["_status"] == "ok" and result["changed"] is False, result
        return result["tier"]

    before = instance.snapshot()
    native = tier(probe_command=["/bin/true"])
    assert native["name"] == "native_probe" and native["descriptor"] is None
    assert native["reason"].startswith("nothing registers qemu-arm and armhf runs natively")
    fallback = tier(probe_command=["/bin/false"])
    assert fallback["name"] == "qemu_fallback" and "does not run natively" in fallback["reason"]
    assert tier(probe=False)["reason"].endswith("the native armhf probe was not run")
    assert instance.snapshot() == before

    # a descriptor the kernel has not loaded: tier 1 (build_host loads it), even where armhf runs natively
    (binfmts / "qemu-arm").write_text("package qemu-user-static\ninterpreter /usr/bin/qemu-arm-static\n"
                                      "magic \\x7fELF\\x01\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00"
                                      "\\x02\\x00\\x28\\x00\noffset 0\ncredentials no\npreserve no\nfix_binary yes\n")
    packaged = tier(probe_command=["/bin/true"], binfmts_dir=str(binfmts))
    assert packaged["name"] == "packaged_descriptor" and packaged["descriptor"] == str(binfmts / "qemu-arm")
    assert packaged["reason"].endswith("the kernel entry is not loaded")

    # registered without a descriptor: tier 2, whatever the probe would say
    register_qemu_arm(instance, enabled=False)
    registered = tier(probe_command=["/bin/true"])
    assert registered["name"] == "registered_entry" and "(disabled, interpreter /usr/bin/qemu-arm-static)" in \
        registered["reason"]
    # a masked binfmt.d file gives nothing to load: still tier 2
    os.symlink(os.devnull, str(binfmt_d / "qemu-arm.conf"))
    assert tier(binfmt_d_dirs=[str(binfmt_d)])["name"] == "registered_entry"
    # registered and a descriptor: tier 1
    assert tier(binfmts_dir=str(binfmts))["name"] == "packaged_descriptor"
    # the window entry asked for decides which entry the tier is about
    assert tier(window_entry="qemu-armeb", probe_command=["/bin/false"])["name"] == "qemu_fallback"
    assert bm.read_entry("qemu-arm", instance.path)["enabled"] is False      # nothing changed


def test_tier_of_the_host_descriptors(instance, tmp_path):
    """With the host's own descriptor directories, as build_host reads them."""
    packaged = os.path.exists("/usr/share/binfmts/qemu-arm") or os.path.exists("/usr/lib/binfmt.d/qemu-arm.conf")
    register_qemu_arm(instance)
    result = info(instance, tmp_path)["tier"]
    assert result["name"] == ("packaged_descriptor" if packaged else "registered_entry"), result
    if packaged:
        assert result["descriptor"] in ("/usr/share/binfmts/qemu-arm", "/usr/lib/binfmt.d/qemu-arm.conf")
