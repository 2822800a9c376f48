"""binfmt_info on the real kernel, inside private binfmt_misc instances."""
import os

from ansible_env import run_module
from ansible_collections.nativearm.binfmt.plugins.module_utils import binfmt_misc as bm
from ansible_collections.nativearm.binfmt.plugins.module_utils.presets import preset


def register_qemu_arm(instance, enabled=True):
    magic, mask, offset = preset("arm")
    bm.register(bm.make_definition("qemu-arm", "/usr/bin/qemu-arm-static", magic=magic, mask=mask,
                                   offset=offset, flags="F"), instance.path)
    if not enabled:
        bm.set_enabled("qemu-arm", False, instance.path)


def info(instance, tmp_path, check=False, **args):
    args.setdefault("run_dir", str(tmp_path / "run"))
    return run_module("binfmt_info", args, check=check, wrap=instance.nsenter)


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


def test_stale_window_reported_in_check_mode_then_repaired(instance, tmp_path):
    """A holder killed with SIGKILL leaves a stale window: qemu-arm disabled, prior state recorded.
    Check mode reports it and changes nothing; a normal run restores it (changed: true)."""
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
    before = instance.snapshot()
    checked = info(instance, tmp_path, check=True, probe=False)
    assert checked["window"]["stale"] is True and checked["changed"] is False
    assert instance.snapshot() == before
    repaired = info(instance, tmp_path, probe=False)
    assert repaired["changed"] is True
    assert bm.read_entry("qemu-arm", instance.path)["enabled"] is True
    assert repaired["entries"]["qemu-arm"]["enabled"] is True
    again = info(instance, tmp_path, probe=False)
    assert again["changed"] is False and again["window"]["stale"] is False
