"""Verify the arm64 fleet after converge, on real Debian arm64 kernels (testinfra over ssh).

compat    Debian 13, 6.12, cortex-a57: AArch32 EL0 present, namespace probe available.
noaarch32 Debian 12, 6.1, a64fx: no AArch32 EL0, kernel too old for the namespace probe.
kernel16k Debian 13, 6.12 arm64-16k, cpu max: AArch32 EL0, 16K pages (test_arm64_kernel16k.py).

Each guest's tests run in their own pytest-xdist worker (`-n 3 --dist loadgroup`, group =
guest name), so the emulated guests work at the same time; within a guest, tests run in
file order and each one leaves qemu-arm as it found it (enabled). A test touches one guest only.
"""
import json
import os
import time

import pytest

from conftest import LOADER, WORK, remote

QEMU_ARM = "/proc/sys/fs/binfmt_misc/qemu-arm"
HERE = os.path.dirname(os.path.abspath(__file__))
WRAPPED_BUILD = os.path.join(HERE, "playbooks", "wrapped_build.yml")
DRIFT_REPORT = "/var/lib/nativearm-binfmt/drift-report.json"


def qemu_arm(host):
    """'enabled' | 'disabled' | 'absent'."""
    out = host.run("head -n1 %s 2>/dev/null || echo absent" % QEMU_ARM)
    return out.stdout.strip()


def qemu_arm_interpreter(host):
    for line in host.file(QEMU_ARM).content_string.splitlines():
        if line.startswith("interpreter "):
            return line.split(" ", 1)[1]
    return None


def qemu_arm_binary(host):
    """The file the registered interpreter resolves to (trixie: qemu-arm-static -> qemu-arm);
    /proc/PID/exe of an emulated process shows this."""
    return host.run("readlink -f %s" % qemu_arm_interpreter(host)).stdout.strip()


def arch_test_helper(host, arch):
    """arch-test's helper binary (/usr/lib/arch-test on Debian 12, /usr/libexec on 13)."""
    for d in ("/usr/libexec/arch-test", "/usr/lib/arch-test"):
        if host.file("%s/%s" % (d, arch)).exists:
            return "%s/%s" % (d, arch)
    raise AssertionError("arch-test's %s helper not found" % arch)


def armhf_exe_command(program, seconds, out):
    """Shell that runs the armhf program with its output in file `out`, then prints
    "exe=<what /proc/PID/exe showed while it ran>" and that output, and exits with its status."""
    return ("%s %d > %s 2>&1 & pid=$!; exe=; "
            "for i in $(seq 100); do exe=$(readlink /proc/$pid/exe); "
            "case $exe in */sh|*/dash|*/bash|'') sleep 0.1;; *) break;; esac; done; "
            "wait $pid; rc=$?; echo \"exe=$exe\"; cat %s; exit $rc") % (program, seconds, out, out)


def run_armhf(host, program, seconds=2, log=WORK + "/out"):
    """Run the armhf program; return (rc, stdout, exe) where exe is what /proc/PID/exe showed
    from the aarch64 side while it ran: the program itself when the kernel ran it natively, the
    qemu-arm interpreter when binfmt_misc handed it to qemu."""
    out = host.run(armhf_exe_command(program, seconds, log))
    lines = out.stdout.splitlines()
    exe = lines[0][4:] if lines and lines[0].startswith("exe=") else ""
    return out.rc, "\n".join(lines[1:]), exe


COMPAT = pytest.mark.xdist_group("compat")
NOAARCH32 = pytest.mark.xdist_group("noaarch32")
KERNEL16K = pytest.mark.xdist_group("kernel16k")
BOTH = [pytest.param("compat", marks=COMPAT), pytest.param("noaarch32", marks=NOAARCH32)]
ALL = BOTH + [pytest.param("kernel16k", marks=KERNEL16K)]


def wait_for(predicate, timeout=30, step=0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


# ------------------------------------------------------------------ what provision did

@pytest.mark.parametrize("name", ALL)
def test_provision_installed_toolchain_from_the_archive(hosts, name):
    """The image has no apt lists and prepare gave their directory a fresh mtime, so these
    packages are there only because build_host updated the lists whatever their age said."""
    host = hosts[name]
    assert host.run("ls /var/lib/apt/lists/*_Packages*").rc == 0, "%s: no apt lists" % name
    for pkg in ("gcc-arm-linux-gnueabihf", "arch-test"):
        assert host.package(pkg).is_installed, "%s: %s not installed by provision" % (name, pkg)
    assert host.package("qemu-user-static").is_installed or host.package("qemu-user").is_installed
    assert host.file(LOADER).exists


@pytest.mark.parametrize("name,release,cpu_part,page_size", [
    pytest.param("compat", "6.12.", "0xd07", 4096, marks=COMPAT),
    pytest.param("noaarch32", "6.1.", "0x001", 4096, marks=NOAARCH32),
    pytest.param("kernel16k", "6.12.", None, 16384, marks=KERNEL16K)])
def test_guest_is_the_intended_kernel_and_cpu(hosts, name, release, cpu_part, page_size):
    host = hosts[name]
    assert host.system_info.arch == "aarch64"
    uname_r = host.run("uname -r").stdout.strip()
    assert uname_r.startswith(release), uname_r
    assert uname_r.endswith("-16k") is (page_size == 16384), uname_r
    assert int(host.run("getconf PAGESIZE").stdout) == page_size
    if cpu_part:
        assert cpu_part in host.file("/proc/cpuinfo").content_string  # cortex-a57 / a64fx


@pytest.mark.parametrize("name", ALL)
def test_qemu_arm_registered_enabled_persisted_and_no_lease_left(hosts, module, name):
    host = hosts[name]
    assert qemu_arm(host) == "enabled"
    interpreter = qemu_arm_interpreter(host)
    assert interpreter and host.file(interpreter).exists
    assert "flags: F" in host.file(QEMU_ARM).content_string
    assert host.file("/etc/binfmt.d/qemu-arm.conf").exists
    info = module(name, "binfmt_info", {})
    assert not info.get("failed"), info
    assert info["window"]["lease_count"] == 0, info["window"]
    assert not info["window"]["stale"]


@pytest.mark.parametrize("name", ALL)
def test_remediate_in_converge_left_an_empty_report(hosts, name):
    report = json.loads(hosts[name].file(DRIFT_REPORT).content_string)
    assert report["remaining"] == [], (name, report)
    assert "qemu-arm" in report["entries_checked"], (name, report)


# ------------------------------------------------------------------ capability check

def watch_qemu_arm(host, name):
    """Start a watcher on the guest that appends qemu-arm's first line every 10 ms to a file;
    returns stop(), which ends it and returns the set of states it read."""
    log = "%s/watch-%s" % (WORK, name)
    host.run_expect([0], "mkdir -p %s; rm -f %s" % (WORK, log))
    host.run_expect([0], "nohup sh -c 'echo $$ > %s.pid; while :; do head -n1 %s >> %s 2>/dev/null "
                         "|| echo absent >> %s; sleep 0.01; done' >/dev/null 2>&1 &" % (log, QEMU_ARM, log, log))
    assert wait_for(lambda: host.file(log).exists and host.file(log).size > 0, timeout=30)

    def stop():
        host.run("kill $(cat %s.pid)" % log)
        return set(host.file(log).content_string.split())
    return stop


@NOAARCH32
def test_noaarch32_native_open_never_disables_qemu_arm(noaarch32, module):
    """Without AArch32 EL0 the check that writes nothing decides: other qemu-arm users never
    see the entry disabled, not even for a probe."""
    stop = watch_qemu_arm(noaarch32, "noaarch32")
    try:
        opened = module("noaarch32", "native_armhf_window", {"state": "open", "ttl": 300})
        assert not opened.get("failed") and opened["native"] is False, opened
        module("noaarch32", "native_armhf_window", {"state": "closed", "lease_id": opened["lease_id"]})
    finally:
        seen = stop()
    assert seen == {"enabled"}, seen


# ------------------------------------------------------------------ compat: native

@COMPAT
def test_compat_window_opens_natively_and_restores(compat, module, compat_program):
    opened = module("compat", "native_armhf_window", {"state": "open", "ttl": 900})
    assert not opened.get("failed"), opened
    try:
        assert opened["native"] is True, opened
        assert opened["first"] is True and opened["leases"] == 1, opened
        assert qemu_arm(compat) == "disabled"
        rc, out, exe = run_armhf(compat, compat_program)
        assert rc == 0 and "armhf-ok" in out, out
        assert exe == compat_program, "not native: /proc/PID/exe was %r" % exe
        listing = compat.run("%s --list %s" % (LOADER, compat_program))
        assert listing.rc == 0, listing.stderr
        assert "linux-vdso.so.1" in listing.stdout, listing.stdout  # the kernel's compat vDSO
    finally:
        closed = module("compat", "native_armhf_window",
                        {"state": "closed", "lease_id": opened["lease_id"]})
    assert closed["restored"] is True, closed
    assert qemu_arm(compat) == "enabled"


@COMPAT
def test_compat_same_program_runs_under_qemu_outside_the_window(compat, compat_program):
    rc, out, exe = run_armhf(compat, compat_program, seconds=1)
    assert rc == 0 and "armhf-ok" in out
    assert exe == qemu_arm_binary(compat), exe


@pytest.mark.parametrize("name,native", [pytest.param("compat", True, marks=COMPAT),
                                         pytest.param("noaarch32", False, marks=NOAARCH32),
                                         pytest.param("kernel16k", True, marks=KERNEL16K)])
def test_native_armhf_command_runs_under_linux32_in_one_call(hosts, module, name, native):
    """native_armhf_command: one call opens, runs and closes; in native mode the command sees
    the 32-bit personality (uname -m says armv8l, as armhf build systems expect), unless
    linux32 is off; where the window falls back, the command runs as it is."""
    result = module(name, "native_armhf_command", {"argv": ["uname", "-m"]})
    assert not result.get("failed") and result["rc"] == 0, result
    assert result["native"] is native and result["mode"] == ("native" if native else "emulation"), result
    assert result["stdout"].strip() == ("armv8l" if native else "aarch64"), result
    if native:
        plain = module(name, "native_armhf_command", {"argv": ["uname", "-m"], "linux32": False})
        assert plain["native"] is True and plain["stdout"].strip() == "aarch64", plain
    assert qemu_arm(hosts[name]) == "enabled"
    info = module(name, "binfmt_info", {})
    assert info["window"]["lease_count"] == 0, info["window"]


# ------------------------------------------------------------------ noaarch32: fallback

@NOAARCH32
def test_noaarch32_window_falls_back_to_emulation_with_reason(noaarch32, module, noaarch32_program):
    opened = module("noaarch32", "native_armhf_window", {"state": "open", "ttl": 900})
    assert not opened.get("failed"), opened
    try:
        assert opened["native"] is False, opened
        assert opened["mode"] == "emulation", opened
        assert opened.get("reason"), opened
        assert qemu_arm(noaarch32) == "enabled"
        rc, out, exe = run_armhf(noaarch32, noaarch32_program, seconds=1)
        assert rc == 0 and "armhf-ok" in out, out
        assert exe == qemu_arm_binary(noaarch32), exe
    finally:
        module("noaarch32", "native_armhf_window", {"state": "closed", "lease_id": opened["lease_id"]})
    assert qemu_arm(noaarch32) == "enabled"


@NOAARCH32
def test_noaarch32_on_unsupported_fail_names_the_reason_and_changes_nothing(noaarch32, module):
    before = noaarch32.file(QEMU_ARM).content_string
    result = module("noaarch32", "native_armhf_window",
                    {"state": "open", "on_unsupported": "fail", "ttl": 300})
    assert result.get("failed") is True, result
    assert result.get("msg"), result
    assert noaarch32.file(QEMU_ARM).content_string == before
    info = module("noaarch32", "binfmt_info", {})
    assert info["window"]["lease_count"] == 0


@pytest.mark.parametrize("name,native", [pytest.param("compat", True, marks=COMPAT),
                                         pytest.param("noaarch32", False, marks=NOAARCH32),
                                         pytest.param("kernel16k", True, marks=KERNEL16K)])
def test_build_playbook_runs_native_or_emulated_and_passes(inventory, hosts, name, native):
    proc = remote.playbook(inventory, "nativearm.binfmt.build", limit=name)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    # the build role's one table: a line per host ("armhf build on HOST: ..., ran NATIVELY|EMULATED ...")
    said = [line for task, r in proc.results if isinstance(r.get("msg"), list)
            for line in r["msg"] if str(line).startswith("armhf build on ")]
    assert said, proc.stdout[-3000:]
    assert ("NATIVELY" in said[0]) is native, said[0]
    assert "Hello" in said[0] or "armhf" in said[0].lower(), said[0]
    assert qemu_arm(hosts[name]) == "enabled"


# ------------------------------------------------------------------ both probe methods

@COMPAT
def test_private_instance_probe_succeeds_and_fails_on_real_arm64(compat, module):
    ok = module("compat", "binfmt_info", {})
    na = ok["native_armhf"]
    assert na["method"] == "private_instance" and na["native"] is True, na
    assert na["aarch32_el0"] is True and ok["host"]["aarch32_el0"] is True and na["page_size"] == 4096, na
    assert na["probe"]["command"][-1].endswith("/libc.so.6"), na  # the loader loading the armhf libc
    # arch-test's `arm` helper (ARMv5 code) dies with SIGILL on cortex-a57 even natively.
    bad = module("compat", "binfmt_info", {"probe_command": [arch_test_helper(compat, "arm")]})
    na = bad["native_armhf"]  # really run and killed by SIGILL, not "not found"
    assert na["method"] == "private_instance" and na["native"] is False, na
    assert na["probe"]["rc"] in (132, -4) or "SIGILL" in (na.get("reason") or "") \
        or "llegal" in (na.get("reason") or "") + (na["probe"].get("output") or ""), na


@NOAARCH32
def test_capability_check_says_no_aarch32_el0_on_a64fx(module):
    # personality(PER_LINUX32) fails with EINVAL without 32-bit EL0: decided without any probe
    # (Linux 6.1 has no per-namespace binfmt_misc anyway).
    old = module("noaarch32", "binfmt_info", {})
    na = old["native_armhf"]
    assert na["method"] == "personality" and na["native"] is False and na["probe"] is None, na
    assert na["aarch32_el0"] is False and old["host"]["aarch32_el0"] is False, na
    assert "no 32-bit EL0" in na["reason"], na


@COMPAT
def test_toggle_probe_method_succeeds_and_fails_on_real_arm64(compat, module):
    # Succeeds: the default probe in a real window on compat (also test_compat_window_...).
    ok = module("compat", "native_armhf_window", {"state": "open", "ttl": 300})
    module("compat", "native_armhf_window", {"state": "closed", "lease_id": ok["lease_id"]})
    assert ok["native"] is True, ok
    # Fails: a probe that cannot run natively (SIGILL) -> rolled back, emulation lease instead.
    bad = module("compat", "native_armhf_window",
                 {"state": "open", "ttl": 300, "probe": [arch_test_helper(compat, "arm")]})
    try:
        assert bad["native"] is False and bad["mode"] == "emulation", bad
        assert bad.get("reason") and "not found" not in bad["reason"], bad
        assert qemu_arm(compat) == "enabled"
    finally:
        module("compat", "native_armhf_window", {"state": "closed", "lease_id": bad["lease_id"]})
    assert qemu_arm(compat) == "enabled"


# ------------------------------------------------------------------ drift

def drift_report(run):
    """The report binfmt_drift returned in a remediate run (check mode writes none on the host)."""
    found = [r["report"] for task, r in run.results
             if task.endswith("Check every desired entry and the window in one call") and "report" in r]
    assert found, run.stdout[-3000:]
    return found[0]


@NOAARCH32
def test_drift_disabled_entry_reported_in_check_mode_then_fixed(inventory, noaarch32):
    """No entries given: remediate restores the state provision recorded on the host."""
    on_disk = noaarch32.file(DRIFT_REPORT).content_string
    noaarch32.run_expect([0], "echo 0 > %s" % QEMU_ARM)
    try:
        check = remote.playbook(inventory, "nativearm.binfmt.remediate", check=True, limit="noaarch32")
        assert check.returncode == 0, check.stdout[-3000:]
        assert qemu_arm(noaarch32) == "disabled", "check mode changed the host"
        assert noaarch32.file(DRIFT_REPORT).content_string == on_disk, "check mode wrote the report"
        report = drift_report(check)
        assert any(item.get("name") == "qemu-arm" for item in report["drift"]), report
        fix = remote.playbook(inventory, "nativearm.binfmt.remediate", limit="noaarch32")
        assert fix.returncode == 0, fix.stdout[-3000:]
        assert qemu_arm(noaarch32) == "enabled"
        assert json.loads(noaarch32.file(DRIFT_REPORT).content_string)["remaining"] == []
        again = remote.playbook(inventory, "nativearm.binfmt.remediate", check=True, limit="noaarch32")
        assert again.returncode == 0
        assert drift_report(again)["drift"] == []
    finally:
        noaarch32.run("echo 1 > %s" % QEMU_ARM)


@NOAARCH32
def test_drift_wrong_interpreter_reported_then_reregistered(inventory, noaarch32, module):
    good = qemu_arm_interpreter(noaarch32)
    wrong = module("noaarch32", "binfmt_entry", {
        "name": "qemu-arm", "arch": "arm", "interpreter": "/bin/true", "flags": "F"})
    assert wrong.get("changed"), wrong
    try:
        assert qemu_arm_interpreter(noaarch32) == "/bin/true"
        check = remote.playbook(inventory, "nativearm.binfmt.remediate", check=True,
                                limit="noaarch32", extra_vars={
                                    "binfmt_drift_entries": [{"name": "qemu-arm"}]})
        assert check.returncode == 0
        assert qemu_arm_interpreter(noaarch32) == "/bin/true"
        assert drift_report(check)["drift"]
        fix = remote.playbook(inventory, "nativearm.binfmt.remediate", limit="noaarch32",
                              extra_vars={"binfmt_drift_entries": [{"name": "qemu-arm"}]})
        assert fix.returncode == 0, fix.stdout[-3000:]
        assert qemu_arm_interpreter(noaarch32) == good
        fixed = json.loads(noaarch32.file(DRIFT_REPORT).content_string)
        assert fixed["remaining"] == [] and fixed["fixed"] >= 1, fixed
    finally:
        if qemu_arm_interpreter(noaarch32) != good:
            module("noaarch32", "binfmt_entry", {"name": "qemu-arm", "arch": "arm",
                                                 "interpreter": good, "flags": "F"})


@COMPAT
def test_systemd_binfmt_restart_mid_window_is_reasserted(compat, module, compat_program):
    """systemd-binfmt re-registers (enabled) every entry with a binfmt.d file; the window's
    holder must notice the new inode and disable it again."""
    assert compat.file("/etc/binfmt.d/qemu-arm.conf").exists
    opened = module("compat", "native_armhf_window", {"state": "open", "ttl": 600})
    try:
        assert opened["native"] is True
        inode_before = compat.run("stat -c %%i %s" % QEMU_ARM).stdout.strip()
        compat.run_expect([0], "systemctl restart systemd-binfmt")
        inode_after = compat.run("stat -c %%i %s" % QEMU_ARM).stdout.strip()
        assert wait_for(lambda: qemu_arm(compat) == "disabled", timeout=20), \
            "the window did not re-assert after systemd-binfmt re-enabled qemu-arm"
        rc, out, exe = run_armhf(compat, compat_program, seconds=1)
        assert rc == 0 and exe == compat_program, (out, exe)
        info = module("compat", "binfmt_info", {})
        assert info["window"]["lease_count"] == 1
        assert info["window"].get("events"), info["window"]
    finally:
        closed = module("compat", "native_armhf_window",
                        {"state": "closed", "lease_id": opened["lease_id"]})
    assert closed["restored"] is True
    assert qemu_arm(compat) == "enabled"
    print("qemu-arm inode %s -> %s across systemd-binfmt restart" % (inode_before, inode_after))


@COMPAT
def test_stale_window_is_not_forced_onto_a_systemd_binfmt_re_registration(compat, module):
    """A build crashes mid-window (its holder SIGKILLed) on a host where an admin had disabled
    qemu-arm; systemd-binfmt then re-registers qemu-arm (new inode, enabled). The stale
    window's prior (disabled) belongs to the old registration: binfmt_info reports it (read-only),
    binfmt_drift drops the records and leaves the new registration as systemd-binfmt made it."""
    compat.run_expect([0], "echo 0 > %s" % QEMU_ARM)
    try:
        opened = module("compat", "native_armhf_window", {"state": "open", "ttl": 600})
        assert opened["native"] is True and opened["prior_state"] == "disabled", opened
        compat.run_expect([0], "kill -KILL %d" % opened["holder_pid"])
        assert wait_for(lambda: compat.run("kill -0 %d" % opened["holder_pid"]).rc != 0, timeout=10)
        compat.run_expect([0], "systemctl restart systemd-binfmt")
        assert qemu_arm(compat) == "enabled"
        seen = module("compat", "binfmt_info", {"probe": False}, check=True)
        assert seen["changed"] is False and seen["window"]["stale"] is True, seen["window"]
        assert "inode" in (seen["window"]["stale_refusal"] or ""), seen["window"]
        assert qemu_arm(compat) == "enabled"         # binfmt_info changed nothing
        fixed = module("compat", "binfmt_drift", {"entries": []})
        items = [i for i in fixed["drift"] if i["kind"] == "stale_window"]
        assert fixed["changed"] is True and len(items) == 1 and items[0]["fixed"], fixed["drift"]
        assert items[0]["steps"] == ["drop_records"], items
        after = module("compat", "binfmt_info", {"probe": False})["window"]
        assert not after["stale"] and after["lease_count"] == 0, after
        assert after["events"][-1]["event"] == "stale_window_dropped"
        assert qemu_arm(compat) == "enabled"         # systemd-binfmt's registration, untouched
    finally:
        module("compat", "binfmt_drift", {"entries": []})
        compat.run("echo 1 > %s" % QEMU_ARM)


# ------------------------------------------------------------------ concurrency

@COMPAT
def test_compat_two_wrapped_builds_at_once_restore_after_the_second(inventory, compat, module,
                                                                    compat_program):
    release = WORK + "/release-b"
    compat.run("rm -f %s" % release)
    # B holds its window until the test releases it, then reports qemu-arm and runs armhf.
    cmd_b = ("for i in $(seq 1200); do [ -e {r} ] && break; sleep 0.5; done; "
             "head -n1 {q}; {p}").format(r=release, q=QEMU_ARM, p=compat_program)
    cmd_a = "head -n1 {q}; {p} 1".format(q=QEMU_ARM, p=compat_program)
    build_b = remote.Background(inventory, WRAPPED_BUILD, limit="compat",
                                extra_vars={"arm64_build_command": cmd_b})
    try:
        assert wait_for(lambda: qemu_arm(compat) == "disabled", timeout=240), \
            "build B never opened its window"
        proc_a = remote.playbook(inventory, WRAPPED_BUILD, limit="compat",
                                 extra_vars={"arm64_build_command": cmd_a})
        assert proc_a.returncode == 0, proc_a.stdout[-3000:]
        report_a = _report(proc_a)
        assert report_a["native"] is True, report_a
        assert report_a["stdout"].splitlines()[0] == "disabled"
        assert "armhf-ok" in report_a["stdout"]
        # A has finished and closed its lease: B still holds, so qemu-arm stays disabled.
        assert qemu_arm(compat) == "disabled", "restored while build B still ran"
        assert module("compat", "binfmt_info", {})["window"]["lease_count"] == 1
    finally:
        compat.run("touch %s" % release)
        run_b = build_b.wait(timeout=900)
    assert run_b.returncode == 0, run_b.stdout[-3000:] + run_b.stderr[-2000:]
    report_b = _report(run_b)
    assert report_b["native"] is True, report_b
    assert report_b["stdout"].splitlines()[0] == "disabled"
    assert "armhf-ok" in report_b["stdout"]
    assert report_b["restored"] is True, report_b
    assert qemu_arm(compat) == "enabled"


def _report(run):
    reports = [r["native_armhf_build_report"] for task, r in run.results
               if "native_armhf_build_report" in r]
    assert reports, run.stdout[-3000:]
    report = reports[-1]
    for key in ("native", "restored", "failed"):
        if isinstance(report.get(key), str):
            report[key] = report[key].lower() == "true"
    return report
