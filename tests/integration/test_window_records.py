"""The window's records fail closed, on the real kernel (private binfmt_misc instances).

- a full or nearly full run_dir (a tiny tmpfs mounted in the sandbox's mount
  namespace): opens and closes succeed with whole records or fail cleanly;
- corrupt records of every shape: moved aside, opens refuse naming the file
  and binfmt_drift, closes still restore, holders end touching nothing, and
  binfmt_drift's repair makes the entry and the records right again;
- run_dir safety: an existing directory is never chmodded, record fields
  never name a path outside the instance dir, pids are signalled only with
  their start time.
"""
import json
import os
import signal
import stat
import subprocess

import pytest

from ansible_collections.nativearm.binfmt.plugins.module_utils import window as W

from window_support import ENTRY, Host, gone, open_native, true_probe, wait_for


def leftovers(directory):
    return [n for n in os.listdir(directory) if ".tmp." in n]


# ---------------------------------------------------------------------------
# a full run_dir
# ---------------------------------------------------------------------------

@pytest.fixture
def tiny(instance, tmp_path):
    """A 64 KiB tmpfs (mode 0700) mounted in the sandbox's mount namespace, as a run_dir
    seen from here through /proc/PID/root; fill(free) leaves ``free`` bytes."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = instance.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(mnt)])
    assert r.returncode == 0, r.stderr
    path = "/proc/%d/root%s" % (instance.pid, mnt)
    assert os.statvfs(path).f_blocks * os.statvfs(path).f_frsize == 64 * 1024
    host = Host(instance, path)

    def fill(free):
        filler = os.path.join(path, "filler")
        with open(filler, "ab") as f:
            while True:
                st = os.statvfs(path)
                room = st.f_bavail * st.f_frsize
                if room <= free:
                    break
                try:
                    f.write(b"x" * min(room - free, 4096))
                    f.flush()
                except OSError:
                    break
        return filler
    host.fill = fill
    yield host
    host.close()


def test_full_run_dir_open_fails_cleanly_and_changes_nothing(tiny):
    tiny.window().ensure_dirs()
    tiny.fill(0)
    before = tiny.inst.snapshot()
    with pytest.raises(W.WindowError) as err:
        open_native(tiny.window(), wait=2)
    assert "no space left" in err.value.message and "run_dir" in err.value.message, err.value.message
    assert "Traceback" not in err.value.message
    assert tiny.inst.snapshot() == before and tiny.entry() == "enabled"
    assert not os.path.exists(tiny.window().state_path) and leftovers(tiny.window().dir) == []
    wait_for(lambda: W.lock_holders_of(os.path.join(tiny.path, ENTRY)) == [])   # its holder is gone


def test_one_free_page_open_fails_cleanly(tiny):
    """The first version of the records (prior + lease) fits in the last page, the next one
    (after the probe, the entry disabled) cannot be written beside it, nor can the version
    without the lease: the open kills its holder, puts the entry back and, as there were no
    records before it, removes the ones it wrote. The host is as it was."""
    tiny.window().ensure_dirs()
    tiny.fill(4096)
    before = tiny.inst.snapshot()
    seen = []

    def watched_probe():
        seen.append(tiny.entry())
        return true_probe()
    with pytest.raises(W.WindowError) as err:
        open_native(tiny.window(), wait=2, probe=watched_probe)
    assert seen == ["disabled"]                        # the fault came after the entry was disabled
    assert "no space left" in err.value.message and "the entry is enabled" in err.value.message
    assert tiny.inst.snapshot() == before and tiny.entry() == "enabled" and leftovers(tiny.window().dir) == []
    assert not os.path.exists(tiny.window().state_path)
    assert [n for n in os.listdir(tiny.window().dir) if n.startswith("lease-")] == []
    assert W.lock_holders_of(os.path.join(tiny.path, ENTRY)) == []     # its holder was killed and reaped
    facts = tiny.facts()
    assert facts["corrupt"] is None and facts["lease_count"] == 0 and facts["prior_state"] is None


def test_full_under_an_open_window_joiner_refused_close_restores_and_says_so(tiny):
    tiny.window().ensure_dirs()
    filler = tiny.fill(8192)
    a = open_native(tiny.window(), wait=2)
    assert a["first"] and tiny.entry() == "disabled"
    tiny.fill(0)
    records = open(tiny.window().state_path).read()
    with pytest.raises(W.WindowError, match="no space left") as err:
        open_native(tiny.window(), wait=2)                              # the joiner cannot record itself
    assert "the entry is disabled" in err.value.message
    assert tiny.entry() == "disabled"                  # I1: a is still open
    assert open(tiny.window().state_path).read() == records and leftovers(tiny.window().dir) == []
    assert tiny.facts()["lease_count"] == 1 and tiny.facts()["leases"][0]["alive"]
    c = tiny.window().close(a["lease_id"])             # cannot save, still restores, and says so
    assert c["restored"] and "no space left" in c["warning"] and "put back" in c["warning"]
    assert tiny.entry() == "enabled"
    wait_for(lambda: gone(a["holder_pid"]))
    os.unlink(filler)
    assert tiny.repair() == "restored"                 # the records catch up with the entry
    assert tiny.entry() == "enabled" and tiny.facts()["lease_count"] == 0
    b = open_native(tiny.window(), wait=2)
    assert b["first"] and b["prior_state"] == "enabled"
    assert tiny.window().close(b["lease_id"])["restored"] and tiny.entry() == "enabled"


# ---------------------------------------------------------------------------
# corrupt records
# ---------------------------------------------------------------------------

def _no_pid(state):
    state["waiters"]["w-1"] = {"mode": "emulation", "seq": 1}
    return json.dumps(state)


def _version(state):
    state["version"] = 99
    return json.dumps(state)


SHAPES = {
    "string": lambda state: '"x"',
    "leases_null": lambda state: '{"leases": null}',
    "waiter_without_pid": _no_pid,
    "truncated": lambda state: json.dumps(state)[:57],
    "wrong_version": _version,
    "lock_outside": None,        # see test_lock_outside_the_instance_dir_is_never_touched
}


@pytest.mark.parametrize("shape", [s for s in SHAPES if SHAPES[s]])
def test_corrupt_records_fail_closed_then_binfmt_drift_repairs(host, shape):
    a = open_native(host.window(), wait=2)
    w = host.window()
    with open(w.state_path) as f:
        state = json.load(f)
    with open(w.state_path, "w") as f:
        f.write(SHAPES[shape](state))
    assert host.facts()["corrupt"]["path"] == w.state_path          # reported, not moved, by facts
    with pytest.raises(W.WindowError) as err:                       # opens refuse, naming file and fix
        open_native(host.window(), wait=2)
    msg = err.value.message
    assert "corrupt" in msg and w.state_path in msg and "binfmt_drift" in msg, msg
    (aside,) = [n for n in os.listdir(w.dir) if ".corrupt-" in n]
    assert aside.startswith("state-%s.json.corrupt-" % ENTRY) and not os.path.exists(w.state_path)
    assert host.entry() == "disabled"                               # the refused open touched nothing
    wait_for(lambda: gone(a["holder_pid"]), timeout=5)              # the holder saw its records go ...
    assert host.entry() == "disabled"                               # ... and ended touching nothing
    c = w.close(a["lease_id"])                                      # closes still restore
    assert c["changed"] and c["restored"] and "binfmt_drift" in c["warning"], c
    assert host.entry() == "enabled"
    with pytest.raises(W.WindowError, match="not yet repaired"):
        open_native(host.window(), wait=2)
    assert host.facts()["corrupt"] is not None
    assert host.repair() == "records_repaired"
    facts = host.facts()
    assert facts["corrupt"] is None and facts["events"][-1]["event"] == "records_repaired"
    assert [n for n in os.listdir(w.dir) if ".corrupt-" in n] == []
    b = open_native(host.window(), wait=2)
    assert b["first"] and b["prior_state"] == "enabled" and host.entry() == "disabled"
    assert w.close(b["lease_id"])["restored"] and host.entry() == "enabled"


def test_corrupt_records_close_ends_a_live_holder_and_restores_the_recorded_prior(instance, tmp_path):
    host = Host(instance, tmp_path / "run", enabled=False)           # an admin disabled qemu-arm
    try:
        e = host.window().open("emulation", ttl=120)
        assert host.entry() == "enabled"
        w = host.window()
        state = json.load(open(w.state_path))
        with open(w.state_path, "w") as f:
            f.write(_version(state))                                 # still shows prior: disabled
        with pytest.raises(W.WindowError, match="corrupt"):
            w.open("emulation", ttl=120, wait=1)                      # moves it aside
        c = w.close(e["lease_id"])                                    # before the holder noticed
        assert c["restored"] and "prior state disabled" in c["warning"], c["warning"]
        assert gone(e["holder_pid"]) and host.entry() == "disabled"
    finally:
        host.close()


def test_lock_outside_the_instance_dir_is_never_touched(host):
    a = open_native(host.window(), wait=2)
    w = host.window()
    victim = os.path.join(os.path.dirname(host.run_dir), "x")       # instance dir + ../../x
    with open(victim, "w") as f:
        f.write("keep")
    assert os.path.realpath(os.path.join(w.dir, "../../x")) == os.path.realpath(victim)
    state = json.load(open(w.state_path))
    state["leases"][a["lease_id"]]["lock"] = "../../x"
    with open(w.state_path, "w") as f:
        json.dump(state, f)
    assert not w.lease_alive({"lock": "../../x"})
    w._drop_lock_file({"lock": "../../x"})
    with pytest.raises(W.WindowError, match="lock '../../x'"):
        open_native(host.window(), wait=2)
    assert host.repair() == "records_repaired" and host.entry() == "enabled"
    assert open(victim).read() == "keep"


# ---------------------------------------------------------------------------
# run_dir and pids
# ---------------------------------------------------------------------------

def test_existing_run_like_run_dir_is_not_chmodded(instance, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    os.chmod(str(run), 0o755)                                        # like /run
    host = Host(instance, run)
    try:
        a = open_native(host.window(), wait=2)
        assert stat.S_IMODE(os.stat(str(run)).st_mode) == 0o755
        assert stat.S_IMODE(os.stat(host.window().dir).st_mode) == 0o700
        host.window().close(a["lease_id"])
        os.chmod(str(run), 0o775)                                    # group-writable: refused, left alone
        with pytest.raises(W.WindowError, match=r"run_dir: .* writable .*chmod 0700"):
            open_native(host.window(), wait=2)
        assert stat.S_IMODE(os.stat(str(run)).st_mode) == 0o775
    finally:
        host.close()


def test_symlinked_run_dir_is_refused(instance, tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    host = Host(instance, link)
    before = instance.snapshot()
    with pytest.raises(W.WindowError, match="run_dir: .*symlink"):
        open_native(host.window(), wait=2)
    assert os.listdir(str(real)) == [] and instance.snapshot() == before


def test_signal_only_the_process_that_started_then():
    proc = subprocess.Popen(["sleep", "60"])
    try:
        start = W.proc_start_time(proc.pid)
        assert not W.signal_pid(proc.pid, start + 1, signal.SIGTERM)   # another process's start time
        assert proc.poll() is None
        assert W.signal_pid(proc.pid, start, signal.SIGTERM)
        assert proc.wait(5) == -signal.SIGTERM
    finally:
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------------------
# entry writes land on binfmt_misc
# ---------------------------------------------------------------------------

def test_look_alike_binfmt_misc_with_a_symlinked_entry_is_refused(tmp_path):
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "status").write_text("enabled\n")
    (fake / "register").write_text("")
    victim = tmp_path / "victim"
    victim.write_text("enabled\n")
    (fake / ENTRY).symlink_to(victim)
    run = tmp_path / "run"
    for mode in ("native", "emulation"):
        with pytest.raises(W.WindowError, match="binfmt_misc: .*not a binfmt_misc filesystem"):
            W.Window(ENTRY, str(fake), str(run)).open(mode, probe=true_probe, ttl=10, wait=1)
    assert victim.read_text() == "enabled\n" and not run.exists()
    assert "not a binfmt_misc filesystem" in W.window_facts(ENTRY, str(fake), str(run))["error"]
    assert victim.read_text() == "enabled\n"
