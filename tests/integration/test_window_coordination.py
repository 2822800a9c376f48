"""One window per binfmt_misc instance, shared with other coordinators, on the real kernel.

- two ``run_dir`` values on one instance, and a second mount namespace with its
  own tmpfs /run (a build container that sees the host's binfmt_misc): a native
  lease through one and an emulation lease through the other are never both
  admitted, and the entry ends in its prior state;
- Armbian PR #9769 builders (written here in shell with flock(1), as that PR
  does: LOCK_SH on the entry while building, first in disables, last out
  re-enables iff LOCK_EX|LOCK_NB succeeds), in both orders, the entry state
  asserted at every step.
"""
import json
import os
import select
import signal
import sys
import time

import pytest

from ansible_env import collections_path
from ansible_collections.nativearm.binfmt.plugins.module_utils import binfmt_misc as bm
from ansible_collections.nativearm.binfmt.plugins.module_utils import window as W

from window_support import (ENTRY, INNER_ENTRY, Builder, LineProcess, flock_entry, gone, kill_group, open_native,
                            register_qemu_arm, wait_for)


@pytest.fixture
def builders():
    started = []
    yield lambda inst: started.append(Builder(inst)) or started[-1]
    for b in started:
        b.kill()


def open_emulation(window, **kw):
    kw.setdefault("ttl", 120)
    return window.open("emulation", **kw)


def steady(host, state, times=20):
    """The entry reads ``state`` on every one of ``times`` looks over a few holder polls."""
    for dummy in range(times):
        assert host.entry() == state
        time.sleep(W.POLL / 2)


# ---------------------------------------------------------------------------
# PR #9769 builders
# ---------------------------------------------------------------------------

def test_builder_first_in_and_first_out(host, builders):
    before = host.inst.snapshot()
    b = builders(host.inst)
    assert host.entry() == "disabled"                     # its first-in disable
    a = open_native(host.window())
    # we join its window: the entry it found disabled is its doing, so the prior is "enabled"
    assert a["first"] and a["native"] and a["prior_state"] == "enabled"
    assert a["foreign_windows"]["native"]                 # the builder's shell, named
    assert host.entry() == "disabled"
    assert b.leave() == "kept"                            # our LOCK_SH: it is not last out
    steady(host, "disabled")                              # and it did not re-enable under us
    c = host.window().close(a["lease_id"])
    assert c["restored"] and host.entry() == "enabled"    # we are last out: we restore
    assert host.inst.snapshot() == before


def test_builder_first_in_we_finish_first(host, builders):
    before = host.inst.snapshot()
    b = builders(host.inst)
    a = open_native(host.window())
    assert a["prior_state"] == "enabled" and host.entry() == "disabled"
    c = host.window().close(a["lease_id"])
    # the builder still runs natively: the restore is deferred, qemu-arm stays disabled
    assert not c["restored"] and "deferred" in c["reason"] and host.entry() == "disabled"
    assert "restore_deferred" in [e["event"] for e in host.facts()["events"]]
    wait_for(lambda: gone(a["holder_pid"]))
    steady(host, "disabled")
    assert b.leave() == "restored"                        # it is last out: it re-enables
    assert host.entry() == "enabled"
    assert host.facts()["lease_count"] == 0 and host.facts()["prior_state"] is None
    assert host.inst.snapshot() == before


def test_ours_first_builder_joins_and_leaves_last(host, builders):
    before = host.inst.snapshot()
    a = open_native(host.window())
    assert a["first"] and a["prior_state"] == "enabled" and host.entry() == "disabled"
    b = builders(host.inst)                               # sees it disabled: writes nothing
    assert host.entry() == "disabled"
    c = host.window().close(a["lease_id"])
    assert not c["restored"] and host.entry() == "disabled"  # never re-enabled while it builds
    steady(host, "disabled")
    assert b.leave() == "restored"
    assert host.entry() == "enabled"
    assert host.inst.snapshot() == before


def test_ours_first_builder_leaves_first(host, builders):
    before = host.inst.snapshot()
    a = open_native(host.window())
    b = builders(host.inst)
    assert b.leave() == "kept" and host.entry() == "disabled"
    steady(host, "disabled")
    c = host.window().close(a["lease_id"])
    assert c["restored"] and host.entry() == "enabled"
    assert host.inst.snapshot() == before


def test_emulation_open_waits_for_a_builder_then_names_it(host, builders):
    before = host.inst.snapshot()
    b = builders(host.inst)
    t0 = time.time()
    with pytest.raises(W.WindowError) as err:
        open_emulation(host.window(), wait=1)
    assert time.time() - t0 >= 1
    assert "another coordinator" in err.value.message and "pr9769-builder" in err.value.message
    assert host.entry() == "disabled" and host.facts()["lease_count"] == 0
    assert b.leave() == "restored" and host.entry() == "enabled"
    e = open_emulation(host.window(), wait=1)
    assert e["mode"] == "emulation" and host.entry() == "enabled"
    host.window().close(e["lease_id"])
    assert host.inst.snapshot() == before


def test_emulation_lease_does_not_reenable_under_a_builder(host, builders):
    """A builder that arrives during an emulation lease disables qemu-arm (its protocol
    knows no emulation lease); the emulation holder does not fight it, and its lease
    holds no LOCK_SH, so the builder's own last-out re-enables."""
    before = host.inst.snapshot()
    e = open_emulation(host.window())
    assert host.entry() == "enabled"
    b = builders(host.inst)
    assert host.entry() == "disabled"
    wait_for(lambda: "reassert_deferred" in [ev["event"] for ev in host.facts()["events"]], timeout=5)
    steady(host, "disabled")
    assert b.leave() == "restored" and host.entry() == "enabled"
    c = host.window().close(e["lease_id"])
    assert c["restored"] and host.entry() == "enabled"
    assert host.inst.snapshot() == before


class LateBuilder(Builder):
    """A PR #9769 builder started at a chosen instant, not waited for: ``arrived`` returns
    once it is in (it said so: it took its LOCK_SH and looked at the entry) or waits for
    its LOCK_SH behind a LOCK_EX on the entry."""

    def __init__(self, inst):
        super().__init__(inst, wait_in=False)
        self.said_in = False

    def arrived(self, entry_path, timeout=10):
        end = time.time() + timeout
        while time.time() < end:
            if select.select([self.proc.stdout], [], [], 0.002)[0]:
                assert self.proc.stdout.readline().strip() == "in"
                self.said_in = True
                return "in"
            if any(h["blocked"] and h["access"] == "READ" for h in W.lock_holders_of(entry_path)):
                return "waiting"
        raise AssertionError("the builder neither got in nor waited for its lock")

    def settle(self):
        """Wait until it is in (after a wait for its lock)."""
        if not self.said_in:
            assert self.proc.stdout.readline().strip() == "in"
            self.said_in = True


@pytest.fixture
def builder_at_reenable(host, monkeypatch):
    """The next time this process writes ``enabled`` into the entry, a PR #9769 builder
    arrives first, at the worst instant: after every decision, just before the write.
    Yields the list that then holds it."""
    late = []
    real = W.Window._apply

    def _apply(self, enabled):
        if enabled and not late and self.entry_status()["enabled"] is False:
            late.append(LateBuilder(host.inst))
            late[0].arrived(os.path.join(host.path, ENTRY))
        return real(self, enabled)
    monkeypatch.setattr(W.Window, "_apply", _apply)
    yield late
    for b in late:
        b.kill()


def test_last_out_never_reenables_under_a_builder_arriving_meanwhile(host, builder_at_reenable):
    """The restore re-enables under our own LOCK_EX on the entry: a builder that arrives
    as it happens waits for its LOCK_SH, then finds qemu-arm enabled and disables it as
    first in, so it never builds with qemu-arm enabled."""
    before = host.inst.snapshot()
    a = open_native(host.window())
    c = host.window().close(a["lease_id"])
    b = builder_at_reenable[0]
    b.settle()
    assert c["restored"]
    assert host.entry() == "disabled"                     # its first-in disable: it builds natively
    steady(host, "disabled")
    assert b.leave() == "restored" and host.entry() == "enabled"
    assert host.inst.snapshot() == before


def test_emulation_reassert_never_reenables_under_a_builder_arriving_meanwhile(host, builder_at_reenable):
    before = host.inst.snapshot()
    e = open_emulation(host.window())
    os.kill(e["holder_pid"], signal.SIGSTOP)              # this test does the holder's re-assertion itself
    try:
        bm.set_enabled(ENTRY, False, host.path)           # Armbian main's probe: disables, never restores
        still_open, dummy, deferred = host.window().reassert(e["lease_id"], "emulation", host.ino())
        b = builder_at_reenable[0]
        b.settle()
        assert still_open and not deferred
        assert host.entry() == "disabled"                 # the builder's: not enabled under its build
    finally:
        os.kill(e["holder_pid"], signal.SIGCONT)
    wait_for(lambda: "reassert_deferred" in [ev["event"] for ev in host.facts()["events"]], timeout=5)
    steady(host, "disabled")
    assert b.leave() == "restored" and host.entry() == "enabled"
    steady(host, "enabled")
    c = host.window().close(e["lease_id"])
    assert c["restored"] and host.entry() == "enabled"
    assert host.inst.snapshot() == before


def _unprivileged_reader(host):
    """A uid-65534 ``flock -s`` on the entry (world-readable), once /proc/locks shows it
    granted; returns (its process, the pid holding the lock)."""
    proc = flock_entry(host.inst, "-s", seconds=60, uid=65534)

    def holder():
        return [h["pid"] for h in host.window().entry_lock_holders() if h["uid"] == 65534 and not h["blocked"]]
    wait_for(holder, timeout=5)
    return proc, holder()[0]


def test_unprivileged_shared_lock_does_not_keep_the_entry_disabled_and_is_reported(host):
    """Issue 11: our LOCK_EX|LOCK_NB for the last-out restore fails under an unprivileged
    LOCK_SH; /proc/locks and the owner's uid decide, not the flock result: the restore
    happens, on a close and on a holder's own end (ttl), and the lock holder is named
    (pid, uid, command line) in the close's result and in the restore event."""
    before = host.inst.snapshot()
    reader, pid = _unprivileged_reader(host)
    try:
        a = open_native(host.window())
        assert host.entry() == "disabled"
        c = host.window().close(a["lease_id"])
        assert c["restored"] and host.entry() == "enabled"
        ignored = c["lock_holders_ignored"]
        assert [(h["pid"], h["uid"], h["access"]) for h in ignored] == [(pid, 65534, "READ")]
        assert "sleep" in ignored[0]["cmdline"]
        assert "pid %d uid 65534" % pid in c["warning"] and "not obeyed" in c["warning"]
        ev = [e for e in host.facts()["events"] if e["event"] == "restored"][-1]
        assert "pid %d uid 65534" % pid in ev["detail"]
        b = open_native(host.window(), ttl=1)             # its holder ends it and restores
        assert host.entry() == "disabled"
        wait_for(lambda: host.entry() == "enabled", timeout=10)
        wait_for(lambda: gone(b["holder_pid"]), timeout=5)
        ev = [e for e in host.facts()["events"] if e["event"] == "restored"][-1]
        assert ev["lease"] == b["lease_id"] and "pid %d uid 65534" % pid in ev["detail"]
        assert host.facts()["lease_count"] == 0
    finally:
        kill_group(reader)
    assert host.inst.snapshot() == before


def test_unguarded_restore_never_reenables_under_a_builder_arriving_meanwhile(host, builder_at_reenable):
    """Issue 11: under an unprivileged LOCK_SH our LOCK_EX cannot be had, so it cannot keep
    a PR #9769 builder out while we restore. One that takes its LOCK_SH and reads
    ``disabled`` just before our write builds natively: the look after the write sees its
    root LOCK_SH and gives it the entry back, disabled (restore deferred)."""
    reader, dummy = _unprivileged_reader(host)
    try:
        a = open_native(host.window())
        c = host.window().close(a["lease_id"])
        b = builder_at_reenable[0]
        b.settle()
        assert not c["restored"] and "deferred" in c["reason"]
        assert host.entry() == "disabled"                 # it builds natively
        steady(host, "disabled")
        assert b.leave() == "kept"                        # PR #9769's last-out test fails under the reader
        assert host.entry() == "disabled"
        assert host.window().reenable() is None           # binfmt_drift's enable: the reader keeps nothing
        assert host.entry() == "enabled"
    finally:
        kill_group(reader)


# A PR #9769 builder's last-out test, run back to back at machine speed (its shell runs
# one per build; a fleet of them runs many): LOCK_EX|LOCK_NB on a fresh descriptor of the
# entry, and ``1`` written when it is had (no LOCK_SH on the entry: "nobody builds").
# Written through a descriptor of the inode it locked: the shell's ``echo 1 > entry``
# writes wherever the path points by then, so a shell preempted between its ``exec 8<``
# and its flock across a re-registration locks the old inode and re-enables the new
# one, which no lock on the new inode can prevent (a limit of that protocol, not ours).
LAST_OUT_LOOP = r"""
import fcntl, os, sys
entry = sys.argv[1]
print("spinning", flush=True)
while True:
    try:
        fd = os.open(entry, os.O_RDONLY)
    except OSError:
        continue
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        w = os.open(entry, os.O_WRONLY)
        if os.fstat(w).st_ino == os.fstat(fd).st_ino:
            os.write(w, b"1")
        os.close(w)
    except OSError:
        pass
    os.close(fd)
"""


def _readers(host, ino):
    """Pids holding a granted LOCK_SH (flock, READ) on inode ``ino`` of the instance."""
    st = os.stat(host.path)
    dev = (os.major(st.st_dev), os.minor(st.st_dev))
    with open("/proc/locks") as f:
        locks = W.parse_proc_locks(f.read())
    return [lk["pid"] for lk in locks if lk["dev"] == dev and lk["ino"] == ino and lk["kind"] == "FLOCK"
            and lk["access"] == "READ" and not lk["blocked"]]


def test_reregistered_entry_carries_our_shared_lock_before_it_reads_disabled(host, builders):
    """Issue 11: re-registered under a native lease (a new inode, enabled), the entry is
    disabled again by the holder's re-assertion, which moves its LOCK_SH to the new inode
    under the mutex *before* it writes 0. Taken after, a last out of another coordinator
    (here PR #9769's test, back to back) could find no LOCK_SH in between and re-enable
    while we run natively. Watched on every look: whenever the new inode reads disabled,
    the holder's LOCK_SH is on it, and it is never enabled again during the lease."""
    before = host.inst.snapshot()
    a = open_native(host.window())
    b = builders(host.inst)                               # joins: LOCK_SH on the first inode
    spinner = LineProcess(host.inst.nsenter([sys.executable, "-c", LAST_OUT_LOOP, INNER_ENTRY]))
    problems = []
    try:
        assert spinner.proc.stdout.readline().strip() == "spinning"
        for rnd in range(8):
            bm.unregister(ENTRY, host.path)
            register_qemu_arm(host.path)                  # what update-binfmts does: new inode, enabled
            new = host.ino()
            disabled_at = None
            end = time.time() + 10
            while time.time() < end:
                st = bm.entry_state(ENTRY, host.path)
                assert st["ino"] == new
                if not st["enabled"]:
                    if disabled_at is None:
                        disabled_at = time.time()
                        if a["holder_pid"] not in _readers(host, new):
                            problems.append("round %d: inode %d read disabled without our LOCK_SH on it"
                                            % (rnd, new))
                    elif time.time() - disabled_at > 6 * W.POLL:
                        break
                elif disabled_at is not None:
                    problems.append("round %d: re-enabled %.3f s into the re-asserted lease"
                                    % (rnd, time.time() - disabled_at))
                    break
            assert disabled_at is not None, "round %d: never re-asserted" % rnd
    finally:
        spinner.kill()
    assert not problems, problems
    events = [e["event"] for e in host.facts()["events"]]
    assert events.count("entry_recreated") + events.count("entry_appeared") == 8   # (seen absent in between)
    assert b.leave() == "kept"                            # its last out sees our LOCK_SH on the new inode
    steady(host, "disabled")
    c = host.window().close(a["lease_id"])
    assert c["restored"] and host.entry() == "enabled"
    assert host.inst.snapshot() == before


def _corrupt(window):
    with open(window.state_path, "w") as f:
        f.write('{"leases": null}')


def test_close_with_corrupt_records_defers_to_a_builder(host, builders):
    """Salvaging a close without records is a last-out restore like any other: with a
    PR #9769 builder still building it is deferred, and the builder's last out restores."""
    before = host.inst.snapshot()
    a = open_native(host.window())
    b = builders(host.inst)                               # joins: finds qemu-arm disabled, writes nothing
    _corrupt(host.window())
    with pytest.raises(W.WindowError, match="corrupt"):
        open_native(host.window(), wait=1)                # moves the records aside
    c = host.window().close(a["lease_id"])
    assert c["changed"] and not c["restored"] and "deferred" in c["warning"], c["warning"]
    assert gone(a["holder_pid"]) and host.entry() == "disabled"
    steady(host, "disabled")
    assert b.leave() == "restored" and host.entry() == "enabled"
    assert host.repair() == "records_repaired" and host.entry() == "enabled"
    assert host.inst.snapshot() == before


def test_binfmt_drift_repair_of_corrupt_records_defers_to_a_builder(host, builders):
    before = host.inst.snapshot()
    a = open_native(host.window())
    b = builders(host.inst)
    _corrupt(host.window())
    assert host.repair() == "records_repaired"
    assert gone(a["holder_pid"]) and host.entry() == "disabled"   # not re-enabled under the build
    repaired = host.facts()["events"][-1]
    assert repaired["event"] == "records_repaired" and "deferred" in repaired["detail"], repaired
    steady(host, "disabled")
    assert b.leave() == "restored" and host.entry() == "enabled"
    assert host.inst.snapshot() == before


# ---------------------------------------------------------------------------
# two run dirs on one instance
# ---------------------------------------------------------------------------

def test_two_run_dirs_native_first(host, tmp_path):
    before = host.inst.snapshot()
    other = W.Window(ENTRY, host.path, str(tmp_path / "other-run"))
    assert other.dir != host.window().dir
    a = open_native(host.window())
    assert host.entry() == "disabled"
    with pytest.raises(W.WindowError) as err:
        open_emulation(other, wait=1)
    assert "another coordinator" in err.value.message and "nativearm-window-holder" in err.value.message
    assert host.entry() == "disabled"
    b = open_native(other)                               # joins: its own records, prior "enabled"
    assert b["first"] and b["prior_state"] == "enabled" and a["holder_pid"] in b["foreign_windows"]["native"]
    c = host.window().close(a["lease_id"])
    assert not c["restored"] and host.entry() == "disabled"
    d = other.close(b["lease_id"])
    assert d["restored"] and host.entry() == "enabled"
    assert host.inst.snapshot() == before


def test_two_run_dirs_emulation_first(host, tmp_path):
    before = host.inst.snapshot()
    other = W.Window(ENTRY, host.path, str(tmp_path / "other-run"))
    e = open_emulation(host.window())
    with pytest.raises(W.WindowError) as err:
        open_native(other, wait=1, on_unsupported="fail")
    assert "emulation leases of another coordinator" in err.value.message
    assert host.entry() == "enabled"
    f = open_native(other, wait=1)                       # on_unsupported: emulate
    assert f["mode"] == "emulation" and f["native"] is False and "another coordinator" in f["reason"]
    assert f["foreign_windows"]["emulation"] == 1
    assert host.entry() == "enabled"
    host.window().close(e["lease_id"])
    assert host.entry() == "enabled"
    other.close(f["lease_id"])
    assert host.entry() == "enabled"
    a = open_native(other, wait=1, on_unsupported="fail")   # all gone: native again
    assert a["native"] and host.entry() == "disabled"
    other.close(a["lease_id"])
    assert host.inst.snapshot() == before


# ---------------------------------------------------------------------------
# a second mount namespace with its own /run (a build container)
# ---------------------------------------------------------------------------

CONTAINER_LEASE = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from ansible_collections.nativearm.binfmt.plugins.module_utils import window as W
mode, wait = sys.argv[2], float(sys.argv[3])
w = W.Window()                          # the defaults: /proc/sys/fs/binfmt_misc, /run/nativearm-binfmt
try:
    r = w.open(mode, probe=lambda: W.run_probe(["/bin/true"]), wait=wait, ttl=120, on_unsupported="fail")
except W.WindowError as exc:
    print(json.dumps({"error": exc.message}), flush=True)
    sys.exit(0)
print(json.dumps({"lease_id": r["lease_id"], "mode": r["mode"], "first": r["first"], "records": w.dir,
                  "prior_state": r["prior_state"], "holder_pid": r["holder_pid"]}), flush=True)
sys.stdin.readline()
c = w.close(r["lease_id"])
print(json.dumps({"restored": c["restored"], "reason": c["reason"]}), flush=True)
"""


class Container(LineProcess):
    """A lease opened in a new mount namespace of the sandbox with a fresh tmpfs on /run."""

    def __init__(self, inst, mode, wait=1):
        script = 'mount -t tmpfs nativearm-test-run /run && exec "$@"'
        super().__init__(inst.nsenter(["unshare", "-m", "sh", "-c", script, "container",
                                       sys.executable, "-c", CONTAINER_LEASE, collections_path(), mode, str(wait)]))
        self.opened = json.loads(self.proc.stdout.readline())

    def close(self):
        return json.loads(self.last_word("close"))


@pytest.fixture
def containers():
    started = []
    yield lambda *a, **kw: started.append(Container(*a, **kw)) or started[-1]
    for c in started:
        c.kill()


def test_container_with_its_own_run_native_first(host, containers):
    before = host.inst.snapshot()
    c = containers(host.inst, "native")
    assert c.opened.get("first") and c.opened["mode"] == "native", c.opened
    assert not c.opened["records"].startswith(host.run_dir)   # its records are in its own /run
    assert not os.path.exists(os.path.join(host.run_dir, os.path.basename(c.opened["records"]), "state-qemu-arm.json"))
    assert host.entry() == "disabled"
    with pytest.raises(W.WindowError) as err:
        open_emulation(host.window(), wait=1)
    assert "another coordinator" in err.value.message
    assert host.entry() == "disabled"
    a = open_native(host.window())                        # joins the container's window
    assert a["first"] and a["prior_state"] == "enabled"
    closed = c.close()
    assert not closed["restored"] and "deferred" in closed["reason"] and host.entry() == "disabled"
    assert host.window().close(a["lease_id"])["restored"] and host.entry() == "enabled"
    assert host.inst.snapshot() == before


def test_container_with_its_own_run_emulation_first(host, containers):
    before = host.inst.snapshot()
    e = open_emulation(host.window())
    c = containers(host.inst, "native")                   # on_unsupported: fail, wait 1 s
    assert "emulation leases of another coordinator" in c.opened.get("error", ""), c.opened
    assert host.entry() == "enabled"
    host.window().close(e["lease_id"])
    d = containers(host.inst, "emulation")
    assert d.opened.get("mode") == "emulation", d.opened
    f = open_native(host.window(), wait=1)                # emulates: the container's emulation lease
    assert f["mode"] == "emulation" and host.entry() == "enabled"
    d.close()
    assert host.entry() == "enabled"
    host.window().close(f["lease_id"])
    assert host.entry() == "enabled"
    assert host.inst.snapshot() == before
