"""Verify, on Debian 13's 16K-page arm64 kernel (`kernel16k`), that no native armhf window
opens where dynamically linked armhf programs cannot load, and that nothing is toggled to
find that out.

The kernel has CONFIG_COMPAT and personality(PER_LINUX32) succeeds, static armhf programs run
natively and the armhf loader runs, but the armhf libc's segments are 4K-aligned, so every
dynamically linked armhf program fails to load. The page size decides without a probe;
the first test reproduces the finding itself in a private binfmt_misc instance (no qemu-arm
there, so every armhf exec is native), without touching the host's entry.
"""
from conftest import LOADER, compile_armhf_program
from test_arm64_fleet import (KERNEL16K, QEMU_ARM, WRAPPED_BUILD, _report, arch_test_helper,
                              qemu_arm, qemu_arm_binary, remote, run_armhf, watch_qemu_arm)

pytestmark = KERNEL16K
PAGE_ALIGN = "not page-aligned"
QEMU_MAP_MARK = "failed to map segment from shared object"


def in_private_instance(host, command):
    """Run `command` (sh) as root in a new user + mount namespace with an empty binfmt_misc:
    no entry can hand an armhf program to qemu-arm there, so the kernel runs it natively."""
    script = "mount -t binfmt_misc none /proc/sys/fs/binfmt_misc && %s" % command
    return host.run("unshare --user --map-root-user --mount sh -c %s" % _quote(script))


def _quote(text):
    return "'" + text.replace("'", "'\\''") + "'"


def test_kernel16k_static_armhf_runs_natively_but_dynamic_armhf_cannot_load(kernel16k, kernel16k_program):
    """The measured finding, reproduced: what the static probes see succeeds, what builds need
    (the loader loading the armhf libc, a dynamically linked program) fails."""
    empty = in_private_instance(kernel16k, "ls /proc/sys/fs/binfmt_misc")
    assert empty.rc == 0 and "qemu-arm" not in empty.stdout, (empty.stdout, empty.stderr)
    static = in_private_instance(kernel16k, arch_test_helper(kernel16k, "armhf"))
    assert static.rc == 0 and "ok" in static.stdout, (static.rc, static.stdout, static.stderr)
    loader = in_private_instance(kernel16k, "%s --help >/dev/null" % LOADER)
    assert loader.rc == 0, loader.stderr
    # Measured on this guest (stop 18): the loader running the libc itself (`ld.so libc.so.6`)
    # exits 0 and prints glibc's banner, so that probe alone would not catch a 16K kernel;
    # only the page-size check does. A dynamically linked program must fail.
    dynamic = in_private_instance(kernel16k, kernel16k_program)
    print("dynamic armhf natively on 16K: rc %s, %r" % (dynamic.rc, dynamic.stderr))
    assert dynamic.rc != 0 and "armhf-ok" not in dynamic.stdout, (dynamic.rc, dynamic.stdout)
    assert qemu_arm(kernel16k) == "enabled"


def test_kernel16k_binfmt_info_says_16k_pages_rule_out_native_armhf(kernel16k, module):
    info = module("kernel16k", "binfmt_info", {})
    assert not info.get("failed") and info["changed"] is False, info
    na = info["native_armhf"]
    assert na["page_size"] == 16384 and info["host"]["page_size"] == 16384, na
    assert na["aarch32_el0"] is True and info["host"]["aarch32_el0"] is True, na  # personality ok
    assert na["native"] is False and na["method"] == "page_size" and na["probe"] is None, na
    assert "16384" in na["reason"] and PAGE_ALIGN in na["reason"], na
    assert qemu_arm(kernel16k) == "enabled"


def test_kernel16k_native_window_and_command_fall_back_without_touching_the_entry(kernel16k, module):
    """A watcher on the guest reads qemu-arm every 10 ms: with the page size known, neither a
    native window nor native_armhf_command ever disables it."""
    stop = watch_qemu_arm(kernel16k, "kernel16k")
    try:
        opened = module("kernel16k", "native_armhf_window", {"state": "open", "ttl": 300})
        assert not opened.get("failed"), opened
        try:
            assert opened["native"] is False and opened["mode"] == "emulation", opened
            assert "16384" in opened["reason"], opened
        finally:
            module("kernel16k", "native_armhf_window", {"state": "closed", "lease_id": opened["lease_id"]})
        command = module("kernel16k", "native_armhf_command", {"argv": ["uname", "-m"]})
        assert not command.get("failed") and command["rc"] == 0, command
        assert command["native"] is False and "16384" in command["reason"], command
        refused = module("kernel16k", "native_armhf_window",
                         {"state": "open", "ttl": 300, "on_unsupported": "fail"})
        assert refused.get("failed") is True and "16384" in refused["msg"], refused
    finally:
        seen = stop()
    assert seen == {"enabled"}, seen
    assert module("kernel16k", "binfmt_info", {"probe": False})["window"]["lease_count"] == 0


def test_kernel16k_wrapped_builds_fall_back_to_qemu_arm_and_say_why(inventory, kernel16k):
    """Wrapped builds fall back to qemu-arm with the page size as the reason. A static armhf
    program passes there. A dynamically linked one fails under qemu-arm as well, measured in
    stop 18 (qemu-user cannot map the libc's 4K-aligned segments on 16K host pages either);
    the build fails with the program's own exit status and the reason points at a 4K kernel."""
    static = compile_armhf_program(kernel16k, name="t-static", flags="-static")
    dynamic = compile_armhf_program(kernel16k, name="t-dynamic")
    passed = _wrapped(inventory, "head -n1 {q}; {p} 1".format(q=QEMU_ARM, p=static))
    assert passed.returncode == 0, passed.stdout[-3000:] + passed.stderr[-2000:]
    report = _report(passed)
    assert report["native"] is False and report["stdout"].splitlines()[0] == "enabled", report
    assert "armhf-ok" in report["stdout"], report
    _says_why(report)
    rc, out, exe = run_armhf(kernel16k, static, seconds=1)
    assert rc == 0 and "armhf-ok" in out and exe == qemu_arm_binary(kernel16k), (rc, out, exe)

    failed = _wrapped(inventory, dynamic + " 1")
    assert failed.returncode != 0, failed.stdout[-3000:]
    report = _report(failed)
    assert report["native"] is False and report.get("failed") is True, report
    assert int(report.get("rc", 0)) not in (0, -1), report
    _says_why(report)
    said = (report.get("stdout") or "") + (report.get("stderr") or "")
    print("dynamic armhf under qemu-arm on 16K: rc %s, %r" % (report.get("rc"), said[-300:]))
    assert QEMU_MAP_MARK in said and "armhf-ok" not in said, report
    assert qemu_arm(kernel16k) == "enabled"


def _wrapped(inventory, command):
    return remote.playbook(inventory, WRAPPED_BUILD, limit="kernel16k",
                           extra_vars={"arm64_build_command": command})


def _says_why(report):
    reason = report.get("reason") or ""
    assert "16384" in reason and "4K pages" in reason, report
