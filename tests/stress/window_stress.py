"""Stress the native armhf window protocol on the real kernel.

N worker processes each run M open/close cycles in mixed modes against one
private binfmt_misc instance (with qemu-arm registered), holding each lease for
a few milliseconds; a fraction of the holders are SIGKILLed (then the lease is
either closed by its worker, which recovers it, or left stale for the next
caller). Invariants are checked two ways, independently of the protocol's own
bookkeeping:

- lock-free, by every worker while its lease is open: a native lease must see
  the entry disabled, an emulation lease enabled, on every read (I1, I2);
- by an observer process that repeatedly takes the mutex and compares the
  entry with the leases whose holders really hold their kernel lock: never
  both modes live, I1, I2, and no records => the entry is in its prior
  state (I3); a window whose leases are all dead is counted as stale (allowed
  until someone recovers it).

At the end, stale windows are recovered through window_facts (what binfmt_info
does) and the entry must equal its prior state with no lease and no holder
left. Prints cycles, kills, violations and the final vs the prior state.

``--run-dirs N`` spreads the workers over N run dirs (N coordinators of one
instance, each with its own records; the observer then checks each run dir's
leases against the entry). ``--builders N`` runs N Armbian PR #9769 builders
alongside (shell + flock(1): LOCK_SH on the entry while building, first in
disables, last out re-enables iff LOCK_EX|LOCK_NB succeeds); while "building"
each reads the entry and counts every ``enabled`` it sees as a violation (never
re-enabled under a native build). Such a builder takes no mutex and knows no
emulation lease, so one that arrives during an emulation lease disables the
entry, and its native window comes first (window.py, "Invariants"): an
emulation lease that sees ``disabled`` while a builder is in, or just left
(the entry is enabled again within a second, by the builder's last out or by
our holder's re-assertion), is counted apart (``emulation_under_builder``);
one that sees it with no builder about, or stays disabled, is a violation.

    python tests/stress/window_stress.py --workers 64 --cycles 2000 --kill-rate 0.05 --run-dirs 2 --builders 4

Runs as root (Linux >= 6.7). The machine's global binfmt_misc is never used. SIGINT, SIGTERM
or SIGHUP stop it cleanly: no builder shell, worker or holder is left running.
"""
import argparse
import contextlib
import json
import multiprocessing
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
sys.path.insert(0, TESTS)

from ansible_env import collections_path  # noqa: E402

sys.path.insert(0, collections_path())

from ansible_collections.nativearm.binfmt.plugins.module_utils import binfmt_misc as bm  # noqa: E402
from ansible_collections.nativearm.binfmt.plugins.module_utils import probe  # noqa: E402
from ansible_collections.nativearm.binfmt.plugins.module_utils import window as W  # noqa: E402
from ansible_collections.nativearm.binfmt.plugins.module_utils.presets import preset  # noqa: E402
from sandbox.instance import Instance  # noqa: E402
from sandbox.procs import processes_using  # noqa: E402

ENTRY = "qemu-arm"

# x86_64 CI: /bin/true stands in for an arm64 kernel with CONFIG_COMPAT, so the window's
# capability check is left to that probe (probe.CAPABILITY_ENV).
os.environ.setdefault(probe.CAPABILITY_ENV, "probe")


def _entry_enabled(path):
    """True/False, None when absent; one read, no lock."""
    try:
        with open(os.path.join(path, ENTRY), "rb") as f:
            return f.readline().strip() == b"enabled"
    except FileNotFoundError:
        return None


def _true_probe():
    return W.run_probe(["/bin/true"])


# A PR #9769 builder in a loop (seed 000), run inside the sandbox: $1 the entry, $2 a
# file whose existence stops it, $3 a file it appends one line per round to.
PR9769_BUILDER_LOOP = r"""
entry=$1; stop=$2; log=$3
while [ ! -e "$stop" ]; do
  exec 9<"$entry"
  flock -s 9
  if [ "$(head -n1 "$entry")" = enabled ]; then echo 0 > "$entry"; fi
  bad=0; i=0
  while [ $i -lt 30 ]; do
    [ "$(head -n1 "$entry")" = enabled ] && bad=$((bad+1))
    i=$((i+1))
  done
  exec 9<&-
  exec 8<"$entry"
  if flock -x -n 8; then echo 1 > "$entry"; out=restored; else out=kept; fi
  exec 8<&-
  echo "$bad $out" >> "$log"
  sleep 0.2         # builds come and go: emulation openers (which wait for them) get their turn
done
"""


def worker(index, path, run_dir, cycles, kill_rate, native_share, hold_ms, out, done=None, builders=0):
    try:
        _worker(index, path, run_dir, cycles, kill_rate, native_share, hold_ms, out, done, builders)
    except BaseException:
        import traceback
        stats = {"cycles": 0, "native": 0, "emulation": 0, "kills": 0, "left_stale": 0, "errors": 1,
                 "violations": 0, "checks": 0, "emulation_under_builder": 0, "open_ms": [], "close_ms": [],
                 "messages": ["worker %d crashed: %s" % (index, traceback.format_exc()[-800:])]}
        out.put((index, stats))


def _worker(index, path, run_dir, cycles, kill_rate, native_share, hold_ms, out, done=None, builders=0):
    rnd = random.Random(index * 7919 + int(time.time()))
    w = W.Window(ENTRY, path, run_dir)
    stats = {"cycles": 0, "native": 0, "emulation": 0, "kills": 0, "left_stale": 0, "errors": 0,
             "violations": 0, "checks": 0, "emulation_under_builder": 0, "open_ms": [], "close_ms": [],
             "messages": []}
    for dummy in range(cycles):
        mode = "native" if rnd.random() < native_share else "emulation"
        t0 = time.time()
        try:
            lease = w.open(mode, probe=_true_probe, wait=120, ttl=600, on_unsupported="fail")
        except W.WindowError as exc:
            stats["errors"] += 1
            if len(stats["messages"]) < 3:
                stats["messages"].append(exc.message[:300])
            continue
        stats["open_ms"].append((time.time() - t0) * 1000)
        stats[mode] += 1
        want = W.desired_enabled(mode)
        end = time.time() + rnd.uniform(0, hold_ms) / 1000.0
        while True:                            # lock-free I1/I2 checks while the lease is open
            seen = _entry_enabled(path)
            stats["checks"] += 1
            if seen is False and mode == "emulation" and builders and (_builder_in(w, path) or _settled(w, path)):
                stats["emulation_under_builder"] += 1     # a PR #9769 builder disabled it (no mutex)
            elif seen is not None and seen != want:
                stats["violations"] += 1
                if len(stats["messages"]) < 3:
                    stats["messages"].append("worker %d: %s lease %s saw the entry %s"
                                             % (index, mode, lease["lease_id"], seen))
            if time.time() >= end:
                break
            time.sleep(0.001)
        if rnd.random() < kill_rate:
            os.kill(lease["holder_pid"], signal.SIGKILL)
            stats["kills"] += 1
            if rnd.random() < 0.5:
                stats["left_stale"] += 1         # the next caller must recover it
                stats["cycles"] += 1
                _count(done)
                continue
        t1 = time.time()
        try:
            w.close(lease["lease_id"], wait=120)
        except W.WindowError as exc:
            stats["errors"] += 1
            if len(stats["messages"]) < 3:
                stats["messages"].append(exc.message[:300])
        stats["close_ms"].append((time.time() - t1) * 1000)
        stats["cycles"] += 1
        _count(done)
    out.put((index, stats))


def _builder_in(w, path):
    """A native window of another coordinator holds the entry (root LOCK_SH not ours)."""
    state = w.load(move=False)
    return bool(W.instance.look(os.path.join(path, ENTRY), os.path.join(path, "register"),
                                [r["pid"] for r in state["leases"].values()])["native"])


def _settled(w, path, timeout=1.0):
    """With PR #9769 builders about: True once the entry is enabled or a builder is in
    (a native window of another coordinator) within ``timeout``."""
    end = time.time() + timeout
    while time.time() < end:
        if _entry_enabled(path) is not False or _builder_in(w, path):
            return True
        time.sleep(0.005)
    return False


def _count(done):
    """One more cycle finished, for the progress lines."""
    if done is not None:
        with done.get_lock():
            done.value += 1


def observer(path, run_dirs, prior, stop, out, builders=0):
    windows = [W.Window(ENTRY, path, run_dir) for run_dir in run_dirs]
    w = windows[0]
    stats = {"checks": 0, "violations": 0, "stale_seen": 0, "messages": []}

    def bad(text):
        stats["violations"] += 1
        if len(stats["messages"]) < 5:
            stats["messages"].append(text)
    while not stop.is_set():
        try:
            w.acquire()
        except W.WindowError:
            continue
        try:            # the instance mutex: every run dir's transitions wait for it
            states = [x.load() for x in windows]
            live = [r["mode"] for x, state in zip(windows, states) for r in state["leases"].values()
                    if x.lease_alive(r)]
            enabled = _entry_enabled(path)
            stats["checks"] += 1
            if "native" in live and "emulation" in live:
                bad("native and emulation leases live together")
            if "native" in live and enabled is not False:
                bad("I1: native lease live, entry %s" % enabled)
            no_window = all(not state["leases"] and state.get("prior") is None for state in states)
            if not builders:
                if "emulation" in live and enabled is not True:
                    bad("I2: emulation lease live, entry %s" % enabled)
                if no_window and enabled != prior:
                    bad("I3: no lease recorded, entry %s, prior %s" % (enabled, prior))
            elif ("emulation" in live or no_window) and enabled is False and not _settled(w, path):
                # a PR #9769 builder takes no mutex: between its LOCK_SH release and its
                # re-enable the entry is disabled with no window; that passes within its
                # last-out step, while we hold the mutex (none of ours can write)
                bad("%s: entry disabled with no native window of any coordinator"
                    % ("I2" if "emulation" in live else "I3"))
        finally:
            w.release()
        if any(state["leases"] for state in states) and not live:
            stats["stale_seen"] += 1
        time.sleep(0.01)
    out.put(("observer", stats))


def pct(values, p):
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100.0 * (len(values) - 1))))]


class Interrupted(Exception):
    """SIGTERM or SIGHUP reached the stress run (main() turns them into this)."""


def _interrupted(signum, frame):
    raise Interrupted("signal %d" % signum)


@contextlib.contextmanager
def _cleanup():
    """Yields a dict the run fills with what it starts; on the way out, however the
    run ends (done, an error, SIGINT, SIGTERM), stops whatever of it still runs:
    the PR #9769 builder shells (each leads its own process group: the flock, head
    and sleep it runs go with it; else they keep looping, a stop file never comes),
    workers and the observer, and lease holders of the run dirs; then removes the run dirs."""
    started = {"shells": [], "procs": [], "dirs": [], "stopfile": None}
    try:
        yield started
    finally:
        for shell in started["shells"]:
            if shell.poll() is None:
                try:
                    os.killpg(shell.pid, signal.SIGKILL)
                except OSError:
                    pass
            shell.wait()
        for p in started["procs"]:
            if p.pid is not None and p.is_alive():
                p.kill()
                p.join()
        for d in started["dirs"]:
            for pid in processes_using(d):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            shutil.rmtree(d, ignore_errors=True)


def run(workers=8, cycles=25, kill_rate=0.05, native_share=0.7, hold_ms=20, prior_enabled=True,
        verbose=True, progress=30.0, run_dirs=1, builders=0):
    """Run one stress round; returns the summary dict (``ok`` says all is well)."""
    ctx = multiprocessing.get_context("fork")
    started = time.time()
    with Instance() as inst, _cleanup() as mine:
        run_dir = tempfile.mkdtemp(prefix="nativearm-stress-")
        dirs = [run_dir] + [tempfile.mkdtemp(prefix="nativearm-stress-") for dummy in range(run_dirs - 1)]
        mine["dirs"] = dirs
        magic, mask, offset = preset("arm")
        bm.register(bm.make_definition(ENTRY, "/usr/bin/qemu-arm-static", magic=magic, mask=mask,
                                       offset=offset, flags="F"), inst.path)
        if not prior_enabled:
            bm.set_enabled(ENTRY, False, inst.path)
        prior = _entry_enabled(inst.path)
        out = ctx.Queue()
        stop = ctx.Event()
        obs = ctx.Process(target=observer, args=(inst.path, dirs, prior, stop, out, builders))
        mine["procs"].append(obs)
        obs.start()
        stopfile = os.path.join(run_dir, "builders.stop")
        logs = [os.path.join(run_dir, "builder-%d.log" % i) for i in range(builders)]
        shells = mine["shells"]
        for log in logs:
            shells.append(subprocess.Popen(inst.nsenter(["sh", "-c", PR9769_BUILDER_LOOP, "pr9769-builder",
                                                         "/proc/sys/fs/binfmt_misc/" + ENTRY, stopfile, log]),
                                           start_new_session=True))
        done = ctx.Value("l", 0)
        procs = [ctx.Process(target=worker, args=(i, inst.path, dirs[i % len(dirs)], cycles, kill_rate,
                                                  native_share, hold_ms, out, done, builders))
                 for i in range(workers)]
        mine["procs"].extend(procs)
        for p in procs:
            p.start()
        results = {}
        while len(results) < workers:
            try:
                key, stats = out.get(timeout=progress)
            except queue.Empty:
                if verbose:
                    print("progress: %.0f s, %d of %d cycles done, %d workers finished, load %s"
                          % (time.time() - started, done.value, workers * cycles, len(results),
                             " ".join("%.2f" % x for x in os.getloadavg())), flush=True)
                continue
            results[key] = stats
        for p in procs:
            p.join()
        with open(stopfile, "w"):
            pass
        for shell in shells:
            shell.wait()
        stop.set()
        key, obs_stats = out.get()
        obs.join()
        rounds = []
        for log in logs:
            with open(log) as f:
                rounds.extend(line.split() for line in f if line.strip())
        builder_violations = sum(int(r[0]) for r in rounds)
        # what binfmt_drift does: recover windows left stale by killed holders
        restored = False
        for d in dirs:
            restored = W.Window(ENTRY, inst.path, d).repair() == "restored" or restored
            facts = W.window_facts(ENTRY, inst.path, d)
        final = _entry_enabled(inst.path)
        leftover = [pid for d in dirs for pid in processes_using(d)]
        events = facts.get("events") or []
        for pid in leftover:
            os.kill(pid, signal.SIGKILL)
    total = dict((k, sum(s[k] for s in results.values()))
                 for k in ("cycles", "native", "emulation", "kills", "left_stale", "errors",
                           "violations", "checks", "emulation_under_builder"))
    open_ms = [v for s in results.values() for v in s["open_ms"]]
    close_ms = [v for s in results.values() for v in s["close_ms"]]
    summary = dict(total)
    summary.update({
        "workers": workers, "cycles_per_worker": cycles, "kill_rate": kill_rate,
        "worker_violations": total["violations"], "observer_checks": obs_stats["checks"],
        "observer_violations": obs_stats["violations"], "stale_windows_seen": obs_stats["stale_seen"],
        "violations": total["violations"] + obs_stats["violations"] + builder_violations,
        "run_dirs": len(dirs), "builders": builders, "builder_rounds": len(rounds),
        "builder_violations": builder_violations,
        "builder_restores": sum(1 for r in rounds if r[1] == "restored"),
        "prior": _name(prior), "final": _name(final), "final_leases": facts.get("lease_count"),
        "restored_at_end": restored, "leftover_holders": len(leftover),
        "open_ms_p50": round(pct(open_ms, 50), 1), "open_ms_p99": round(pct(open_ms, 99), 1),
        "close_ms_p50": round(pct(close_ms, 50), 1), "close_ms_p99": round(pct(close_ms, 99), 1),
        "seconds": round(time.time() - started, 1),
        "messages": [m for s in results.values() for m in s["messages"]][:5] + obs_stats["messages"],
        "last_events": [e["event"] for e in events[-5:]],
        "last_details": [e.get("detail") for e in events[-3:]],
    })
    summary["ok"] = (summary["violations"] == 0 and final == prior and summary["final_leases"] == 0
                     and not leftover and summary["cycles"] == workers * cycles - 0 * 0
                     and summary["errors"] == 0)
    if verbose:
        print(json.dumps(summary, indent=1, sort_keys=True))
    return summary


def _name(enabled):
    return {True: "enabled", False: "disabled", None: "absent"}[enabled]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--cycles", type=int, default=25, help="open/close cycles per worker")
    ap.add_argument("--kill-rate", type=float, default=0.05, help="share of holders SIGKILLed")
    ap.add_argument("--native-share", type=float, default=0.7, help="share of native opens")
    ap.add_argument("--hold-ms", type=float, default=20, help="max time a lease is held")
    ap.add_argument("--prior", choices=["enabled", "disabled"], default="enabled")
    ap.add_argument("--run-dirs", type=int, default=1, help="coordinators (run dirs) the workers are spread over")
    ap.add_argument("--builders", type=int, default=0,
                    help="Armbian PR #9769 shell builders looping alongside (needs --prior enabled)")
    args = ap.parse_args(argv)
    if args.builders and args.prior != "enabled":
        ap.error("--builders: PR #9769 builders always re-enable qemu-arm; use --prior enabled")
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupted)
    try:
        summary = run(args.workers, args.cycles, args.kill_rate, args.native_share, args.hold_ms,
                      args.prior == "enabled", run_dirs=max(1, args.run_dirs), builders=args.builders)
    except (Interrupted, KeyboardInterrupt) as exc:
        print("interrupted (%s): builders, workers and holders stopped" % (str(exc) or "SIGINT"), flush=True)
        return 130
    print("cycles %d (native %d, emulation %d), kills %d, violations %d, errors %d, final %s vs prior %s: %s"
          % (summary["cycles"], summary["native"], summary["emulation"], summary["kills"],
             summary["violations"], summary["errors"], summary["final"], summary["prior"],
             "OK" if summary["ok"] else "FAILED"))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
