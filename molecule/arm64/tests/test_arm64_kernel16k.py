"""Verify, on Debian 13's 16K-page arm64 kernel (`kernel16k`), what armhf can do there and that
the collection finds it out without touching the host's qemu-arm.

Measured on this guest (stop 19): CONFIG_COMPAT is on and personality(PER_LINUX32) succeeds;
Debian 13's cross toolchain and cross libc are linked for 64 KiB pages (LOAD p_align 0x10000),
so a dynamically linked armhf program loads natively on 16K pages; under Debian 13's qemu-arm
the same program fails ("failed to map segment from shared object": qemu-user cannot map
it on 16K host pages). So native is the only way it runs here, and the probe in a private
binfmt_misc instance (the loader loading the libc) decides, never a toggle. Programs linked
for 4 KiB pages would fail natively ("ELF load command address/offset not page-aligned"); the
probe's verdict for that case is unit-tested (tests/unit/plugins/module_utils/test_probe.py).
"""
import shlex

from conftest import LOADER
from test_arm64_fleet import (KERNEL16K, QEMU_ARM, WRAPPED_BUILD, _report, arch_test_helper,
                              armhf_exe_command, qemu_arm, remote, run_armhf, watch_qemu_arm)

pytestmark = KERNEL16K
QEMU_MAP_MARK = "failed to map segment from shared object"


def in_private_instance(host, command):
    """Run `command` (sh) as root in a new user + mount namespace with an empty binfmt_misc:
    no entry can hand an armhf program to qemu-arm there, so the kernel runs it natively."""
    script = "mount -t binfmt_misc none /proc/sys/fs/binfmt_misc && %s" % command
    return host.run("unshare --user --map-root-user --mount sh -c %s" % shlex.quote(script))


def load_alignments(host, path):
    """The p_align of every LOAD segment of the armhf ELF file at `path`."""
    out = host.run_expect([0], "arm-linux-gnueabihf-readelf -lW %s" % path).stdout
    return [int(line.split()[-1], 16) for line in out.splitlines() if line.strip().startswith("LOAD")]


def test_kernel16k_dynamic_armhf_runs_natively_and_fails_under_qemu_arm(kernel16k, kernel16k_program):
    """The finding, reproduced: natively (a private instance without qemu-arm) the static helper,
    the loader and a dynamically linked program all run, because the objects are linked for
    64 KiB pages; under qemu-arm the same dynamically linked program cannot load."""
    for path in (kernel16k_program, LOADER, LOADER.replace("ld-linux-armhf.so.3", "libc.so.6")):
        aligns = load_alignments(kernel16k, path)
        assert aligns and min(aligns) >= 16384, (path, aligns)
    empty = in_private_instance(kernel16k, "ls /proc/sys/fs/binfmt_misc")
    assert empty.rc == 0 and "qemu-arm" not in empty.stdout, (empty.stdout, empty.stderr)
    static = in_private_instance(kernel16k, arch_test_helper(kernel16k, "armhf"))
    assert static.rc == 0 and "ok" in static.stdout, (static.rc, static.stdout, static.stderr)
    dynamic = in_private_instance(kernel16k, armhf_exe_command(kernel16k_program, 1, "/tmp/k16-out"))
    assert dynamic.rc == 0 and "armhf-ok" in dynamic.stdout, (dynamic.rc, dynamic.stdout, dynamic.stderr)
    assert dynamic.stdout.splitlines()[0] == "exe=" + kernel16k_program, dynamic.stdout  # no qemu-arm
    emulated = kernel16k.run("%s 0" % kernel16k_program)
    print("dynamic armhf under qemu-arm on 16K: rc %s, %r" % (emulated.rc, emulated.stderr))
    assert emulated.rc != 0 and QEMU_MAP_MARK in emulated.stderr, (emulated.rc, emulated.stderr)
    assert qemu_arm(kernel16k) == "enabled"


def test_kernel16k_binfmt_info_probes_in_a_private_instance_without_touching_qemu_arm(kernel16k, module):
    stop = watch_qemu_arm(kernel16k, "kernel16k-info")
    try:
        info = module("kernel16k", "binfmt_info", {})
    finally:
        seen = stop()
    assert not info.get("failed") and info["changed"] is False, info
    na = info["native_armhf"]
    assert na["page_size"] == 16384 and info["host"]["page_size"] == 16384, na
    assert na["aarch32_el0"] is True and info["host"]["aarch32_el0"] is True, na  # personality ok
    assert na["native"] is True and na["method"] == "private_instance", na
    assert "16 KiB pages" in na["reason"], na
    assert seen == {"enabled"}, seen


def test_kernel16k_native_window_runs_dynamic_armhf_natively_and_restores(kernel16k, module, kernel16k_program):
    opened = module("kernel16k", "native_armhf_window", {"state": "open", "ttl": 300})
    assert not opened.get("failed"), opened
    try:
        assert opened["native"] is True and opened["mode"] == "native", opened
        assert qemu_arm(kernel16k) == "disabled"
        rc, out, exe = run_armhf(kernel16k, kernel16k_program, seconds=1)
        assert rc == 0 and "armhf-ok" in out and exe == kernel16k_program, (rc, out, exe)
    finally:
        closed = module("kernel16k", "native_armhf_window", {"state": "closed", "lease_id": opened["lease_id"]})
    assert closed.get("restored") is True, closed
    assert qemu_arm(kernel16k) == "enabled"
    assert module("kernel16k", "binfmt_info", {"probe": False})["window"]["lease_count"] == 0


def test_kernel16k_wrapped_dynamic_build_runs_natively(inventory, kernel16k, kernel16k_program):
    """A wrapped build of the dynamically linked program: native (its /proc/PID/exe is the
    program itself, qemu-arm disabled inside the window), passes, and qemu-arm is back after."""
    command = "head -n1 {q}; {run}".format(q=QEMU_ARM, run=armhf_exe_command(kernel16k_program, 1, "/tmp/k16-build"))
    run = remote.playbook(inventory, WRAPPED_BUILD, limit="kernel16k",
                          extra_vars={"arm64_build_command": command})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    report = _report(run)
    lines = report["stdout"].splitlines()
    assert report["native"] is True and lines[0] == "disabled", report
    assert lines[1] == "exe=" + kernel16k_program and "armhf-ok" in report["stdout"], report
    assert qemu_arm(kernel16k) == "enabled"
