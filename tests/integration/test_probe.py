"""The native armhf probe on the real kernel.

Each test gets a private binfmt_misc instance that plays "the host": qemu-arm is
registered there exactly as on a build host (qemu-arm-static, flag F), and the
probes run inside it through nsenter. The namespace probe must leave that
instance byte-identical and still see the kernel's own verdict; the direct
probe must go through the entry while it is enabled.
"""
import json
import os
import sys

import pytest

from ansible_env import collections_path
from ansible_collections.nativearm.binfmt.plugins.module_utils import binfmt_misc
from ansible_collections.nativearm.binfmt.plugins.module_utils import probe
from ansible_collections.nativearm.binfmt.plugins.module_utils.presets import preset

ARMHF = "/usr/lib/arch-test/armhf"
QEMU_ARM_STATIC = "/usr/bin/qemu-arm-static"
LOADER = [argv for kind, argv, _package in probe.CANDIDATES if kind == "loader"][0]
MACHINE = os.uname().machine
# Where a 32-bit ARM ELF can only be emulated, the kernel must refuse it.
EMULATION_ONLY = MACHINE not in probe.ARM_MACHINES

_RUN_PROBE = ("import json, sys\n"
              "from ansible_collections.nativearm.binfmt.plugins.module_utils import probe\n"
              "print(json.dumps(getattr(probe, sys.argv[1])(json.loads(sys.argv[2]), **json.loads(sys.argv[3]))))\n")


def run_probe(inst, method, argv=None, **kwargs):
    """Run probe.<method>_probe(argv, **kwargs) inside the instance, as a module on that host would."""
    proc = inst.run([sys.executable, "-c", _RUN_PROBE, method + "_probe", json.dumps(argv), json.dumps(kwargs)],
                    env=dict(os.environ, PYTHONPATH=collections_path()), timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture
def host(instance):
    """A private instance with qemu-arm registered as on a build host."""
    magic, mask, offset = preset("arm")
    binfmt_misc.register(binfmt_misc.make_definition(
        "qemu-arm", QEMU_ARM_STATIC, magic=magic, mask=mask, offset=offset, flags="F"), instance.path)
    assert binfmt_misc.read_entry("qemu-arm", instance.path)["enabled"] is True
    return instance


def test_probe_binaries_are_installed():
    for path in (ARMHF, QEMU_ARM_STATIC, LOADER[0]):
        assert os.access(path, os.X_OK), "%s missing: the test setup installs arch-test, " \
                                         "qemu-user-static and gcc-arm-linux-gnueabihf" % path


def test_namespace_probe_of_the_real_armhf_binary():
    result = probe.namespace_probe()
    assert result["probe"] == "arch-test" and result["method"] == "namespace"
    assert result["available"] is True
    assert result["command"][-1] == ARMHF
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
    assert result["available"] is True and result["probe"] == "arch-test"
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
    result = probe.namespace_probe(["/bin/echo", "$(touch %s)" % marker, "a b", "'c'"])
    assert result["native"] is True
    assert result["output"] == "$(touch %s) a b 'c'" % marker
    assert not marker.exists()


def test_namespace_probe_is_refused_on_an_instance_path_that_is_not_a_directory(tmp_path):
    result = probe.namespace_probe(["/bin/true"], binfmt_misc=str(tmp_path / "missing"))
    assert result["available"] is False and result["native"] is None
    assert "cannot mount a private binfmt_misc" in result["output"]


def test_direct_probe_is_not_fooled_by_an_enabled_entry(host):
    before = host.snapshot()
    guarded = run_probe(host, "direct")
    assert guarded["native"] is None and guarded["caught_by"] == ["qemu-arm"] and guarded["rc"] is None
    assert host.snapshot() == before


def test_direct_probe_goes_through_the_entry_and_fails_without_it(host):
    emulated = run_probe(host, "direct", binfmt_misc=None)
    assert emulated["probe"] == "arch-test" and emulated["method"] == "direct"
    # Through qemu-arm: proves the probe binary is real armhf code that prints "ok".
    assert emulated["native"] is True and emulated["rc"] == 0 and emulated["output"] == "ok"

    binfmt_misc.set_enabled("qemu-arm", False, host.path)
    try:
        disabled = host.snapshot()
        bare = run_probe(host, "direct")  # guarded: the disabled entry does not count
        assert host.snapshot() == disabled
    finally:
        binfmt_misc.set_enabled("qemu-arm", True, host.path)
    if EMULATION_ONLY:
        assert bare["native"] is False and "Exec format error" in bare["output"]
        assert bare["reason"].startswith("Exec format error")
    assert bare["caught_by"] == []
    assert binfmt_misc.read_entry("qemu-arm", host.path)["enabled"] is True


def test_direct_probe_of_the_loader_fallback(host):
    loader = list(LOADER)
    emulated = run_probe(host, "direct", loader, binfmt_misc=None)
    assert emulated["native"] is True and "ld.so" in emulated["output"]
    if EMULATION_ONLY:
        assert probe.namespace_probe(loader)["native"] is False
