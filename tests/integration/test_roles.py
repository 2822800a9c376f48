"""The roles and playbooks on the real kernel, each test in its own private
binfmt_misc instance playing a build host. Packages are the machine's real
ones (installed by scripts/setup.sh); apt itself runs in the molecule scenario,
so here build_host_install_packages is false to keep the tests quick.

Descriptor directories are hidden, and os-release replaced, with mounts made
inside the instance's own mount namespace: the machine's files never change.
"""
import json
import os
import re
import sys

import pytest
import yaml

from ansible_env import ROOT, run_module, run_playbook
from ansible_collections.nativearm.binfmt.plugins.module_utils import binfmt_misc as bm
from ansible_collections.nativearm.binfmt.plugins.module_utils.presets import preset

MACHINE = os.uname().machine
PLAYBOOKS = os.path.join(ROOT, "playbooks")
DESCRIPTOR_DIRS = ("/usr/share/binfmts", "/usr/lib/binfmt.d", "/etc/binfmt.d")


def playbook(name, instance, extra=None, check=False, fqcn=False, args=()):
    path = "nativearm.binfmt." + name if fqcn else os.path.join(PLAYBOOKS, name + ".yml")
    proc, results = run_playbook(path, extra_vars=extra, check=check, wrap=instance.nsenter,
                                 args=["-e", "ansible_python_interpreter=" + os.path.join(ROOT, ".venv/bin/python")]
                                 + list(args))
    return proc, results


def recap(proc):
    match = re.search(r"ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", proc.stdout)
    assert match, proc.stdout[-3000:] + proc.stderr[-3000:]
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, match.groups())))


def messages(results):
    """Every message, a list message (a table) line by line."""
    found = []
    for r in results:
        msg = r.get("msg")
        if isinstance(msg, str):
            found.append(msg)
        elif isinstance(msg, list):
            found.extend(m for m in msg if isinstance(m, str))
    return found


def hide_descriptors(instance):
    for path in DESCRIPTOR_DIRS:
        instance.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "nativearm-test", path], check=True)  # as root-owned as the real dirs


# A first provisioning also creates the recorded state's directory and writes the file.
RECORD = 2


def recorded(tmp_path):
    with open(tmp_path / "state" / "desired.json") as f:
        return json.load(f)["entries"]


def base_vars(tmp_path, **more):
    run_dir = str(tmp_path / "run")
    desired = str(tmp_path / "state" / "desired.json")
    values = {"build_host_install_packages": False, "build_host_run_dir": run_dir,
              "native_armhf_build_run_dir": run_dir, "binfmt_drift_run_dir": run_dir,
              "build_host_desired_state_file": desired, "binfmt_drift_desired_state_file": desired,
              "binfmt_drift_report_path": str(tmp_path / "reports" / "drift.json")}
    values.update(more)
    return values


# ---------------------------------------------------------------------------
# Privilege escalation comes from the user (-b, AWX), never from a play keyword
# ---------------------------------------------------------------------------

# su, because it is there on every Debian host and root needs no password for it;
# nobody's login shell is nologin, and the venv's python lives under /root.
BECOME_NOBODY = ["--become", "--become-method", "su", "--become-user", "nobody",
                 "-e", "ansible_become_flags=--shell=/bin/sh", "-e", "ansible_python_interpreter=/usr/bin/python3"]


@pytest.mark.parametrize("name", ["provision", "build", "remediate"])
def test_no_play_overrides_the_users_become(name):
    with open(os.path.join(PLAYBOOKS, name + ".yml")) as f:
        plays = yaml.safe_load(f)
    assert plays and all("become" not in play and "become_user" not in play for play in plays)


def test_become_user_from_the_command_line_is_the_user_tasks_run_as(instance, tmp_path):
    hide_descriptors(instance)
    before = instance.snapshot()
    proc, results = playbook("provision", instance, base_vars(tmp_path), args=BECOME_NOBODY)
    facts = [r["ansible_facts"] for r in results if "ansible_user_id" in r.get("ansible_facts", {})]
    assert facts and facts[0]["ansible_user_id"] == "nobody", proc.stdout[-3000:]
    # nobody may not register entries: the play stops, and the instance is as it was
    assert recap(proc)["failed"] == 1 and recap(proc)["changed"] == 0, proc.stdout[-3000:]
    assert instance.snapshot() == before


# ---------------------------------------------------------------------------
# build_host: the four tiers
# ---------------------------------------------------------------------------

def test_tier1_packaged_descriptor_loaded_as_packaged_and_idempotent(instance, tmp_path):
    proc, results = playbook("provision", instance, base_vars(tmp_path), fqcn=True)
    assert recap(proc)["failed"] == 0 and recap(proc)["changed"] == 1 + RECORD
    assert recorded(tmp_path) == [{"name": "qemu-arm", "enabled": True}]
    entry = bm.read_entry("qemu-arm", instance.path)
    with open("/usr/share/binfmts/qemu-arm") as f:
        descriptor = f.read()
    assert "interpreter %s\n" % entry["interpreter"] in descriptor  # exactly the packaged one
    assert entry["enabled"] is True
    summary = [m for m in messages(results) if "[tier " in m]
    assert len(summary) == 1 and "tier packaged_descriptor" in summary[0]
    assert "qemu-arm enabled" in summary[0]
    if MACHINE == "x86_64":
        assert entry["interpreter"] == "/usr/libexec/qemu-binfmt/arm-binfmt-P" and entry["flags"] == "PF"
        assert "native armhf NO" in summary[0] and "x86_64" in summary[0]
    before = instance.snapshot()
    proc = playbook("provision", instance, base_vars(tmp_path))[0]
    assert recap(proc)["changed"] == 0 and recap(proc)["failed"] == 0
    assert instance.snapshot() == before


def test_tier1_entry_disabled_by_an_open_native_lease_is_left_alone(instance, tmp_path):
    playbook("provision", instance, base_vars(tmp_path))
    lease = run_module("native_armhf_window", {"state": "open", "probe": ["/bin/true"], "ttl": 300,
                                               "run_dir": str(tmp_path / "run")}, wrap=instance.nsenter)
    assert lease.get("lease_id") and lease["native"] is True, lease
    try:
        assert bm.read_entry("qemu-arm", instance.path)["enabled"] is False
        before = instance.snapshot()
        proc, results = playbook("provision", instance, base_vars(tmp_path))
        assert recap(proc)["changed"] == 0 and recap(proc)["failed"] == 0
        assert instance.snapshot() == before
        assert any("disabled by 1 open native lease(s)" in m for m in messages(results))
    finally:
        closed = run_module("native_armhf_window", {"state": "closed", "lease_id": lease["lease_id"],
                                                    "run_dir": str(tmp_path / "run")}, wrap=instance.nsenter)
    assert closed["restored"] is True
    assert bm.read_entry("qemu-arm", instance.path)["enabled"] is True


def test_tier2_registered_entry_without_descriptor_is_enabled_not_rewritten(instance, tmp_path):
    hide_descriptors(instance)
    magic, mask, offset = preset("arm")
    bm.register(bm.make_definition("qemu-arm", "/usr/bin/qemu-arm-static", magic=magic, mask=mask,
                                   offset=offset, flags="OF"), instance.path)
    bm.set_enabled("qemu-arm", False, instance.path)
    proc, results = playbook("provision", instance, base_vars(tmp_path))
    assert recap(proc)["failed"] == 0 and recap(proc)["changed"] == 1 + RECORD
    entry = bm.read_entry("qemu-arm", instance.path)
    assert entry["enabled"] is True and entry["flags"] == "OF"
    [want] = recorded(tmp_path)          # the registration as it is, enabled
    assert want == dict({k: v for k, v in entry.items() if v is not None}, enabled=True)
    assert any("tier registered_entry" in m for m in messages(results))


def test_tier3_native_probe_registers_nothing(instance, tmp_path):
    hide_descriptors(instance)
    abi_file = tmp_path / "abi.conf"
    proc, results = playbook("provision", instance, base_vars(
        tmp_path, build_host_probe=["/bin/true"], build_host_abi_hardware=True,
        build_host_abi_sysctl_file=str(abi_file)))
    has_abi = os.path.exists("/proc/sys/abi/cp15_barrier")
    assert recap(proc)["failed"] == 0 and (has_abi or recap(proc)["changed"] == RECORD)
    assert recorded(tmp_path) == []      # nothing provisioned: nothing for binfmt_drift to restore
    # abi.cp15_barrier / abi.setend exist only on arm64 kernels: nothing to set elsewhere
    assert abi_file.exists() == os.path.exists("/proc/sys/abi/cp15_barrier")
    assert instance.snapshot() == {"status": "enabled\n"}
    summary = [m for m in messages(results) if "[tier " in m][0]
    assert "native armhf YES" in summary and "tier native_probe" in summary
    assert "absent (not needed" in summary


def test_tier3_with_qemu_arm_always_registers_it_and_stays_idempotent(instance, tmp_path):
    hide_descriptors(instance)
    extra = base_vars(tmp_path, build_host_probe=["/bin/true"], build_host_qemu_arm_always=True)
    proc, results = playbook("provision", instance, extra)
    assert recap(proc)["failed"] == 0 and recap(proc)["changed"] == 1 + RECORD, proc.stdout[-3000:]
    entry = bm.read_entry("qemu-arm", instance.path)
    assert (entry["interpreter"], entry["flags"], entry["enabled"]) == ("/usr/bin/qemu-arm-static", "F", True)
    assert recorded(tmp_path) == [{"name": "qemu-arm", "enabled": True}]   # as persisted in binfmt.d
    summary = [m for m in messages(results) if "[tier " in m][0]
    assert "native armhf YES" in summary and "tier native_probe" in summary
    assert "registered by build_host_qemu_arm_always" in summary
    before = instance.snapshot()
    proc, results = playbook("provision", instance, extra)
    assert recap(proc)["changed"] == 0, proc.stdout[-3000:]
    assert instance.snapshot() == before


def test_tier4_qemu_fallback_registers_qemu_arm_static_with_flag_f(instance, tmp_path):
    hide_descriptors(instance)
    proc, results = playbook("provision", instance, base_vars(tmp_path))
    assert recap(proc)["failed"] == 0 and recap(proc)["changed"] == 1 + RECORD, proc.stdout[-3000:]
    entry = bm.read_entry("qemu-arm", instance.path)
    assert (entry["interpreter"], entry["flags"], entry["enabled"]) == ("/usr/bin/qemu-arm-static", "F", True)
    assert recorded(tmp_path) == [{"name": "qemu-arm", "enabled": True}]
    persisted = instance.run(["cat", "/etc/binfmt.d/qemu-arm.conf"], check=True).stdout
    assert ":qemu-arm:M:" in persisted and "/usr/bin/qemu-arm-static:F" in persisted
    assert any("tier qemu_fallback" in m for m in messages(results))
    before = instance.snapshot()
    proc, results = playbook("provision", instance, base_vars(tmp_path))
    assert recap(proc)["changed"] == 0
    assert instance.snapshot() == before
    # the tier is now "registered entry" (persisted by us), still not rewritten
    assert any("tier packaged_descriptor" in m or "tier registered_entry" in m for m in messages(results))


def test_non_debian_host_stops_before_any_change(instance, tmp_path):
    fake = tmp_path / "os-release"
    fake.write_text('NAME="Fedora Linux"\nID=fedora\nVERSION_ID=40\nPRETTY_NAME="Fedora Linux 40"\n')
    instance.run(["mount", "--bind", str(fake), os.path.realpath("/etc/os-release")], check=True)
    proc, results = playbook("provision", instance, base_vars(tmp_path, build_host_install_packages=True))
    assert recap(proc)["failed"] == 1 and recap(proc)["changed"] == 0
    assert any("supports Debian and Ubuntu only" in m and "Nothing was changed" in m for m in messages(results))
    assert instance.snapshot() == {"status": "enabled\n"}
    assert not (tmp_path / "state").exists()


# ---------------------------------------------------------------------------
# native_armhf_build: both isolation modes, failures, bad input
# ---------------------------------------------------------------------------

@pytest.fixture
def provisioned(instance, tmp_path):
    proc = playbook("provision", instance, base_vars(tmp_path))[0]
    assert recap(proc)["failed"] == 0
    return instance


def test_demo_build_in_a_window_says_how_it_ran_and_restores(provisioned, tmp_path):
    before = provisioned.snapshot()
    proc, results = playbook("build", provisioned, base_vars(tmp_path))
    assert recap(proc)["failed"] == 0, proc.stdout[-4000:]
    said = [m for m in messages(results) if m.startswith("armhf build on")]
    assert len(said) == 1, messages(results)
    assert "succeeded" in said[0] and "output: hello from a 32-bit ARM (armhf) binary" in said[0], said
    if MACHINE == "x86_64":
        assert "EMULATED (qemu-arm)" in said[0] and "x86_64" in said[0]
    assert provisioned.snapshot() == before
    info = run_module("binfmt_info", {"probe": False, "run_dir": str(tmp_path / "run")},
                      wrap=provisioned.nsenter)
    assert info["window"]["lease_count"] == 0 and info["window"]["prior_state"] is None


def test_demo_build_in_a_namespace_never_touches_the_host_entry(provisioned, tmp_path):
    before = provisioned.snapshot()
    proc, results = playbook("build", provisioned, base_vars(tmp_path, native_armhf_build_isolation="namespace"))
    assert recap(proc)["failed"] == 0, proc.stdout[-4000:]
    said = [m for m in messages(results) if "armhf build on" in m][0]
    assert "namespace isolation" in said
    if MACHINE == "x86_64":
        assert "EMULATED" in said and "native probe failed" in said
    assert provisioned.snapshot() == before
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())  # no lease taken


@pytest.mark.parametrize("isolation", ["window", "namespace"])
def test_failed_build_is_reraised_with_its_rc_and_output_after_closing(provisioned, tmp_path, isolation):
    before = provisioned.snapshot()
    command = ["sh", "-c", "for i in 1 2 3 4 5; do echo out-$i; done; echo build-error >&2; exit 7"]
    proc, results = playbook("build", provisioned, base_vars(
        tmp_path, native_armhf_build_command=command, native_armhf_build_isolation=isolation,
        native_armhf_build_output_lines=3))
    assert recap(proc)["failed"] == 1
    failure = [m for m in messages(results) if m.startswith("The armhf build failed")]
    assert len(failure) == 1 and "\n" not in failure[0]
    assert "exit code 7" in failure[0] and "last 3 lines of its output are shown above" in failure[0]
    # the tails as lines (a list per stream), not one line with escaped newlines
    tails = [r["msg"] for r in results if isinstance(r.get("msg"), dict) and "stdout" in r["msg"]]
    assert tails == [{"stdout": ["out-3", "out-4", "out-5"], "stderr": ["build-error"]}], tails
    assert provisioned.snapshot() == before
    if isolation == "window":
        assert "the window was closed and qemu-arm restored" in failure[0]
        info = run_module("binfmt_info", {"probe": False, "run_dir": str(tmp_path / "run")},
                          wrap=provisioned.nsenter)
        assert info["window"]["lease_count"] == 0


@pytest.mark.parametrize("how", ["command", "tasks"])
def test_window_that_cannot_open_is_reported_as_such_not_as_an_exit_code(provisioned, tmp_path, how):
    before = provisioned.snapshot()
    marker = tmp_path / "built"
    tasks = tmp_path / "inner.yml"
    tasks.write_text("- name: Build\n  ansible.builtin.command: touch %s\n  changed_when: true\n" % marker)
    build = ({"native_armhf_build_command": ["touch", str(marker)]} if how == "command"
             else {"native_armhf_build_tasks": str(tasks)})
    proc, results = playbook("build", provisioned, base_vars(
        tmp_path, native_armhf_build_on_unsupported="fail", native_armhf_build_probe=["/bin/false"], **build))
    assert recap(proc)["failed"] == 1
    failure = [m for m in messages(results) if m.startswith("The armhf build")]
    assert len(failure) == 1, messages(results)
    assert failure[0].startswith("The armhf build did not run (window isolation; no window was opened)")
    assert "the window could not be opened: " in failure[0] and "exit code" not in failure[0], failure[0]
    said = [m for m in messages(results) if m.startswith("armhf build on")]
    assert said and "FAILED," in said[0] and "did not run" in said[0], said
    assert not marker.exists() and provisioned.snapshot() == before


def test_native_window_build_reports_why_it_ran_natively(provisioned, tmp_path):
    # A probe that succeeds natively stands in for an arm64 kernel with CONFIG_COMPAT.
    before = provisioned.snapshot()
    command = ["sh", "-c", "head -n1 /proc/sys/fs/binfmt_misc/qemu-arm"]
    proc, results = playbook("build", provisioned, base_vars(
        tmp_path, native_armhf_build_command=command, native_armhf_build_probe=["/bin/true"]))
    assert recap(proc)["failed"] == 0, proc.stdout[-3000:]
    said = [m for m in messages(results) if m.startswith("armhf build on")][0]
    assert "ran NATIVE" in said and "output: disabled" in said, said
    assert "why: native window: qemu-arm was disabled while the command ran" in said, said
    assert "could not be opened" not in said
    assert provisioned.snapshot() == before


def test_build_task_file_runs_inside_the_window(provisioned, tmp_path):
    tasks = tmp_path / "inner.yml"
    tasks.write_text("- name: Look at qemu-arm from inside the window\n"
                     "  ansible.builtin.command: cat /proc/sys/fs/binfmt_misc/qemu-arm\n"
                     "  register: inner\n  changed_when: false\n"
                     "- name: Show it\n  ansible.builtin.debug:\n    msg: \"inside: {{ inner.stdout_lines[0] }}\"\n")
    proc, results = playbook("build", provisioned, base_vars(tmp_path, native_armhf_build_tasks=str(tasks)))
    assert recap(proc)["failed"] == 0, proc.stdout[-3000:]
    inside = [m for m in messages(results) if m.startswith("inside: ")]
    # x86_64 falls back to an emulation lease (qemu-arm stays enabled); a native window disables it
    assert inside == ["inside: enabled"] if MACHINE == "x86_64" else ["inside: disabled"]


LINUX32_MACHINE = {"x86_64": "i686", "aarch64": "armv8l"}.get(MACHINE)


def test_build_task_file_in_a_native_window_gets_the_linux32_prefix_and_a_connection_owned_lease(
        provisioned, tmp_path):
    # A probe that succeeds stands in for an arm64 kernel with CONFIG_COMPAT.
    before = provisioned.snapshot()
    tasks = tmp_path / "inner.yml"
    tasks.write_text(
        "- name: Ask uname through the prefix\n"
        "  ansible.builtin.command:\n"
        "    argv: \"{{ native_armhf_build_linux32_prefix + ['sh', '-c', 'uname -m; head -n1 "
        "/proc/sys/fs/binfmt_misc/qemu-arm'] }}\"\n"
        "  register: inner\n  changed_when: false\n"
        "- name: Show it\n  ansible.builtin.debug:\n    msg: \"inside: {{ inner.stdout_lines | join(' ') }}\"\n")
    proc, results = playbook("build", provisioned, base_vars(
        tmp_path, native_armhf_build_tasks=str(tasks), native_armhf_build_probe=["/bin/true"]))
    assert recap(proc)["failed"] == 0, proc.stdout[-3000:]
    assert [m for m in messages(results) if m.startswith("inside: ")] == ["inside: %s disabled" % LINUX32_MACHINE]
    owners = [r["owner"] for r in results if isinstance(r.get("owner"), dict)]
    # opened, then looked at again from the next task: the same process, the playbook itself
    assert len(owners) == 2 and owners[0] == owners[1], owners
    assert owners[0]["kind"] == "local" and "ansible-playbook" in owners[0]["cmdline"]
    said = [m for m in messages(results) if m.startswith("armhf build on")][0]
    assert "ran NATIVELY (linux32: uname -m says armv8l)" in said, said
    assert provisioned.snapshot() == before


@pytest.mark.parametrize("extra, words", [
    ({"native_armhf_build_command": "", "native_armhf_build_tasks": ""}, "give exactly one"),
    ({"native_armhf_build_command": ["true"], "native_armhf_build_chdir": "no/such/dir"},
     "relative path is taken relative"),
    ({"native_armhf_build_command": ["true"], "native_armhf_build_chdir": "/no/such/dir"},
     "is not an existing directory"),
    ({"native_armhf_build_command": ["true"], "native_armhf_build_isolation": "jail"}, "isolation"),
    ({"native_armhf_build_command": {"a": 1}}, "string or a list of strings"),
    ({"native_armhf_build_tasks": "missing.yml"}, "does not exist on the controller"),
    ({"native_armhf_build_command": ["true"], "native_armhf_build_ttl": "soon"}, "native_armhf_build_ttl"),
])
def test_bad_build_input_stops_before_any_change(instance, tmp_path, extra, words):
    magic, mask, offset = preset("arm")
    bm.register(bm.make_definition("qemu-arm", "/usr/bin/qemu-arm-static", magic=magic, mask=mask,
                                   offset=offset, flags="F"), instance.path)
    before = instance.snapshot()
    proc, results = playbook("build", instance, base_vars(tmp_path, **extra))
    assert recap(proc)["failed"] == 1 and recap(proc)["changed"] == 0
    text = " ".join(messages(results)) + proc.stdout
    assert words in text
    assert instance.snapshot() == before
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


# ---------------------------------------------------------------------------
# binfmt_drift / remediate
# ---------------------------------------------------------------------------

def drift_facts(results):
    return [r["ansible_facts"]["binfmt_drift_report"] for r in results
            if "binfmt_drift_report" in r.get("ansible_facts", {})]


def fleet_table(results):
    tables = [r["msg"] for r in results if isinstance(r.get("msg"), list) and r["msg"]
              and r["msg"][0].startswith("binfmt drift, ")]
    assert len(tables) == 1, results
    return tables[0]


def armbian_native_probe(instance, loader="/bin/true"):
    """What Armbian main's prepare_host_binfmt_qemu_cross_arm64_host_armhf_target does on an
    arm64 host: write 0 to qemu-arm if it was enabled, run the armhf loader, and when that
    succeeds leave qemu-arm disabled for good. /bin/true stands in for the loader of a kernel
    with CONFIG_COMPAT (on x86_64 the real one cannot run, and Armbian would restore)."""
    script = ('e=/proc/sys/fs/binfmt_misc/qemu-arm; '
              '[ "$(head -n1 $e)" = enabled ] && echo 0 > $e; '
              '"$0" --help >/dev/null 2>&1 && exit 0; echo 1 > $e')
    instance.run(["sh", "-c", script, loader], check=True)


def test_remediate_restores_what_provision_recorded_after_armbians_probe(instance, tmp_path):
    extra = base_vars(tmp_path)
    proc = playbook("provision", instance, extra, args=["--become", "--become-method", "su"])[0]
    assert recap(proc)["failed"] == 0, proc.stdout[-3000:]
    desired = json.loads((tmp_path / "state" / "desired.json").read_text())
    assert desired["entries"] == [{"name": "qemu-arm", "enabled": True}]    # tier 1: as packaged
    assert oct((tmp_path / "state" / "desired.json").stat().st_mode & 0o777) == "0o644"
    good = instance.snapshot()
    assert good["qemu-arm"].startswith("enabled\n")

    armbian_native_probe(instance)
    left = instance.snapshot()
    assert left["qemu-arm"].startswith("disabled\n")

    proc, results = playbook("remediate", instance, extra, check=True)
    assert recap(proc)["changed"] == 0 and recap(proc)["failed"] == 0, proc.stdout[-3000:]
    [report] = drift_facts(results)
    assert report["check_mode"] is True and report["desired_source"].endswith("desired.json")
    assert [(i["name"], i["kind"]) for i in report["drift"]] == [("qemu-arm", "enabled")]
    assert instance.snapshot() == left                                # byte-identical
    assert not (tmp_path / "reports").exists()                       # check mode writes nothing
    table = fleet_table(results)
    assert "check mode" in table[0]
    assert table[1].split() == ["host", "drift", "items", "fixed", "remaining"]
    assert table[2].split() == ["localhost", "1", "0", "1"]

    proc, results = playbook("remediate", instance, extra)
    assert recap(proc)["changed"] == 1 and recap(proc)["failed"] == 0, proc.stdout[-3000:]
    assert instance.snapshot() == good
    assert fleet_table(results)[2].split() == ["localhost", "1", "1", "0"]
    on_disk = json.loads((tmp_path / "reports" / "drift.json").read_text())
    assert on_disk["fixed"] == 1 and on_disk["remaining"] == []

    proc, results = playbook("remediate", instance, extra)
    assert recap(proc)["changed"] == 0 and recap(proc)["failed"] == 0
    assert instance.snapshot() == good
    assert fleet_table(results)[2].split() == ["localhost", "0", "0", "0"]


def test_fleet_table_shows_every_host_and_why_one_without_a_recorded_state_failed(provisioned, tmp_path):
    # two inventory hosts on the same instance; "fresh" was never provisioned (its desired state
    # file does not exist), so its check fails with a message saying how to record one
    extra = base_vars(tmp_path)
    desired = extra.pop("binfmt_drift_desired_state_file")
    inventory = tmp_path / "fleet.ini"
    inventory.write_text("localhost binfmt_drift_desired_state_file=%s\n"
                         "fresh ansible_connection=local binfmt_drift_desired_state_file=%s\n"
                         % (desired, tmp_path / "never" / "desired.json"))
    proc, results = playbook("remediate", provisioned, extra, check=True, args=["-i", str(inventory)])
    assert re.search(r"localhost\s+: ok=\d+\s+changed=0\s+unreachable=0\s+failed=0", proc.stdout), proc.stdout[-3000:]
    assert re.search(r"fresh\s+: ok=\d+\s+changed=0\s+unreachable=0\s+failed=1", proc.stdout), proc.stdout[-3000:]
    assert any("desired.json does not exist" in m and "nativearm.binfmt.build_host" in m for m in messages(results))
    table = fleet_table(results)
    rows = {line.split()[0]: line for line in table[2:]}
    assert sorted(rows) == ["fresh", "localhost"], table
    assert rows["localhost"].split() == ["localhost", "0", "0", "0"]
    assert rows["fresh"].split()[:5] == ["fresh", "-", "-", "-", "failed:"]
    assert "does not exist" in rows["fresh"]


def test_enabled_yes_from_a_survey_is_taken_as_a_bool(provisioned, tmp_path):
    bm.set_enabled("qemu-arm", True, provisioned.path)
    extra = base_vars(tmp_path, binfmt_drift_entries=[{"name": "qemu-arm", "enabled": "no"}])
    proc, results = playbook("remediate", provisioned, extra)
    assert recap(proc)["failed"] == 0, proc.stdout[-3000:]
    assert bm.read_entry("qemu-arm", provisioned.path)["enabled"] is False
    extra["binfmt_drift_entries"] = [{"name": "qemu-arm", "enabled": "yes"}]
    proc, results = playbook("remediate", provisioned, extra)
    assert recap(proc)["changed"] == 1, proc.stdout[-3000:]
    assert bm.read_entry("qemu-arm", provisioned.path)["enabled"] is True


def test_fail_on_drift_fails_the_host_after_fixing_nothing_in_check_mode_and_still_prints_the_table(
        provisioned, tmp_path):
    bm.set_enabled("qemu-arm", False, provisioned.path)
    before = provisioned.snapshot()
    extra = base_vars(tmp_path, binfmt_drift_fail_on_drift=True)
    proc, results = playbook("remediate", provisioned, extra, check=True)
    assert recap(proc)["failed"] == 1 and recap(proc)["changed"] == 0, proc.stdout[-3000:]
    failure = [m for m in messages(results) if m.startswith("binfmt drift remains")]
    assert failure and "check mode" in failure[0] and "qemu-arm is disabled" in failure[0], messages(results)
    table = fleet_table(results)                       # printed after the failure all the same
    assert table[2].split()[:5] == ["localhost", "1", "0", "1", "failed:"], table
    assert provisioned.snapshot() == before
    proc, results = playbook("remediate", provisioned, extra)  # fixed: nothing remains, no failure
    assert recap(proc)["failed"] == 0 and recap(proc)["changed"] == 1, proc.stdout[-3000:]
    assert fleet_table(results)[2].split() == ["localhost", "1", "1", "0"]
    assert drift_facts(results)[0]["fixed"] == 1


@pytest.mark.parametrize("entries, words", [
    ([{"name": "qemu-nonsense"}], "unknown entry name 'qemu-nonsense'"),
    ([{"name": "qemu-arm", "flags": "Q", "interpreter": "/usr/bin/qemu-arm-static"}], "entries[0].flags"),
    ("qemu-arm", "binfmt_drift_entries"),
    ([{"name": "qemu-arm", "enabled": "maybe"}], "'enabled' is of type str found in 'binfmt_drift_entries'"),
    ([{"state": "absent"}], "missing required arguments: name found in binfmt_drift_entries"),
])
def test_bad_drift_entries_stop_before_any_change(provisioned, tmp_path, entries, words):
    bm.set_enabled("qemu-arm", False, provisioned.path)
    before = provisioned.snapshot()
    proc, results = playbook("remediate", provisioned, base_vars(tmp_path, binfmt_drift_entries=entries))
    assert recap(proc)["failed"] == 1
    assert words in " ".join(messages(results)) + proc.stdout
    assert provisioned.snapshot() == before
    assert not os.path.exists(tmp_path / "reports")


@pytest.mark.parametrize("isolation", ["window", "namespace"])
def test_async_build_longer_than_a_poll_interval(provisioned, tmp_path, isolation):
    before = provisioned.snapshot()
    proc, results = playbook("build", provisioned, base_vars(
        tmp_path, native_armhf_build_command=["sh", "-c", "sleep 3; echo async-$STAGE"],
        native_armhf_build_environment={"STAGE": "done"},
        native_armhf_build_isolation=isolation, native_armhf_build_async=120, native_armhf_build_poll=1))
    assert recap(proc)["failed"] == 0, proc.stdout[-3000:]
    said = [m for m in messages(results) if m.startswith("armhf build on")][0]
    assert "succeeded" in said and "output: async-done" in said, said
    assert provisioned.snapshot() == before


def test_binfmt_misc_is_mounted_when_missing(tmp_path):
    """A fresh user + mount namespace with nothing mounted at the role's binfmt_misc path:
    the role mounts a binfmt_misc instance there (the namespace's own, Linux >= 6.7) and
    provisions it. The path is a scratch directory, so no automounter is ever involved."""
    mount_point = tmp_path / "binfmt_misc"
    mount_point.mkdir()
    nsrun = os.path.join(ROOT, "tests", "sandbox", "nsrun.py")
    script = 'ansible-playbook "$@" && cat %s/qemu-arm' % mount_point

    def wrap(argv):
        return [sys.executable, nsrun, "--no-mount", "--", "sh", "-c", script, "sh"] + argv[1:]

    proc, results = run_playbook(
        os.path.join(PLAYBOOKS, "provision.yml"), wrap=wrap,
        extra_vars=base_vars(tmp_path, build_host_binfmt_misc=str(mount_point)),
        args=["-e", "ansible_python_interpreter=" + sys.executable])
    assert recap(proc)["failed"] == 0, proc.stdout[-3000:]
    mounted = [r for r in results if r.get("cmd") and "mount" in str(r.get("cmd"))]
    assert mounted and mounted[0].get("changed") is True
    assert "enabled\ninterpreter " in proc.stdout  # the entry registered in the new instance
    assert not os.path.exists(mount_point / "register")  # the mount lived only in the namespace
