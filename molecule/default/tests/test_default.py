"""Verify the `default` scenario on localhost inside the private binfmt_misc.

Runs under molecule's testinfra verifier (ansible backend, the scenario's
inventory); everything it reads is the sandbox's own binfmt_misc.
"""
import json
import os

import pytest

testinfra_hosts = ["ansible://localhost"]

STATE = "/run/nativearm-molecule"
ENTRY = "/proc/sys/fs/binfmt_misc/qemu-arm"


@pytest.mark.parametrize("package", [
    "gcc-arm-linux-gnueabihf", "libc6-dev-armhf-cross", "arch-test", "qemu-user-static",
    "binfmt-support",
])
def test_package_installed(host, package):
    assert host.package(package).is_installed


def test_binfmt_misc_is_the_private_instance(host):
    assert host.file("/proc/sys/fs/binfmt_misc/register").exists
    mounts = host.file("/proc/self/mountinfo").content_string
    assert any(line.split()[4] == "/proc/sys/fs/binfmt_misc" and " - binfmt_misc " in line
               for line in mounts.splitlines())


def test_qemu_arm_state_as_before_the_build(host):
    before = host.file(os.path.join(STATE, "qemu-arm.before")).content_string
    now = host.file(ENTRY).content_string
    assert before.startswith("enabled\n")
    assert now == before


def test_packaged_descriptor_not_clobbered(host):
    """Debian's qemu-user-static descriptor registers arm-binfmt-P with flags PF: left as is."""
    descriptor = host.file("/usr/share/binfmts/qemu-arm")
    if host.system_info.arch == "x86_64":
        assert "package qemu-user-static" in descriptor.content_string
        assert "interpreter /usr/libexec/qemu-binfmt/arm-binfmt-P" in host.file(ENTRY).content_string
        assert "flags: PF" in host.file(ENTRY).content_string


def test_demo_build_ran_and_said_how(host):
    report = json.loads(host.file(os.path.join(STATE, "build-report.json")).content_string)
    assert report["failed"] in (False, "False")
    assert "hello from a 32-bit ARM (armhf) binary" in report["stdout"]
    if host.system_info.arch == "x86_64":
        assert report["native"] in (False, "False")
        assert "x86_64" in report["reason"]


def test_no_lease_left(host):
    info = host.ansible("nativearm.binfmt.binfmt_info", "probe=false",
                        check=True)
    window = info["window"]
    assert window["lease_count"] == 0, window
    assert not window["stale"], window
    assert window["prior_state"] is None, window


def test_drift_report_empty_after_remediation(host):
    report = json.loads(host.file(os.path.join(STATE, "drift-report.json")).content_string)
    assert report["check_mode"] is False                 # check mode writes no report
    assert report["drift"] == []
    assert report["remaining"] == []
    assert "qemu-arm" in report["entries_checked"]
