"""Verify, on the real arm64 kernel of `compat` (armhf runs natively there), that the window
coexists with other coordinators and users of qemu-arm, and what it promises around builds.

- PR #9769-style builders (shell, flock(1)) next to native_armhf_command, both orders;
- a build container with its own /run next to a build on the host's /run, both orders;
- Armbian main's probe leftover (qemu-arm left disabled) reported and fixed by remediate;
- one module execution (round trip) per wrapped build and per drift check, and linux32;
(Namespace isolation and the abi sysctls: on branch `coexist`, not yet run on the fleet.)

Each case starts a watcher on the guest that logs qemu-arm's state every few ms into a
timeline; builders append markers to the same timeline (after their first native armhf run,
and before they leave), so "never re-enabled mid-build" is read from one ordered log.
Every test leaves qemu-arm enabled with no lease, as it found it.
"""
import json
import os
import tempfile

import pytest

from conftest import WORK, remote
from test_arm64_fleet import COMPAT, QEMU_ARM, WRAPPED_BUILD, _report, drift_report, qemu_arm, wait_for

SCRIPT = WORK + "/coexist.sh"
CONTAINER_PYTHON = WORK + "/container-python"
# One script for everything that runs on the guest beside the modules:
#   watch LOG                          append qemu-arm's state to LOG until killed
#   builder NAME LOG RELEASE PROGRAM   a PR #9769 builder (as in test_window_coordination.py):
#                                      LOCK_SH on the entry while it builds, first in disables,
#                                      last out (flock -x -n succeeds) re-enables
#   build NAME LOG RELEASE PROGRAM     the build a module runs (no locking of its own)
# A build runs PROGRAM (the armhf test program) when it is in and again before it leaves,
# and marks the timeline with what /proc/PID/exe showed (the program itself: native; the
# qemu-arm interpreter: emulated). It stays until RELEASE exists ("-": leave at once).
GUEST_SCRIPT = r"""
entry=/proc/sys/fs/binfmt_misc/qemu-arm
exe_of() {
    "$1" 3 >/dev/null & p=$!; e=   # 3 s: on a loaded TCG guest one readlink round can take 1 s
    for i in $(seq 100); do
        e=$(readlink /proc/$p/exe)
        case $e in */sh|*/dash|*/bash|'') sleep 0.1;; *) break;; esac
    done
    wait $p || e="failed:$e"
    echo "$e"
}
mark() { echo "$*" >> "$log"; }
stay() { [ "$1" = - ] && return; while [ ! -e "$1" ]; do sleep 0.1; done; }
cmd=$1 name=$2 log=$3 release=$4 prog=$5
case $cmd in
watch)
    log=$2
    echo $$ > "$log.pid"
    while :; do
        { read -r s < "$entry"; } 2>/dev/null || s=absent
        echo "$s" >> "$log"
        sleep 0.02
    done ;;
builder)
    exec 9<"$entry"
    flock -s 9
    if [ "$(head -n1 "$entry")" = enabled ]; then echo 0 > "$entry"; fi
    mark "$name-in exe=$(exe_of "$prog")"
    stay "$release"
    mark "$name-leave exe=$(exe_of "$prog")"
    exec 9<&-
    exec 8<"$entry"
    if flock -x -n 8; then echo 1 > "$entry"; mark "$name-restored"; else mark "$name-kept"; fi
    exec 8<&- ;;
build)
    mark "$name-in exe=$(exe_of "$prog") machine=$(uname -m)"
    stay "$release"
    mark "$name-leave exe=$(exe_of "$prog")" ;;
esac
"""
# The python of a build container: its own mount namespace with a fresh tmpfs on /run (so its
# window records are its own), the host's binfmt_misc. Used as ansible_python_interpreter.
CONTAINER_PYTHON_SCRIPT = r"""#!/bin/sh
exec unshare -m --propagation private sh -c \
    'mount -t tmpfs nativearm-container-run /run && exec /usr/bin/python3 "$@"' container-python "$@"
"""


@pytest.fixture(scope="module")
def coexist(compat):
    """The guest script and the container python on compat."""
    compat.run_expect([0], "mkdir -p %s && cat > %s <<'EOF'\n%sEOF\ncat > %s <<'EOF'\n%sEOF\nchmod 0755 %s"
                      % (WORK, SCRIPT, GUEST_SCRIPT, CONTAINER_PYTHON, CONTAINER_PYTHON_SCRIPT,
                         CONTAINER_PYTHON))
    return SCRIPT


class Timeline(object):
    """A watcher of qemu-arm on the guest and the markers builders append to its log."""

    def __init__(self, host, name):
        self.host = host
        self.log = "%s/timeline-%s" % (WORK, name)
        host.run_expect([0], "rm -f %s %s.pid %s/release-*" % (self.log, self.log, WORK))
        host.run_expect([0], "nohup sh %s watch %s >/dev/null 2>&1 &" % (SCRIPT, self.log))
        assert wait_for(lambda: host.file(self.log).exists and host.file(self.log).size > 0, timeout=30)

    def release(self, name):
        return "%s/release-%s" % (WORK, name)

    def start_builder(self, name, program, release=None):
        """A PR #9769 builder in the background; returns once it is in (ran armhf once)."""
        self.host.run_expect([0], "nohup sh %s builder %s %s %s %s >/dev/null 2>&1 &"
                             % (SCRIPT, name, self.log, release or self.release(name), program))
        self.wait_mark(name + "-in")

    def build_argv(self, name, program, release="-"):
        return ["sh", SCRIPT, "build", name, self.log, release, program]

    def build_cmd(self, name, program, release="-"):
        return " ".join(self.build_argv(name, program, release))

    def lines(self):
        return self.host.file(self.log).content_string.splitlines()

    def marks(self):
        return timeline_marks(self.lines())

    def wait_mark(self, mark, timeout=300):
        assert wait_for(lambda: mark in self.marks(), timeout=timeout, step=1), \
            "no %s in the timeline:\n%s" % (mark, "\n".join(self.lines()[-40:]))

    def stop(self):
        self.host.run("kill $(cat %s.pid)" % self.log)
        return self.lines()

    def finish(self, build, name):
        """Release NAME, wait for its background run `build`, stop the watcher: (run, lines)."""
        self.host.run("touch %s" % self.release(name))
        run = build.wait(timeout=900)
        return run, self.stop()


def timeline_marks(lines):
    """{mark: what follows it} for the markers (state lines have no '-')."""
    return dict((line.split(" ", 1) + [""])[:2] for line in lines if "-" in line)


def check_timeline(lines, builds, program):
    """Every build ran natively when it came in and when it left; qemu-arm read disabled and
    never enabled from the first build's arrival to the last build's departure; enabled at
    the end. Returns the states read in that span."""
    marks = [(i, line.split(" ")) for i, line in enumerate(lines)
             if line.split(" ")[0].endswith(("-in", "-leave"))]
    for name in builds:
        for side in ("in", "leave"):
            found = [words for i, words in marks if words[0] == "%s-%s" % (name, side)]
            assert found, "%s-%s missing from the timeline:\n%s" % (name, side, "\n".join(lines))
            assert "exe=" + program in found[0], "%s-%s did not run natively: %s" % (name, side, found[0])
    first_in = min(i for i, words in marks if words[0].endswith("-in"))
    last_leave = max(i for i, words in marks if words[0].endswith("-leave"))
    span = [line for line in lines[first_in:last_leave] if line in ("enabled", "disabled", "absent")]
    assert "disabled" in span, span
    assert "enabled" not in span and "absent" not in span, \
        "qemu-arm re-enabled while a native build ran:\n%s" % "\n".join(lines[first_in:last_leave])
    states = [line for line in lines if line in ("enabled", "disabled", "absent")]
    assert states[-1] == "enabled", "\n".join(lines[-20:])
    return span


def window_facts(module):
    return module("compat", "binfmt_info", {"probe": False}, check=True)["window"]


def no_lease_left(compat, module):
    assert qemu_arm(compat) == "enabled"
    facts = window_facts(module)
    assert facts["lease_count"] == 0 and not facts["stale"], facts


def wrapped_build(inventory, timeline, name, program, release="-", background=False, container=False):
    """A wrapped build (the native_armhf_build role) of the guest script's `build NAME`; with
    container, its modules run in a build container: own mount namespace, own /run."""
    extra = {"arm64_build_command": timeline.build_cmd(name, program, release)}
    if container:
        extra["ansible_python_interpreter"] = CONTAINER_PYTHON
    if background:
        return remote.Background(inventory, WRAPPED_BUILD, limit="compat", extra_vars=extra)
    return remote.playbook(inventory, WRAPPED_BUILD, limit="compat", extra_vars=extra)


def native_build_report(run, restored):
    """The report of a wrapped build that passed and ran natively; its close restored or not."""
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    report = _report(run)
    assert report["native"] is True and report["restored"] is restored, report
    return report


# ------------------------------------------------------------------ PR #9769 builders

@COMPAT
def test_pr9769_builder_first_in_last_out_around_native_armhf_command(compat, module, coexist, compat_program):
    """The builder disables qemu-arm and builds; our command joins its window (prior: enabled,
    the state before it), runs natively, and its close defers the restore to the builder,
    which is last out and re-enables."""
    timeline = Timeline(compat, "pr9769-a")
    try:
        timeline.start_builder("builder", compat_program)
        assert qemu_arm(compat) == "disabled"
        ours = module("compat", "native_armhf_command",
                      {"argv": timeline.build_argv("ours", compat_program)})
        assert not ours.get("failed") and ours["rc"] == 0, ours
        assert ours["native"] is True and ours["restored"] is False, ours
        assert ours["prior_state"] == "enabled", ours
        assert qemu_arm(compat) == "disabled", "re-enabled under the builder"
        compat.run_expect([0], "touch %s" % timeline.release("builder"))
        timeline.wait_mark("builder-restored")
    finally:
        compat.run("touch %s" % timeline.release("builder"))
        lines = timeline.stop()
    check_timeline(lines, ("builder", "ours"), compat_program)
    no_lease_left(compat, module)


@COMPAT
def test_pr9769_builder_joins_our_build_and_leaves_first(inventory, compat, module, coexist, compat_program):
    """Our wrapped build is first in; a builder comes, sees qemu-arm disabled (writes nothing),
    builds natively and leaves first without re-enabling (our LOCK_SH); our close restores."""
    timeline = Timeline(compat, "pr9769-b")
    build = wrapped_build(inventory, timeline, "ours", compat_program, timeline.release("ours"), background=True)
    try:
        timeline.wait_mark("ours-in")
        compat.run_expect([0], "touch %s" % timeline.release("builder"))
        timeline.start_builder("builder", compat_program)
        timeline.wait_mark("builder-kept")
        assert qemu_arm(compat) == "disabled"
    finally:
        run, lines = timeline.finish(build, "ours")
    native_build_report(run, restored=True)
    check_timeline(lines, ("builder", "ours"), compat_program)
    no_lease_left(compat, module)


# ------------------------------------------------------------------ a build container's own /run

@COMPAT
def test_container_with_its_own_run_first_in_host_build_joins(inventory, compat, module, coexist, compat_program):
    timeline = Timeline(compat, "container-a")
    build = wrapped_build(inventory, timeline, "container", compat_program,
                          timeline.release("container"), background=True, container=True)
    try:
        timeline.wait_mark("container-in")
        # Its lease records are in its own /run: the host's show no lease, only its holder's lock.
        facts = window_facts(module)
        assert facts["lease_count"] == 0, facts
        assert [h for h in facts["lock_holders"] if not h["ours"] and h["access"] == "READ"], facts
        ours = module("compat", "native_armhf_command",
                      {"argv": timeline.build_argv("host", compat_program)})
        assert not ours.get("failed") and ours["native"] is True, ours
        assert ours["restored"] is False and qemu_arm(compat) == "disabled", ours
    finally:
        run, lines = timeline.finish(build, "container")
    native_build_report(run, restored=True)
    check_timeline(lines, ("container", "host"), compat_program)
    no_lease_left(compat, module)


@COMPAT
def test_container_with_its_own_run_joins_a_host_build_and_leaves_first(inventory, compat, module, coexist, compat_program):
    timeline = Timeline(compat, "container-b")
    build = wrapped_build(inventory, timeline, "host", compat_program, timeline.release("host"), background=True)
    try:
        timeline.wait_mark("host-in")
        run_c = wrapped_build(inventory, timeline, "container", compat_program, container=True)
        native_build_report(run_c, restored=False)
        assert qemu_arm(compat) == "disabled"
    finally:
        run, lines = timeline.finish(build, "host")
    native_build_report(run, restored=True)
    check_timeline(lines, ("container", "host"), compat_program)
    no_lease_left(compat, module)


# ------------------------------------------------------------------ round trips, linux32

def counted_playbook(inventory, playbook, **kw):
    """remote.playbook with the module_count callback (tests/plugins/callback/module_count.py):
    returns (run, {host: {runs, modules, unknown}})."""
    fd, count_file = tempfile.mkstemp(prefix="arm64-module-count-", suffix=".json")
    os.close(fd)
    try:
        run = remote.playbook(inventory, playbook, extra_env={
            "ANSIBLE_CALLBACKS_ENABLED": "result_file,module_count",
            "NATIVEARM_MODULE_COUNT_FILE": count_file}, **kw)
        with open(count_file) as f:
            text = f.read()
    finally:
        os.unlink(count_file)
    assert text, "the module_count callback wrote nothing:\n" + run.stdout[-3000:]
    return run, json.loads(text)


@COMPAT
def test_wrapped_build_is_one_round_trip_and_sees_armv8l(inventory, compat, module):
    """A build wrapped by the native_armhf_build role costs one module execution on the host
    (the window opens, the build runs and the window closes inside it), and under linux32 the
    build's `uname -m` is armv8l, as armhf build systems expect."""
    run, counts = counted_playbook(inventory, WRAPPED_BUILD, limit="compat",
                                   extra_vars={"arm64_build_command": "uname -m"})
    assert run.returncode == 0, run.stdout[-3000:]
    report = _report(run)
    assert report["native"] is True and report["stdout"].strip() == "armv8l", report
    assert counts["compat"]["modules"] == ["nativearm.binfmt.native_armhf_command"], counts
    assert counts["compat"]["runs"] == 1 and counts["compat"]["unknown"] == [], counts
    no_lease_left(compat, module)


# ------------------------------------------------------------------ Armbian main's leftover

# What Armbian main's host preparation does on an aarch64 host for an armhf target (armbian/build
# lib/functions/rootfs/qemu-static.sh, written anew here): disable qemu-arm if it was enabled, run
# the armhf loader, and leave qemu-arm disabled when that succeeds (put it back only on failure).
ARMBIAN_PROBE = r"""
e=/proc/sys/fs/binfmt_misc/qemu-arm; was=
[ "$(head -n1 $e)" = enabled ] && was=1 && echo 0 > $e
if /usr/arm-linux-gnueabihf/lib/ld-linux-armhf.so.3 --help >/dev/null 2>&1; then
    echo native-left-disabled
else
    [ -n "$was" ] && echo 1 > $e; echo restored
fi
"""


@COMPAT
def test_armbian_probe_leftover_reported_by_check_then_fixed_in_one_round_trip_each(inventory, compat, module):
    assert compat.run(ARMBIAN_PROBE).stdout.strip() == "native-left-disabled"
    try:
        assert qemu_arm(compat) == "disabled"
        check, counts = counted_playbook(inventory, "nativearm.binfmt.remediate", check=True, limit="compat")
        assert check.returncode == 0, check.stdout[-3000:]
        assert qemu_arm(compat) == "disabled", "check mode changed the host"
        items = [i for i in drift_report(check)["drift"] if i.get("name") == "qemu-arm"]
        assert [i["kind"] for i in items] == ["enabled"], items    # to be enabled: it is disabled
        assert counts["compat"]["modules"] == ["nativearm.binfmt.binfmt_drift"], counts
        fix = remote.playbook(inventory, "nativearm.binfmt.remediate", limit="compat")
        assert fix.returncode == 0, fix.stdout[-3000:]
        assert qemu_arm(compat) == "enabled"
    finally:
        compat.run("echo 1 > %s" % QEMU_ARM)
    no_lease_left(compat, module)
