"""Verify `native_armhf_build_isolation: namespace` on real arm64 kernels: on `compat` the build
runs natively in its own user + mount namespace with a private binfmt_misc, while the host's
qemu-arm stays enabled the whole time (a watcher reads it every 10 ms) and a host-side armhf
program started during the build still runs under qemu-arm; on `noaarch32` (Linux 6.1, no
private binfmt_misc instances) it is refused with the reason, before anything runs.
"""
from conftest import WORK
from test_arm64_fleet import (COMPAT, NOAARCH32, WRAPPED_BUILD, _report, armhf_exe_command, qemu_arm,
                              qemu_arm_binary, remote, run_armhf, wait_for, watch_qemu_arm)

NAMESPACE = {"native_armhf_build_isolation": "namespace"}


@COMPAT
def test_namespace_build_runs_natively_while_the_host_keeps_qemu_arm(inventory, compat, module,
                                                                     compat_program):
    started, release = WORK + "/ns-started", WORK + "/ns-release"
    compat.run_expect([0], "rm -f %s %s" % (started, release))
    # In the namespace: run the armhf program (exe shows native or not; in a subshell, as it
    # ends with exit), mark that it is in,
    # stay until the test has run its host-side program, then report uname -m.
    command = "({run}); rc=$?; touch {s}; while [ ! -e {r} ]; do sleep 0.1; done; uname -m; exit $rc".format(
        run=armhf_exe_command(compat_program, 1, "/tmp/ns-build-out"), s=started, r=release)
    stop = watch_qemu_arm(compat, "namespace")
    build = remote.Background(inventory, WRAPPED_BUILD, limit="compat",
                              extra_vars=dict(NAMESPACE, arm64_build_command=command))
    try:
        in_build = wait_for(lambda: compat.file(started).exists or build.done(), timeout=600)
        if not (in_build and compat.file(started).exists):
            compat.run("touch %s" % release)
            run = build.wait(timeout=300)
            raise AssertionError("the build never reached its marker (rc %s):\n%s\n%s" % (
                run.returncode, run.stdout[-4000:], run.stderr[-2000:]))
        rc, out, exe = run_armhf(compat, compat_program, seconds=1)
        assert rc == 0 and "armhf-ok" in out, out
        assert exe == qemu_arm_binary(compat), "host-side armhf ran as %r during the build" % exe
    finally:
        compat.run("touch %s" % release)
        run = build.wait(timeout=900)
        seen = stop()
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    report = _report(run)
    lines = report["stdout"].splitlines()
    assert lines[0] == "exe=" + compat_program, report  # the kernel ran it, no qemu-arm
    assert "armhf-ok" in report["stdout"], report
    assert report["native"] is True and report["tier"] == "namespace", report
    assert seen == {"enabled"}, seen
    assert qemu_arm(compat) == "enabled"
    info = module("compat", "binfmt_info", {"probe": False})
    assert info["window"]["lease_count"] == 0 and not info["window"]["lock_holders"], info["window"]


@NOAARCH32
def test_namespace_build_refused_on_linux_6_1_with_the_reason(inventory, noaarch32):
    marker = WORK + "/ns-ran"
    noaarch32.run_expect([0], "mkdir -p %s; rm -f %s" % (WORK, marker))
    before = noaarch32.file("/proc/sys/fs/binfmt_misc/qemu-arm").content_string
    run = remote.playbook(inventory, WRAPPED_BUILD, limit="noaarch32",
                          extra_vars=dict(NAMESPACE, arm64_build_command="touch %s" % marker))
    assert run.returncode != 0, run.stdout[-3000:]
    # The refusal is an assert task's fail_msg (the result file records no failed assert):
    # read it from the output (failures may go to stderr), line wrapping undone.
    said = " ".join((run.stdout + run.stderr).split())
    assert "6.7" in said and "native_armhf_build_isolation=window" in said, run.stdout[-3000:]
    assert not noaarch32.file(marker).exists, "the build ran although it was refused"
    assert noaarch32.file("/proc/sys/fs/binfmt_misc/qemu-arm").content_string == before
