import errno

import pytest

from ansible_collections.nativearm.binfmt.plugins.module_utils import probe as pr

ARMHF = ["/usr/lib/arch-test/armhf"]
NS = pr.namespace_command(ARMHF)


def interpret(rc=None, output="", machine="aarch64", page_size=4096, method="namespace", **kw):
    return pr.interpret(method, NS if method == "namespace" else ARMHF, rc=rc, output=output,
                        machine=machine, page_size=page_size, **kw)


# -- choosing the probe ----------------------------------------------------------------------

def test_select_probe_prefers_arch_test():
    assert pr.select_probe(exists=lambda p: True) == ("arch-test", ["/usr/lib/arch-test/armhf"], "arch-test")


def test_select_probe_finds_arch_test_in_libexec_on_debian_13():
    debian13 = {"/usr/libexec/arch-test/armhf", "/usr/arm-linux-gnueabihf/lib/ld-linux-armhf.so.3"}
    assert pr.select_probe(exists=debian13.__contains__) == (
        "arch-test", ["/usr/libexec/arch-test/armhf"], "arch-test")


def test_select_probe_falls_back_to_the_loader():
    kind, argv, package = pr.select_probe(exists=lambda p: "arch-test" not in p)
    assert kind == "loader" and package == "gcc-arm-linux-gnueabihf"
    assert argv == ["/usr/arm-linux-gnueabihf/lib/ld-linux-armhf.so.3", "--help"]


def test_select_probe_custom_wins_and_missing_names_packages():
    assert pr.select_probe(["/opt/probe", "-x"], exists=lambda p: True) == ("custom", ["/opt/probe", "-x"], None)
    kind, argv, reason = pr.select_probe(exists=lambda p: False)
    assert kind is None and argv is None
    assert "arch-test" in reason and "gcc-arm-linux-gnueabihf" in reason


def test_missing_probe_gives_native_none():
    for run in (pr.direct_probe, pr.namespace_probe):
        result = run(exists=lambda p: False)
        assert result["native"] is None and "install arch-test" in result["reason"]


def test_namespace_command_is_an_argv_without_parameters_in_the_script():
    argv = pr.namespace_command(["/opt/my probe", "$(reboot)", "a'b"], "/custom/binfmt")
    assert argv[:4] == ["unshare", "--user", "--map-root-user", "--mount"]
    script = argv[argv.index("-c") + 1]
    assert "/custom" not in script and "probe" not in script.replace("nativearm-probe", "")
    assert argv[-4:] == ["/custom/binfmt", "/opt/my probe", "$(reboot)", "a'b"]


# -- interpreting ----------------------------------------------------------------------------

def test_success_is_native():
    r = interpret(rc=0, output="ok\n")
    assert r["native"] is True and r["output"] == "ok" and r["available"]
    assert r["method"] == "namespace" and r["command"] == NS and r["rc"] == 0


@pytest.mark.parametrize("kw", [
    dict(rc=126, output="nativearm-probe: 1: exec: /usr/lib/arch-test/armhf: Exec format error"),
    dict(method="direct", exec_errno=errno.ENOEXEC, output="[Errno 8] Exec format error"),
])
def test_exec_format_error_on_arm64_names_the_causes(kw):
    r = interpret(**kw)
    assert r["native"] is False
    assert r["reason"].startswith("Exec format error")
    assert "CONFIG_COMPAT" in r["reason"] and "AArch32" in r["reason"]


def test_exec_format_error_on_x86_says_it_is_not_an_arm_host():
    r = interpret(rc=126, output="exec: armhf: Exec format error", machine="x86_64")
    assert r["native"] is False and "x86_64" in r["reason"] and "Exec format error" in r["reason"]


@pytest.mark.parametrize("rc", [-4, 132])
def test_sigill(rc):
    r = interpret(rc=rc)
    assert r["native"] is False and r["reason"].startswith("SIGILL") and "AArch32" in r["reason"]


@pytest.mark.parametrize("rc", [0, 126])
def test_non_4k_pages_on_arm64_is_not_native(rc):
    r = interpret(rc=rc, output="Exec format error" if rc else "ok", page_size=16384)
    assert r["native"] is False and "16 KiB pages" in r["reason"]


def test_other_page_sizes_elsewhere_do_not_matter():
    assert interpret(rc=0, machine="ppc64le", page_size=65536)["native"] is True


@pytest.mark.parametrize("kw", [
    dict(rc=125, output="mount: /proc/sys/fs/binfmt_misc: permission denied.\n"
                        "nativearm-probe: cannot mount a private binfmt_misc"),
    dict(rc=1, output="unshare: unshare failed: Operation not permitted"),
])
def test_namespace_unavailable_is_not_a_verdict(kw):
    r = interpret(**kw)
    assert r["native"] is None and r["available"] is False and "6.7" in r["reason"]
    assert "5.15.0" in interpret(release="5.15.0", **kw)["reason"]


def test_a_probe_that_itself_exits_125_is_a_failure_not_unavailability():
    r = interpret(rc=125, output="probe says no")
    assert r["native"] is False and r["available"] and "125" in r["reason"]


@pytest.mark.parametrize("kw", [
    dict(rc=127, output="nativearm-probe: 1: exec: /usr/lib/arch-test/armhf: not found"),
    dict(method="direct", exec_errno=errno.ENOENT, output="[Errno 2] No such file or directory"),
])
def test_probe_not_found(kw):
    r = interpret(**kw)
    assert r["native"] is None and "arch-test" in r["reason"]


def test_permission_denied_spawning():
    r = interpret(method="direct", exec_errno=errno.EACCES, output="[Errno 13] Permission denied")
    assert r["native"] is None and "Permission denied" in r["reason"]


def test_timeout():
    r = interpret(timed_out=True, timeout=7)
    assert r["native"] is None and "7 seconds" in r["reason"]


def test_plain_failure_and_other_signals():
    assert interpret(rc=1)["reason"] == "the probe exited with status 1"
    r = interpret(rc=-9)
    assert r["native"] is False and "signal 9" in r["reason"]


def test_output_is_trimmed():
    r = interpret(rc=0, output="x" * 10000)
    assert len(r["output"]) < 2100 and r["output"].endswith("[...]")


# -- running (cheap real processes) ----------------------------------------------------------

def test_direct_probe_runs_and_times_out():
    facts = {"machine": "aarch64", "page_size": 4096, "release": "6.8.0"}
    assert pr.direct_probe(["/bin/true"], facts=facts)["native"] is True
    r = pr.direct_probe(["/bin/sleep", "5"], timeout=0.3, facts=facts)
    assert r["native"] is None and "0.3 seconds" in r["reason"] and r["probe"] == "custom"


def test_namespace_probe_without_unshare_is_unavailable():
    r = pr.namespace_probe(["/bin/true"], unshare="/nonexistent/unshare")
    assert r["native"] is None and r["available"] is False and "/nonexistent/unshare" in r["reason"]


# -- would an entry emulate the direct probe? --------------------------------------------------

ARMHF_HEADER = bytes.fromhex("7f454c46010101000000000000000000" + "02002800" + "01000000") + b"\0" * 200
ARM_ENTRY = {"enabled": True, "type": "magic", "offset": 0, "interpreter": "/usr/bin/qemu-arm-static",
             "magic": "7f454c4601010100000000000000000002002800",
             "mask": "ffffffffffffff00fffffffffffffffffeffffff", "extension": None}
ENTRY_TEXT = """%s
interpreter /usr/bin/qemu-arm-static
flags: F
offset 0
magic 7f454c4601010100000000000000000002002800
mask ffffffffffffff00fffffffffffffffffeffffff
"""


def test_entries_matching_as_the_kernel_does():
    aarch64 = dict(ARM_ENTRY, magic="7f454c460201010000000000000000000200b700")
    entries = {
        "qemu-arm": ARM_ENTRY,
        "qemu-arm-off": dict(ARM_ENTRY, enabled=False),
        "dyn-arm": dict(ARM_ENTRY, magic="7f454c4601010100000000000000000003002800"),  # ET_DYN via mask
        "exact": dict(ARM_ENTRY, mask=None, magic="7f454c46"),
        "shifted": dict(ARM_ENTRY, offset=250),
        "qemu-aarch64": aarch64,
        "by-name": {"enabled": True, "type": "extension", "extension": "armhf", "interpreter": "/bin/x"},
    }
    assert pr.entries_matching(ARMHF_HEADER, "armhf", entries) == ["dyn-arm", "exact", "qemu-arm"]
    assert pr.entries_matching(ARMHF_HEADER, "probe.armhf", entries) == ["by-name", "dyn-arm", "exact", "qemu-arm"]
    assert pr.entries_matching(b"\x7fELF", "x", {"qemu-arm": ARM_ENTRY}) == []


def _fake_binfmt_misc(tmp_path, status="enabled", state="enabled"):
    d = tmp_path / "binfmt_misc"
    d.mkdir()
    (d / "status").write_text(status + "\n")
    (d / "register").write_text("")
    (d / "qemu-arm").write_text(ENTRY_TEXT % state)
    probe = tmp_path / "armhf"
    probe.write_bytes(ARMHF_HEADER)
    probe.chmod(0o755)
    return str(d), str(probe)


def test_direct_probe_is_not_run_when_an_entry_would_emulate_it(tmp_path):
    path, probe = _fake_binfmt_misc(tmp_path)
    assert pr.emulating_entries(probe, path) == ["qemu-arm"]
    r = pr.direct_probe([probe], binfmt_misc=path)
    assert r["native"] is None and r["caught_by"] == ["qemu-arm"] and r["rc"] is None
    assert "qemu-arm" in r["reason"] and "namespace" in r["reason"]


@pytest.mark.parametrize("status, state", [("disabled", "enabled"), ("enabled", "disabled")])
def test_disabled_entries_or_instances_do_not_catch_the_probe(tmp_path, status, state):
    path, probe = _fake_binfmt_misc(tmp_path, status, state)
    assert pr.emulating_entries(probe, path) == []
    r = pr.direct_probe([probe], binfmt_misc=path, facts={"machine": "aarch64", "page_size": 4096})
    assert r["caught_by"] == [] and r["native"] is False  # it ran: the kernel refused the fake ELF


def test_emulating_entries_without_binfmt_misc_or_program(tmp_path):
    assert pr.emulating_entries("/bin/true", str(tmp_path / "none")) == []
    path, _probe = _fake_binfmt_misc(tmp_path)
    assert pr.emulating_entries("/nonexistent/probe", path) == []
    assert pr.emulating_entries("true", path) == []  # found on PATH, an x86/arm64 ELF
