import errno

import pytest

from ansible_collections.nativearm.binfmt.plugins.module_utils import _probe_run as prun
from ansible_collections.nativearm.binfmt.plugins.module_utils import probe as pr


@pytest.fixture(autouse=True)
def real_capability_check(monkeypatch):
    """tests/conftest.py leaves the capability check to the probe for the other tests;
    these test the check itself."""
    monkeypatch.delenv(pr.CAPABILITY_ENV, raising=False)


ARMHF = ["/usr/lib/arch-test/armhf"]
NS = prun.namespace_command(ARMHF)


def interpret(rc=None, output="", machine="aarch64", page_size=4096, method="namespace", **kw):
    return prun.interpret(method, NS if method == "namespace" else ARMHF, rc=rc, output=output,
                          machine=machine, page_size=page_size, **kw)


# -- choosing the probe ----------------------------------------------------------------------

CROSS = ["/usr/arm-linux-gnueabihf/lib/ld-linux-armhf.so.3", "--library-path", "/usr/arm-linux-gnueabihf/lib",
         "/usr/arm-linux-gnueabihf/lib/libc.so.6"]
MULTIARCH = ["/usr/lib/ld-linux-armhf.so.3", "--library-path", "/usr/lib/arm-linux-gnueabihf",
             "/usr/lib/arm-linux-gnueabihf/libc.so.6"]


def test_select_probe_is_the_loader_loading_the_cross_libc():
    assert pr.select_probe(exists=lambda p: True) == ("libc", CROSS, "gcc-arm-linux-gnueabihf")


def test_select_probe_needs_the_libc_as_well_as_the_loader():
    only_loader = {CROSS[0], CROSS[2], MULTIARCH[0], MULTIARCH[2], MULTIARCH[-1]}
    assert pr.select_probe(exists=only_loader.__contains__) == ("libc", MULTIARCH, "libc6:armhf")


def test_static_helpers_and_loader_help_are_no_longer_probes():
    """They pass on 16K-page kernels, where every dynamic armhf program fails."""
    installed = {"/usr/lib/arch-test/armhf", "/usr/libexec/arch-test/armhf", CROSS[0]}
    kind, argv, reason = pr.select_probe(exists=installed.__contains__)
    assert kind is None and argv is None and "gcc-arm-linux-gnueabihf" in reason
    assert all("--help" not in argv and "arch-test" not in argv[0] for _k, argv, _p in pr.CANDIDATES)


def test_select_probe_custom_wins_and_missing_names_packages():
    assert pr.select_probe(["/opt/probe", "-x"], exists=lambda p: True) == ("custom", ["/opt/probe", "-x"], None)
    kind, argv, reason = pr.select_probe(exists=lambda p: False)
    assert kind is None and argv is None
    assert "libc.so.6" in reason and "gcc-arm-linux-gnueabihf" in reason


def test_default_probe_names_the_first_candidate_when_nothing_is_installed():
    assert pr.default_probe(exists=lambda p: False) == CROSS
    multiarch = set(MULTIARCH)
    assert pr.default_probe(exists=multiarch.__contains__) == MULTIARCH


def test_missing_probe_gives_native_none():
    for run in (prun.direct_probe, prun.namespace_probe):
        result = run(exists=lambda p: False)
        assert result["native"] is None and "install gcc-arm-linux-gnueabihf" in result["reason"]


def test_namespace_command_is_an_argv_without_parameters_in_the_script():
    argv = prun.namespace_command(["/opt/my probe", "$(reboot)", "a'b"], "/custom/binfmt")
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


def test_a_probe_that_runs_on_16k_pages_is_native():
    """Measured on Debian 13's arm64-16k: its cross libc is linked for 64 KiB pages and loads."""
    assert interpret(rc=0, output="ok", page_size=16384)["native"] is True
    r = interpret(rc=126, output="Exec format error", page_size=16384)
    assert r["native"] is False and "Exec format error" in r["reason"]


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
    assert r["native"] is None and "gcc-arm-linux-gnueabihf" in r["reason"]


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


PAGE_ALIGN_OUTPUT = ("/usr/arm-linux-gnueabihf/lib/libc.so.6: error while loading shared libraries: "
                     "/usr/arm-linux-gnueabihf/lib/libc.so.6: ELF load command address/offset not page-aligned")


@pytest.mark.parametrize("method", ["namespace", "direct"])
@pytest.mark.parametrize("spelling", ["not page-aligned", "not properly aligned"])  # newer, older glibc
def test_page_aligned_failure_is_recognised(method, spelling):
    """Measured on Debian 13's arm64-16k kernel: the loader runs, the libc cannot be mapped."""
    output = PAGE_ALIGN_OUTPUT.replace("not page-aligned", spelling)
    r = interpret(rc=127, output=output, page_size=16384, method=method)
    assert r["native"] is False and r["available"] is True
    assert r["reason"].startswith("ELF load command address/offset " + spelling)
    assert "16384" in r["reason"] and "smaller pages" in r["reason"] and "dynamically linked" in r["reason"]


def test_a_page_alignment_text_in_a_successful_run_is_not_a_failure():
    assert interpret(rc=0, output=PAGE_ALIGN_OUTPUT)["native"] is True


def test_output_is_trimmed():
    r = interpret(rc=0, output="x" * 10000)
    assert len(r["output"]) < 2100 and r["output"].endswith("[...]")


# -- would an entry emulate the direct probe? --------------------------------------------------

ARMHF_HEADER = bytes.fromhex("7f454c46010101000000000000000000" + "02002800" + "01000000") + b"\0" * 200
ARM_ENTRY = {"enabled": True, "type": "magic", "offset": 0, "interpreter": "/usr/bin/qemu-arm-static",
             "magic": "7f454c4601010100000000000000000002002800",
             "mask": "ffffffffffffff00fffffffffffffffffeffffff", "extension": None}


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
    assert prun.entries_matching(ARMHF_HEADER, "armhf", entries) == ["dyn-arm", "exact", "qemu-arm"]
    assert prun.entries_matching(ARMHF_HEADER, "probe.armhf", entries) == ["by-name", "dyn-arm", "exact", "qemu-arm"]
    assert prun.entries_matching(b"\x7fELF", "x", {"qemu-arm": ARM_ENTRY}) == []


# -- the capability check (no process, no entry: every input injected) ---------------------------

def uname(machine, release="6.12.57+deb13-arm64"):
    return lambda: pr.os.uname_result(("Linux", "host", release, "#1 SMP", machine))


class Personality(object):
    """personality(2) as arm64 answers it: EINVAL for PER_LINUX32 without 32-bit EL0."""

    def __init__(self, el0=True, persona=0x0040000, error=None):
        self.el0, self.persona, self.error, self.calls = el0, persona, error, []

    def __call__(self, persona):
        self.calls.append(persona)
        if self.error:
            raise OSError(self.error, pr.os.strerror(self.error))
        if persona == pr.PER_QUERY:
            return self.persona
        if persona & pr.PER_MASK == pr.PER_LINUX32 and not self.el0:
            raise OSError(errno.EINVAL, "Invalid argument")
        old, self.persona = self.persona, persona
        return old


class Namespace(object):
    """namespace_probe's stand-in: records that it was asked, answers ``result``."""

    def __init__(self, result=None):
        self.result, self.calls = result, []

    def __call__(self, probe, **kwargs):
        self.calls.append((probe, kwargs))
        return self.result


def private(native, reason=None, available=True):
    return {"native": native, "reason": reason or ("the probe ran natively" if native else "Exec format error"),
            "available": available, "method": "namespace", "command": NS, "rc": 0 if native else 126,
            "output": "", "probe": "libc"}


def capability(machine="aarch64", page_size=4096, el0=True, release="6.12.57+deb13-arm64", result=None, **kw):
    ns = Namespace(private(True) if result is None else result)
    pers = Personality(el0)
    verdict = pr.capability(uname=uname(machine, release), page_size=page_size, personality=pers,
                            namespace=ns, **kw)
    return verdict, ns, pers


def test_personality_check_restores_the_persona_at_once():
    pers = Personality(el0=True, persona=0x0040000)  # ADDR_NO_RANDOMIZE
    assert pr.aarch32_el0(pers)[0] is True
    assert pers.calls == [pr.PER_QUERY, 0x0040000 | pr.PER_LINUX32, 0x0040000] and pers.persona == 0x0040000
    pers = Personality(el0=False)
    el0, detail = pr.aarch32_el0(pers)
    assert el0 is False and "EINVAL" in detail and pers.persona == 0x0040000


def test_personality_check_under_linux32_needs_no_restore():
    pers = Personality(persona=pr.PER_LINUX32)
    assert pr.aarch32_el0(pers)[0] is True and pers.persona == pr.PER_LINUX32


def test_personality_that_cannot_be_asked_decides_nothing():
    el0, detail = pr.aarch32_el0(Personality(error=errno.EPERM))
    assert el0 is None and "could not be asked" in detail


def test_aarch32_el0_fact_is_asked_on_arm_machines_only():
    assert pr.aarch32_el0_fact("aarch64", Personality(el0=False)) is False
    assert pr.aarch32_el0_fact("armv8l", Personality(el0=True)) is True
    pers = Personality()
    assert pr.aarch32_el0_fact("x86_64", pers) is None and pers.calls == []


def test_personality_through_libc_answers_on_this_machine():
    """The real system call: asks and restores (no entry, no process)."""
    before = pr._libc_personality(pr.PER_QUERY)
    assert pr.aarch32_el0()[0] in (True, False)
    assert pr._libc_personality(pr.PER_QUERY) == before


def test_x86_64_can_only_emulate_and_asks_nothing_else():
    verdict, ns, pers = capability(machine="x86_64")
    assert verdict["native_possible"] is False and verdict["method"] == "architecture"
    assert verdict["reason"] == "this host is x86_64: it can only emulate armhf"
    assert verdict["aarch32_el0"] is None and verdict["probe"] is None
    assert ns.calls == [] and pers.calls == []


def test_aarch64_without_32_bit_el0():
    verdict, ns, _pers = capability(el0=False)
    assert verdict["native_possible"] is False and verdict["method"] == "personality"
    assert "no 32-bit EL0 (AArch32)" in verdict["reason"] and "EINVAL" in verdict["reason"]
    assert verdict["aarch32_el0"] is False and ns.calls == []


@pytest.mark.parametrize("native", [True, False])
def test_aarch64_with_16k_pages_is_decided_by_the_private_probe(native):
    """16K pages: the probe in a private instance decides (it loads the armhf libc), no toggle."""
    verdict, ns, _pers = capability(page_size=16384, result=private(native))
    assert verdict["native_possible"] is native and verdict["method"] == "private_instance"
    assert "16 KiB pages" in verdict["reason"] and len(ns.calls) == 1
    assert verdict["aarch32_el0"] is True and verdict["page_size"] == 16384


def test_aarch64_with_16k_pages_and_no_private_instance_is_not_native():
    """Without a private instance nothing may toggle qemu-arm to find out: not native, with why."""
    verdict, ns, _pers = capability(page_size=16384, release="6.1.0-28-arm64")
    assert verdict["native_possible"] is False and verdict["method"] == "page_size" and ns.calls == []
    assert verdict["reason"].startswith("page size 16384: armhf programs load natively only if linked")
    assert "older than 6.7" in verdict["reason"] and "linux-image-arm64" in verdict["reason"]
    unavailable = private(None, "the namespace method is unavailable", available=False)
    verdict, ns, _pers = capability(page_size=65536, result=unavailable)
    assert verdict["native_possible"] is False and verdict["method"] == "page_size" and len(ns.calls) == 1
    assert "namespace method is unavailable" in verdict["reason"]


def test_no_el0_is_reported_before_the_page_size():
    verdict, _ns, _pers = capability(el0=False, page_size=65536)
    assert verdict["method"] == "personality"


def test_aarch64_4k_private_probe_succeeds():
    verdict, ns, _pers = capability(probe=["/opt/p"], binfmt_misc="/mnt/b")
    assert verdict["native_possible"] is True and verdict["method"] == "private_instance"
    assert "ran natively in a private binfmt_misc instance" in verdict["reason"]
    assert verdict["probe"]["native"] is True
    (argv, kwargs), = ns.calls
    assert argv == ["/opt/p"] and kwargs["binfmt_misc"] == "/mnt/b"


def test_aarch64_4k_private_probe_fails():
    verdict, _ns, _pers = capability(result=private(False, "Exec format error: no CONFIG_COMPAT"))
    assert verdict["native_possible"] is False and verdict["method"] == "private_instance"
    assert "no CONFIG_COMPAT" in verdict["reason"] and verdict["aarch32_el0"] is True


@pytest.mark.parametrize("machine", ["armv7l", "armv8l"])
def test_32_bit_arm_hosts_still_need_the_probe(machine):
    verdict, ns, _pers = capability(machine=machine, result=private(True))
    assert verdict["native_possible"] is True and verdict["arch"] == machine and len(ns.calls) == 1


def test_old_kernel_cannot_have_a_private_instance():
    verdict, ns, _pers = capability(release="6.1.0-28-arm64")
    assert verdict["native_possible"] is None and verdict["method"] is None
    assert "6.1.0-28-arm64 is older than 6.7" in verdict["reason"] and ns.calls == []


def test_private_instance_unavailable_decides_nothing():
    verdict, _ns, _pers = capability(result=private(None, "the namespace method is unavailable: ...",
                                                    available=False))
    assert verdict["native_possible"] is None and verdict["method"] is None
    assert "only the real probe can decide" in verdict["reason"] and "unavailable" in verdict["reason"]


def test_never_true_without_a_private_probe():
    for kw in (dict(), dict(el0=None), dict(machine="armv8l")):
        assert pr.decide(kw.get("machine", "aarch64"), 4096, kw.get("el0", True))["native_possible"] is None


# -- binfmt_info's facts (the direct fallback runs on the real kernel: tests/integration) ------------

def test_native_armhf_facts_keep_a_decided_verdict(tmp_path):
    facts = prun.native_armhf(str(tmp_path / "none"), host={"machine": "x86_64", "page_size": 4096},
                              capability_check=lambda **kw: pr.decide("x86_64", kw["page_size"], None))
    assert facts["native"] is False and facts["method"] == "architecture" and "native_possible" not in facts


def test_probe_option():
    assert pr.probe_option(None) is None   # left out: probe.select_probe chooses
    assert pr.probe_option("/bin/probe --x 'a b'") == ["/bin/probe", "--x", "a b"]
    assert pr.probe_option(["/bin/true", 1]) == ["/bin/true", "1"]
    for bad in ({"a": 1}, [["x"]], "   ", "", [], "/bin/probe 'unbalanced"):
        with pytest.raises(ValueError) as err:
            pr.probe_option(bad)
        assert str(err.value).startswith("probe: ")


def test_linux32_personality_keeps_the_flags():
    assert pr.linux32_personality(0) == 0x0008
    assert pr.linux32_personality(0x0040000) == 0x0040008          # ADDR_NO_RANDOMIZE kept
    assert pr.linux32_personality(0x0040008) == 0x0040008          # already PER_LINUX32
    assert pr.linux32_personality(0x0000006) == 0x0000008          # another personality replaced
