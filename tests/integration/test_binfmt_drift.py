"""binfmt_drift on the real kernel, inside private binfmt_misc instances."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from ansible_env import ROOT, run_module, run_playbook
from ansible_collections.nativearm.binfmt.plugins.module_utils import binfmt_misc as bm
from ansible_collections.nativearm.binfmt.plugins.module_utils import window as W
from ansible_collections.nativearm.binfmt.plugins.module_utils import window_health
from ansible_collections.nativearm.binfmt.plugins.module_utils.presets import preset

from window_support import Builder, flock_entry, kill_group

ARCHES = ["aarch64", "riscv64", "ppc64le", "s390x", "mips64el", "m68k", "sparc64", "i386"]


def spec(name, arch, **more):
    entry = {"name": name, "arch": arch, "interpreter": "/usr/bin/qemu-%s-static" % arch, "flags": "F"}
    entry.update(more)
    return entry


def drift(instance, tmp_path, entries, check=False, **args):
    """binfmt_drift in the instance; ``entries=None`` leaves the option out."""
    args.setdefault("run_dir", str(tmp_path / "run"))
    if entries is not None:
        args["entries"] = entries
    return run_module("binfmt_drift", args, check=check, diff=True, wrap=instance.nsenter)


def register(instance, name="qemu-arm", interpreter="/usr/bin/qemu-arm-static", flags="F", enabled=True):
    magic, mask, offset = preset("arm")
    bm.register(bm.make_definition(name, interpreter, magic=magic, mask=mask, offset=offset,
                                   flags=flags), instance.path)
    if not enabled:
        bm.set_enabled(name, False, instance.path)


def test_check_reports_everything_and_changes_nothing_then_fixes(instance, tmp_path):
    register(instance, flags="PF")                                # definition drift
    register(instance, "stray", interpreter="/bin/true")         # should be absent
    entries = [spec("qemu-arm", "arm"), spec("qemu-riscv64", "riscv64"), {"name": "stray", "state": "absent"}]
    before = instance.snapshot()
    report_path = tmp_path / "report" / "drift.json"
    result = drift(instance, tmp_path, entries, check=True, report=str(report_path))
    assert result["_status"] == "ok" and result["changed"] is False
    kinds = sorted((i["name"], i["kind"]) for i in result["drift"])
    assert kinds == [("qemu-arm", "definition"), ("qemu-riscv64", "missing"), ("stray", "unexpected")]
    assert instance.snapshot() == before
    assert result["report"]["check_mode"] is True and len(result["report"]["remaining"]) == 3
    assert not report_path.parent.exists()          # check mode writes nothing, not even the directory

    fixed = drift(instance, tmp_path, entries, report=str(report_path))
    assert fixed["changed"] is True and fixed["remaining"] == []
    on_disk = json.loads(report_path.read_text())
    assert on_disk == json.loads(json.dumps(fixed["report"]))
    assert on_disk["check_mode"] is False and on_disk["fixed"] == 3
    assert oct(report_path.stat().st_mode & 0o777) == "0o644"
    assert oct(report_path.parent.stat().st_mode & 0o777) == "0o755"
    assert sorted(os.listdir(report_path.parent)) == ["drift.json"]   # no temporary file left
    assert all(i["fixed"] for i in fixed["drift"])
    assert bm.read_entry("qemu-arm", instance.path)["flags"] == "F"
    assert bm.read_entry("qemu-riscv64", instance.path)["enabled"] is True
    assert bm.read_entry("stray", instance.path) is None
    assert "qemu-arm" in fixed["diff"]["before"] and fixed["diff"]["after"]["stray"] is None

    again = drift(instance, tmp_path, entries)
    assert again["changed"] is False and again["drift"] == []


def test_many_entries_take_one_module_call(instance, tmp_path):
    entries = [spec("qemu-" + arch, arch) for arch in ARCHES]
    proc, results = run_playbook(
        os.path.join(ROOT, "playbooks", "remediate.yml"), wrap=instance.nsenter,
        extra_vars={"binfmt_drift_entries": entries, "binfmt_drift_run_dir": str(tmp_path / "run"),
                    "binfmt_drift_report_path": str(tmp_path / "r.json")},
        args=["-e", "ansible_python_interpreter=" + sys.executable])
    assert proc.returncode == 0, proc.stdout[-3000:]
    module_results = [r for r in results if "drift" in r and "remaining" in r]
    assert len(module_results) == 1
    assert len(module_results[0]["drift"]) == len(ARCHES)
    assert sorted(bm.list_entries(instance.path)) == sorted("qemu-" + a for a in ARCHES)


def test_native_lease_is_not_drift_but_a_stale_window_is(instance, tmp_path):
    register(instance)
    run_dir = str(tmp_path / "run")
    lease = run_module("native_armhf_window", {"state": "open", "probe": ["/bin/true"], "ttl": 300,
                                               "run_dir": run_dir}, wrap=instance.nsenter)
    assert lease["native"] is True and bm.read_entry("qemu-arm", instance.path)["enabled"] is False
    result = drift(instance, tmp_path, [spec("qemu-arm", "arm")])
    assert result["drift"] == [] and result["changed"] is False
    assert bm.read_entry("qemu-arm", instance.path)["enabled"] is False  # not fought
    assert result["window"]["lease_count"] == 1

    info = run_module("binfmt_info", {"probe": False, "run_dir": run_dir},
                      check=True, wrap=instance.nsenter)
    for held in info["window"]["leases"]:
        os.kill(held["pid"], signal.SIGKILL)
    time.sleep(0.3)
    check = drift(instance, tmp_path, [spec("qemu-arm", "arm")], check=True)
    kinds = [i["kind"] for i in check["drift"]]
    assert "stale_window" in kinds and check["changed"] is False
    assert bm.read_entry("qemu-arm", instance.path)["enabled"] is False
    fix = drift(instance, tmp_path, [spec("qemu-arm", "arm")])
    assert fix["changed"] is True and fix["remaining"] == []
    assert bm.read_entry("qemu-arm", instance.path)["enabled"] is True


def test_stale_window_of_a_re_registered_entry_is_dropped_not_restored(instance, tmp_path):
    register(instance)
    run_dir = str(tmp_path / "run")
    lease = run_module("native_armhf_window", {"state": "open", "probe": ["/bin/true"], "ttl": 300,
                                               "run_dir": run_dir}, wrap=instance.nsenter)
    assert lease["prior_state"] == "enabled"
    os.kill(lease["holder_pid"], signal.SIGKILL)
    time.sleep(0.3)
    bm.unregister("qemu-arm", instance.path)
    register(instance, enabled=False)             # someone re-registered it, and left it disabled
    untouched = [{"name": "stray", "state": "absent"}]          # qemu-arm's definition is not at issue
    check = drift(instance, tmp_path, untouched, check=True)
    items = [i for i in check["drift"] if i["kind"] == "stale_window"]
    assert len(items) == 1 and items[0]["steps"] == ["drop_records"] and "inode" in items[0]["message"]
    assert check["changed"] is False
    fix = drift(instance, tmp_path, untouched)
    assert fix["changed"] is True and fix["remaining"] == []
    assert bm.read_entry("qemu-arm", instance.path)["enabled"] is False    # the registrant's state


def test_foreign_lock_holder_is_reported_not_fought(instance, tmp_path):
    register(instance)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl,sys,time; f=open(sys.argv[1]); fcntl.flock(f, fcntl.LOCK_EX);"
         " print('locked', flush=True); time.sleep(60)", os.path.join(instance.path, "qemu-arm")],
        stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"locked"
        result = drift(instance, tmp_path, [spec("qemu-arm", "arm")])
        items = [i for i in result["drift"] if i["kind"] == "foreign_lock"]
        assert len(items) == 1 and str(holder.pid) in items[0]["message"]
        assert result["changed"] is False and result["_status"] == "ok"
        assert items[0]["fixed"] is False and items[0] in result["remaining"]
    finally:
        holder.kill()
        holder.wait()


def _root_shared_lock(instance, seconds=60):
    """A root LOCK_SH on qemu-arm inside the instance that does not disable it (flock(1)
    keeps it through sleep, which inherits the descriptor)."""
    proc = flock_entry(instance, "-s", seconds)
    deadline = time.time() + 5
    while not bm.read_entry("qemu-arm", instance.path) or not [
            h for h in W.lock_holders_of(os.path.join(instance.path, "qemu-arm")) if h["access"] == "READ"]:
        assert time.time() < deadline, "the shared lock did not appear"
        time.sleep(0.01)
    return proc


def test_a_pr9769_builder_building_is_no_drift_and_not_re_enabled_under(instance, tmp_path):
    """A builder holds its LOCK_SH with qemu-arm disabled: the protocol working, not drift
    (no item, no foreign_lock); remediation leaves it disabled until the builder's own
    last out re-enables it."""
    register(instance)
    b = Builder(instance)
    try:
        assert bm.read_entry("qemu-arm", instance.path)["enabled"] is False
        check = drift(instance, tmp_path, [spec("qemu-arm", "arm")], check=True)
        assert check["drift"] == [], check["drift"]
        fix = drift(instance, tmp_path, [spec("qemu-arm", "arm")])
        assert fix["drift"] == [] and fix["changed"] is False
        assert bm.read_entry("qemu-arm", instance.path)["enabled"] is False
        assert b.leave() == "restored"
    finally:
        b.kill()
    assert bm.read_entry("qemu-arm", instance.path)["enabled"] is True


def test_enable_remediation_defers_to_a_builder_that_arrived_after_the_check(instance, tmp_path):
    """Armbian main's probe left qemu-arm disabled (no lock): drift; a builder arrives
    between the check and the remediation: the enable is left, and says why."""
    register(instance, enabled=False)
    run_dir = str(tmp_path / "run")
    health = window_health.check("qemu-arm", instance.path, run_dir)
    assert health["drift"] == [] and health["leases"]["foreign_native"] == 0
    b = Builder(instance)                               # finds it disabled: writes nothing, builds
    try:
        left = window_health.reenable("qemu-arm", instance.path, run_dir)
        assert left and "another coordinator" in left and "pr9769-builder" in left, left
        assert bm.read_entry("qemu-arm", instance.path)["enabled"] is False
        assert b.leave() == "restored"
    finally:
        b.kill()
    bm.set_enabled("qemu-arm", False, instance.path)    # the probe leftover again, nobody about
    assert window_health.reenable("qemu-arm", instance.path, run_dir) is None
    assert bm.read_entry("qemu-arm", instance.path)["enabled"] is True


def test_unprivileged_lock_holder_is_reported(instance, tmp_path):
    register(instance)
    proc = flock_entry(instance, "-s", uid=65534)
    try:
        deadline = time.time() + 5
        while not W.lock_holders_of(os.path.join(instance.path, "qemu-arm")):
            assert time.time() < deadline
            time.sleep(0.01)
        result = drift(instance, tmp_path, [spec("qemu-arm", "arm")])
        items = [i for i in result["drift"] if i["kind"] == "foreign_lock"]
        assert len(items) == 1 and "unprivileged" in items[0]["message"] and "uid 65534" in items[0]["message"]
        assert result["changed"] is False and bm.read_entry("qemu-arm", instance.path)["enabled"] is True
    finally:
        kill_group(proc)


def test_native_window_of_another_coordinator_with_qemu_arm_enabled_is_reported(instance, tmp_path):
    register(instance)
    proc = _root_shared_lock(instance)
    try:
        result = drift(instance, tmp_path, [spec("qemu-arm", "arm")])
        items = [i for i in result["drift"] if i["kind"] == "foreign_lock"]
        assert len(items) == 1 and "run under qemu" in items[0]["message"], result["drift"]
        assert result["changed"] is False and bm.read_entry("qemu-arm", instance.path)["enabled"] is True
    finally:
        kill_group(proc)


@pytest.mark.parametrize("entries, field", [
    ([{"name": "qemu-nonsense"}], "name"),
    ([{"name": "status", "state": "absent"}], "name"),
    ([spec("qemu-arm", "arm"), {"name": "x", "arch": "vax", "interpreter": "/bin/true"}], "arch"),
    ([spec("qemu-arm", "arm", flags="CF")], "flags"),
    ([spec("qemu-arm", "arm", mask="ff")], "arch"),
    ([{"name": "x", "magic": "zz", "interpreter": "/bin/true"}], "magic"),
    ([{"name": "x", "magic": "7f45", "offset": 300, "interpreter": "/bin/true"}], "offset"),
    ([{"name": "x", "type": "extension", "interpreter": "/bin/true"}], "extension"),
    ([{"name": "x", "arch": "arm", "interpreter": "relative/qemu"}], "interpreter"),
    ([spec("qemu-arm", "arm"), spec("qemu-arm", "arm")], "name"),
])
def test_bad_entries_fail_naming_the_field_and_change_nothing(instance, tmp_path, entries, field):
    register(instance, enabled=False)
    before = instance.snapshot()
    result = drift(instance, tmp_path, entries, report=str(tmp_path / "r.json"))
    assert result["_status"] == "failed"
    assert result["field"] == field, result["msg"]
    assert result["msg"].startswith("binfmt_drift_entries: entries[")
    assert instance.snapshot() == before
    assert not (tmp_path / "r.json").exists()


def test_entry_recreated_under_an_open_window_is_reported(instance, tmp_path):
    register(instance)
    run_dir = str(tmp_path / "run")
    lease = run_module("native_armhf_window", {"state": "open", "probe": ["/bin/true"], "ttl": 300,
                                               "run_dir": run_dir}, wrap=instance.nsenter)
    assert lease["native"] is True
    try:
        bm.unregister("qemu-arm", instance.path)   # e.g. update-binfmts or systemd-binfmt re-running
        register(instance)                         # a new inode, enabled behind the window's back
        deadline = time.time() + 5
        while bm.read_entry("qemu-arm", instance.path)["enabled"] and time.time() < deadline:
            time.sleep(0.05)
        assert bm.read_entry("qemu-arm", instance.path)["enabled"] is False  # the holder re-asserted
        result = drift(instance, tmp_path, [spec("qemu-arm", "arm")])
        items = [i for i in result["drift"] if i["kind"] == "recreated_entry"]
        assert len(items) == 1 and "re-registered under an open window" in items[0]["message"]
        assert result["changed"] is False and items[0] in result["remaining"]
        assert bm.read_entry("qemu-arm", instance.path)["enabled"] is False  # not fought
    finally:
        run_module("native_armhf_window", {"state": "closed", "lease_id": lease["lease_id"],
                                           "run_dir": run_dir}, wrap=instance.nsenter)
    assert bm.read_entry("qemu-arm", instance.path)["enabled"] is True


@pytest.mark.parametrize("entry, words", [
    ({"name": "qemu-arm", "frobnicate": True}, "entries.frobnicate"),
    ({"name": "qemu-arm", "enabled": "maybe"}, "enabled"),
    ({"name": "qemu-arm", "state": "gone"}, "state"),
])
def test_entry_keys_and_types_are_checked_before_anything(instance, tmp_path, entry, words):
    register(instance, enabled=False)
    before = instance.snapshot()
    result = drift(instance, tmp_path, [entry], report=str(tmp_path / "r" / "r.json"))
    assert result["_status"] == "failed" and words in result["msg"], result["msg"]
    assert instance.snapshot() == before
    assert not (tmp_path / "r").exists()


def test_enabled_yes_from_a_survey_is_a_bool(instance, tmp_path):
    register(instance, enabled=False)
    result = drift(instance, tmp_path, [spec("qemu-arm", "arm", enabled="yes")])
    assert result["_status"] == "ok" and result["changed"] is True, result.get("msg")
    assert bm.read_entry("qemu-arm", instance.path)["enabled"] is True


# ---------------------------------------------------------------------------
# the desired state build_host records, used when no entries are given
# ---------------------------------------------------------------------------

def desired_file(tmp_path, entries, mode=0o644, dir_mode=0o755):
    state = tmp_path / "state"
    state.mkdir(mode=dir_mode)
    state.chmod(dir_mode)
    path = state / "desired.json"
    path.write_text(json.dumps({"format": 1, "entries": entries}))
    path.chmod(mode)
    return path


def test_no_entries_uses_the_recorded_desired_state(instance, tmp_path):
    register(instance, enabled=False)
    path = desired_file(tmp_path, [spec("qemu-arm", "arm", enabled=True)])
    check = drift(instance, tmp_path, None, check=True, desired_state_file=str(path))
    assert check["desired_source"] == str(path) and check["changed"] is False
    assert [(i["name"], i["kind"]) for i in check["drift"]] == [("qemu-arm", "enabled")]
    fixed = drift(instance, tmp_path, None, desired_state_file=str(path))
    assert fixed["changed"] is True and fixed["remaining"] == []
    assert bm.read_entry("qemu-arm", instance.path)["enabled"] is True


def test_missing_desired_state_says_how_to_record_it(instance, tmp_path):
    register(instance, enabled=False)
    before = instance.snapshot()
    missing = tmp_path / "nowhere" / "desired.json"
    result = drift(instance, tmp_path, None, desired_state_file=str(missing), report=str(tmp_path / "r" / "r.json"))
    assert result["_status"] == "failed" and result["field"] == "desired_state_file"
    assert str(missing) in result["msg"] and "nativearm.binfmt.build_host" in result["msg"]
    assert "binfmt_drift_entries" in result["msg"]
    assert instance.snapshot() == before and not (tmp_path / "r").exists()


@pytest.mark.parametrize("how, words", [
    ("group-writable file", "writable by its group or by others"),
    ("world-writable directory", "writable by its group or by others"),
    ("symlink", "symlink"),
    ("not json", "not valid JSON"),
    ("bad entry", "entries[0].interpreter"),
])
def test_an_untrustworthy_desired_state_is_refused(instance, tmp_path, how, words):
    register(instance, enabled=False)
    before = instance.snapshot()
    good = [spec("qemu-arm", "arm")]
    if how == "group-writable file":
        path = desired_file(tmp_path, good, mode=0o664)
    elif how == "world-writable directory":
        path = desired_file(tmp_path, good, dir_mode=0o777)
    elif how == "symlink":
        planted = desired_file(tmp_path, good)
        path = planted.with_name("link.json")
        path.symlink_to(planted)
    elif how == "not json":
        path = desired_file(tmp_path, good)
        path.write_text("{")
    else:
        path = desired_file(tmp_path, [{"name": "qemu-arm", "arch": "arm", "interpreter": "rel/qemu"}])
    result = drift(instance, tmp_path, None, desired_state_file=str(path))
    assert result["_status"] == "failed" and words in result["msg"], result["msg"]
    assert "desired_state_file" in result["msg"] and str(path) in result["msg"]
    assert instance.snapshot() == before


def test_report_is_never_written_over_a_symlink_nor_into_an_open_directory(instance, tmp_path):
    register(instance, enabled=False)
    before = instance.snapshot()
    reports = tmp_path / "reports"
    reports.mkdir(mode=0o755)
    target = tmp_path / "victim"
    target.write_text("keep me\n")
    report = reports / "drift.json"
    report.symlink_to(target)
    result = drift(instance, tmp_path, [spec("qemu-arm", "arm")], report=str(report))
    assert result["_status"] == "failed" and result["field"] == "report"
    assert "%s is a symlink" % report in result["msg"], result["msg"]
    assert instance.snapshot() == before                          # refused before any change
    assert target.read_text() == "keep me\n" and os.readlink(str(report)) == str(target)
    assert sorted(os.listdir(str(reports))) == ["drift.json"]     # no temporary file left

    report.unlink()
    result = drift(instance, tmp_path, [spec("qemu-arm", "arm")], report=str(report))
    assert result["_status"] == "ok" and result["changed"] is True
    assert json.loads(report.read_text())["fixed"] == 1

    bm.set_enabled("qemu-arm", False, instance.path)
    before = instance.snapshot()
    reports.chmod(0o777)
    result = drift(instance, tmp_path, [spec("qemu-arm", "arm")], report=str(reports / "drift.json"))
    assert result["_status"] == "failed" and result["field"] == "report"
    assert "writable by its group or by others" in result["msg"]
    assert instance.snapshot() == before                          # refused before any change
