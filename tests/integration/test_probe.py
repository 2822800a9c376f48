"""The native armhf probe and the capability check on the real kernel.

Each test gets a private binfmt_misc instance that plays "the host": qemu-arm is
registered there exactly as on a build host (qemu-arm-static, flag F), and the
probes run inside it through nsenter. The namespace probe and the capability
check must leave that instance byte-identical and still see the kernel's own
verdict; the direct probe must go through the entry while it is enabled.
"""
import json
import os
import sys

import pytest

from ansible_env import collections_path
from ansible_collections.nativearm.binfmt.plugins.module_utils import binfmt_misc
from ansible_collections.nativearm.binfmt.plugins.module_utils import probe
from ansible_collections.nativearm.binfmt.plugins.module_utils import _probe_run
from ansible_collections.nativearm.binfmt.plugins.module_utils.presets import preset

QEMU_ARM_STATIC = "/usr/bin/qemu-arm-static"
DEFAULT = probe.CANDIDATES[0][1]  # the armhf loader loading gcc-arm-linux-gnueabihf's armhf libc
MACHINE = os.uname().machine
# Where a 32-bit ARM ELF can only be emulated, the kernel must refuse it.
EMULATION_ONLY = MACHINE not in probe.ARM_MACHINES

_RUN_PROBE = ("import json, sys\n"
              "from ansible_collections.nativearm.binfmt.plugins.module_utils import _probe_run\n"
              "print(json.dumps(getattr(_probe_run, sys.argv[1])(json.loads(sys.argv[2]), **json.loads(sys.argv[3]))))\n")


# capability(**kwargs) inside the instance; "machine" (when given) replaces uname's, the
# page size and personality(2) stay the kernel's own.
_RUN_CAPABILITY = ("import json, os, sys\n"
                   "from ansible_collections.nativearm.binfmt.plugins.module_utils import probe\n"
                   "kwargs = json.loads(sys.argv[1])\n"
                   "machine = kwargs.pop('machine', None)\n"
                   "if machine:\n"
                   "    real = os.uname()\n"
                   "    kwargs['uname'] = lambda: os.uname_result(tuple(real)[:4] + (machine,))\n"
                   "print(json.dumps(probe.capability(**kwargs)))\n")


def _inside(inst, argv):
    env = dict(os.environ, PYTHONPATH=collections_path())
    env.pop(probe.CAPABILITY_ENV, None)  # the check itself is under test here
    proc = inst.run([sys.executable, "-c"] + argv, env=env,
                    timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def run_probe(inst, method, argv=None, **kwargs):
    """Run _probe_run.<method>_probe(argv, **kwargs) inside the instance, as a module on that host would."""
    return _inside(inst, [_RUN_PROBE, method + "_probe", json.dumps(argv), json.dumps(kwargs)])


def run_capability(inst, **kwargs):
    """Run probe.capability(**kwargs) inside the instance."""
    return _inside(inst, [_RUN_CAPABILITY, json.dumps(kwargs)])


@pytest.fixture
def host(instance):
    """A private instance with qemu-arm registered as on a build host."""
    magic, mask, offset = preset("arm")
    binfmt_misc.register(binfmt_misc.make_definition(
        "qemu-arm", QEMU_ARM_STATIC, magic=magic, mask=mask, offset=offset, flags="F"), instance.path)
    assert binfmt_misc.read_entry("qemu-arm", instance.path)["enabled"] is True
    return instance


def test_probe_binaries_are_installed():
    for path in [QEMU_ARM_STATIC] + [arg for arg in DEFAULT if arg.startswith("/")]:
        assert os.path.exists(path), "%s missing: the test setup installs qemu-user-static and " \
                                     "gcc-arm-linux-gnueabihf" % path
    assert probe.select_probe() == ("libc", DEFAULT, "gcc-arm-linux-gnueabihf")


def test_namespace_probe_of_the_default_probe():
    result = _probe_run.namespace_probe()
    assert result["probe"] == "libc" and result["method"] == "namespace"
    assert result["available"] is True
    assert result["command"][-4:] == DEFAULT
    if EMULATION_ONLY:
        assert result["native"] is False
        assert result["rc"] == 126 and "Exec format error" in result["output"]
        assert MACHINE in result["reason"] and result["reason"].startswith("Exec format error")
    else:
        assert result["native"] in (True, False)


def test_namespace_probe_leaves_the_hosts_qemu_arm_untouched(host):
    before = host.snapshot()
    expected = "enabled\ninterpreter %s\nflags: F\n" % QEMU_ARM_STATIC
    assert before["qemu-arm"].startswith(expected)
    result = run_probe(host, "namespace")
    assert host.snapshot() == before
    assert result["available"] is True and result["probe"] == "libc"
    if EMULATION_ONLY:
        # qemu-arm is enabled on this "host", yet the probe was not emulated.
        assert result["native"] is False and "Exec format error" in result["output"]


def test_namespace_probe_of_a_native_command_is_native(host):
    before = host.snapshot()
    result = run_probe(host, "namespace", ["/bin/true"])
    assert result["native"] is True and result["rc"] == 0 and result["probe"] == "custom"
    assert host.snapshot() == before


def test_namespace_probe_passes_arguments_verbatim(tmp_path):
    marker = tmp_path / "touched"
    result = _probe_run.namespace_probe(["/bin/echo", "$(touch %s)" % marker, "a b", "'c'"])
    assert result["native"] is True
    assert result["output"] == "$(touch %s) a b 'c'" % marker
    assert not marker.exists()


def test_namespace_probe_is_refused_on_an_instance_path_that_is_not_a_directory(tmp_path):
    result = _probe_run.namespace_probe(["/bin/true"], binfmt_misc=str(tmp_path / "missing"))
    assert result["available"] is False and result["native"] is None
    assert "cannot mount a private binfmt_misc" in result["output"]


def test_direct_probe_is_not_fooled_by_an_enabled_entry(host):
    before = host.snapshot()
    guarded = run_probe(host, "direct")
    assert guarded["native"] is None and guarded["caught_by"] == ["qemu-arm"] and guarded["rc"] is None
    assert host.snapshot() == before


def test_default_probe_loads_the_armhf_libc_through_qemu_and_fails_without_it(host):
    emulated = run_probe(host, "direct", binfmt_misc=None)
    assert emulated["probe"] == "libc" and emulated["method"] == "direct"
    # Through qemu-arm: proves the loader mapped and ran the armhf libc, which prints its version.
    assert emulated["native"] is True and emulated["rc"] == 0
    assert emulated["output"].startswith("GNU C Library")

    binfmt_misc.set_enabled("qemu-arm", False, host.path)
    try:
        disabled = host.snapshot()
        bare = run_probe(host, "direct")  # guarded: the disabled entry does not count
        assert host.snapshot() == disabled
    finally:
        binfmt_misc.set_enabled("qemu-arm", True, host.path)
    if EMULATION_ONLY:
        assert bare["native"] is False and bare["rc"] is None and "Exec format error" in bare["output"]
        assert bare["reason"].startswith("Exec format error")
    assert bare["caught_by"] == []
    assert binfmt_misc.read_entry("qemu-arm", host.path)["enabled"] is True


# -- running and timing out ---------------------------------------------------------------------

def test_direct_probe_runs_and_times_out():
    facts = {"machine": "aarch64", "page_size": 4096, "release": "6.8.0"}
    assert _probe_run.direct_probe(["/bin/true"], facts=facts, binfmt_misc=None)["native"] is True
    r = _probe_run.direct_probe(["/bin/sleep", "5"], timeout=0.3, facts=facts, binfmt_misc=None)
    assert r["native"] is None and "0.3 seconds" in r["reason"] and r["probe"] == "custom"


def test_namespace_probe_without_unshare_is_unavailable():
    r = _probe_run.namespace_probe(["/bin/true"], unshare="/nonexistent/unshare")
    assert r["native"] is None and r["available"] is False and "/nonexistent/unshare" in r["reason"]


# -- would an entry emulate the direct probe? (entries are read from the real instance) ----------

ARMHF_HEADER = bytes.fromhex("7f454c46010101000000000000000000" + "02002800" + "01000000") + b"\0" * 200


@pytest.fixture
def fake_armhf(tmp_path):
    """An armhf ELF header that no kernel can run (nothing after it)."""
    prog = tmp_path / "armhf"
    prog.write_bytes(ARMHF_HEADER)
    prog.chmod(0o755)
    return str(prog)


def test_emulating_entries_reads_the_instance(host, fake_armhf):
    assert _probe_run.emulating_entries(fake_armhf, host.path) == ["qemu-arm"]
    assert _probe_run.emulating_entries("/nonexistent/probe", host.path) == []
    assert _probe_run.emulating_entries("true", host.path) == []  # found on PATH, not a 32-bit ARM ELF
    binfmt_misc.set_enabled("qemu-arm", False, host.path)
    try:
        assert _probe_run.emulating_entries(fake_armhf, host.path) == []
    finally:
        binfmt_misc.set_enabled("qemu-arm", True, host.path)
    with open(os.path.join(host.path, "status"), "w") as f:
        f.write("0")
    try:
        assert _probe_run.emulating_entries(fake_armhf, host.path) == []
    finally:
        with open(os.path.join(host.path, "status"), "w") as f:
            f.write("1")
    assert _probe_run.emulating_entries(fake_armhf, host.path) == ["qemu-arm"]


def test_direct_probe_is_not_run_when_an_entry_would_emulate_it(host, fake_armhf):
    r = _probe_run.direct_probe([fake_armhf], binfmt_misc=host.path)
    assert r["native"] is None and r["caught_by"] == ["qemu-arm"] and r["rc"] is None
    assert "qemu-arm" in r["reason"] and "namespace" in r["reason"]


# -- binfmt_info's facts where no private instance can be had (kernels older than 6.7) -------------

_RUN_FACTS = ("import json, sys\n"
              "from ansible_collections.nativearm.binfmt.plugins.module_utils import _probe_run, probe\n"
              "old = lambda **kw: probe.decide('aarch64', 4096, True, private_unavailable='kernel 6.1 is too old')\n"
              "print(json.dumps(_probe_run.native_armhf(probe=json.loads(sys.argv[1]), capability_check=old)))\n")


def test_native_armhf_facts_never_probe_through_an_enabled_entry(host):
    before = host.snapshot()
    facts = _inside(host, [_RUN_FACTS, "null"])
    assert facts["native"] is None and facts["method"] is None
    assert facts["probe"]["caught_by"] == ["qemu-arm"] and facts["probe"]["rc"] is None
    assert "too old" in facts["reason"] and "native_armhf_window" in facts["reason"]
    assert host.snapshot() == before


def test_native_armhf_facts_run_the_probe_directly_when_nothing_catches_it(host):
    binfmt_misc.set_enabled("qemu-arm", False, host.path)
    try:
        before = host.snapshot()
        facts = _inside(host, [_RUN_FACTS, "null"])
        assert host.snapshot() == before
    finally:
        binfmt_misc.set_enabled("qemu-arm", True, host.path)
    assert facts["method"] == "direct" and facts["probe"]["caught_by"] == []
    assert facts["probe"]["command"] == DEFAULT
    if EMULATION_ONLY:
        assert facts["native"] is False and "Exec format error" in facts["reason"]


# -- the capability check --------------------------------------------------------------------

@pytest.mark.skipif(not EMULATION_ONLY, reason="the architecture check answers False only off ARM")
def test_capability_on_this_host_is_false_by_architecture_and_touches_nothing(host):
    before = host.snapshot()
    stat_before = os.stat(os.path.join(host.path, "qemu-arm"))
    verdict = run_capability(host)
    assert verdict["native_possible"] is False and verdict["method"] == "architecture"
    assert verdict["reason"] == "this host is %s: it can only emulate armhf" % MACHINE
    assert verdict["arch"] == MACHINE and verdict["page_size"] == os.sysconf("SC_PAGE_SIZE")
    assert verdict["probe"] is None
    assert host.snapshot() == before and host.snapshot()["qemu-arm"].startswith("enabled\n")
    stat_after = os.stat(os.path.join(host.path, "qemu-arm"))
    assert (stat_after.st_ino, stat_after.st_mtime_ns) == (stat_before.st_ino, stat_before.st_mtime_ns)


@pytest.mark.skipif(not EMULATION_ONLY, reason="needs a kernel that refuses armhf")
def test_capability_runs_the_real_probe_in_a_private_instance_where_the_checks_pass(host):
    """With uname saying aarch64 (the real personality(2) and page size of this 4K kernel), the
    verdict comes from the default probe run in a private instance below this one: the kernel refuses
    it although this instance's qemu-arm is enabled, and the instance is left as it was."""
    before = host.snapshot()
    verdict = run_capability(host, machine="aarch64")
    assert verdict["method"] == "private_instance" and verdict["native_possible"] is False
    assert verdict["aarch32_el0"] is True and verdict["page_size"] == 4096
    assert verdict["probe"]["command"][-4:] == DEFAULT and verdict["probe"]["rc"] == 126
    assert "Exec format error" in verdict["reason"] and "private binfmt_misc instance" in verdict["reason"]
    assert host.snapshot() == before


def test_capability_with_a_custom_probe_that_runs(host):
    verdict = run_capability(host, machine="armv8l", probe=["/bin/true"])
    assert verdict["native_possible"] is True and verdict["method"] == "private_instance"
    assert verdict["probe"]["probe"] == "custom"
