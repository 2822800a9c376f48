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

    python tests/stress/window_stress.py --workers 64 --cycles 2000 --kill-rate 0.05

Runs as root (Linux >= 6.7). The machine's global binfmt_misc is never used.
"""
import argparse
import json
import multiprocessing
import os
import queue
import random
import signal
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
sys.path.insert(0, TESTS)

from ansible_env import collections_path  # noqa: E402

sys.path.insert(0, collections_path())

from ansible_collections.nativearm.binfmt.plugins.module_utils import binfmt_misc as bm  # noqa: E402
from ansible_collections.nativearm.binfmt.plugins.module_utils import window as W  # noqa: E402
from ansible_collections.nativearm.binfmt.plugins.module_utils.presets import preset  # noqa: E402
from sandbox.instance import Instance  # noqa: E402
from sandbox.procs import processes_using  # noqa: E402

ENTRY = "qemu-arm"

# x86_64 CI: /bin/true stands in for an arm64 kernel with CONFIG_COMPAT, so the window's
# capability check is left to that probe (window.CAPABILITY_ENV).
os.environ.setdefault(W.CAPABILITY_ENV, "probe")


def _entry_enabled(path):
    """True/False, None when absent; one read, no lock."""
    try:
        with open(os.path.join(path, ENTRY), "rb") as f:
            return f.readline().strip() == b"enabled"
    except FileNotFoundError:
        return None


def _true_probe():
    return W.run_probe(["/bin/true"])


def worker(index, path, run_dir, cycles, kill_rate, native_share, hold_ms, out, done=None):
    try:
        _worker(index, path, run_dir, cycles, kill_rate, native_share, hold_ms, out, done)
    except BaseException:
        import traceback
        stats = {"cycles": 0, "native": 0, "emulation": 0, "kills": 0, "left_stale": 0, "errors": 1,
                 "violations": 0, "checks": 0, "open_ms": [], "close_ms": [],
                 "messages": ["worker %d crashed: %s" % (index, traceback.format_exc()[-800:])]}
        out.put((index, stats))


def _worker(index, path, run_dir, cycles, kill_rate, native_share, hold_ms, out, done=None):
    rnd = random.Random(index * 7919 + int(time.time()))
    w = W.Window(ENTRY, path, run_dir)
    stats = {"cycles": 0, "native": 0, "emulation": 0, "kills": 0, "left_stale": 0, "errors": 0,
             "violations": 0, "checks": 0, "open_ms": [], "close_ms": [], "messages": []}
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
            if seen is not None and seen != want:
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


def _count(done):
    """One more cycle finished, for the progress lines."""
    if done is not None:
        with done.get_lock():
            done.value += 1


def observer(path, run_dir, prior, stop, out):
    w = W.Window(ENTRY, path, run_dir)
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
        try:
            state = w.load()
            live = [r["mode"] for r in state["leases"].values() if w.lease_alive(r)]
            enabled = _entry_enabled(path)
        finally:
            w.release()
        stats["checks"] += 1
        if "native" in live and "emulation" in live:
            bad("native and emulation leases live together")
        if "native" in live and enabled is not False:
            bad("I1: native lease live, entry %s" % enabled)
        if "emulation" in live and enabled is not True:
            bad("I2: emulation lease live, entry %s" % enabled)
        if not state["leases"] and state.get("prior") is None and enabled != prior:
            bad("I3: no lease recorded, entry %s, prior %s" % (enabled, prior))
        if state["leases"] and not live:
            stats["stale_seen"] += 1
        time.sleep(0.01)
    out.put(("observer", stats))


def pct(values, p):
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100.0 * (len(values) - 1))))]


def run(workers=8, cycles=25, kill_rate=0.05, native_share=0.7, hold_ms=20, prior_enabled=True,
        verbose=True, progress=30.0):
    """Run one stress round; returns the summary dict (``ok`` says all is well)."""
    ctx = multiprocessing.get_context("fork")
    started = time.time()
    with Instance() as inst:
        run_dir = tempfile.mkdtemp(prefix="nativearm-stress-")
        magic, mask, offset = preset("arm")
        bm.register(bm.make_definition(ENTRY, "/usr/bin/qemu-arm-static", magic=magic, mask=mask,
                                       offset=offset, flags="F"), inst.path)
        if not prior_enabled:
            bm.set_enabled(ENTRY, False, inst.path)
        prior = _entry_enabled(inst.path)
        out = ctx.Queue()
        stop = ctx.Event()
        obs = ctx.Process(target=observer, args=(inst.path, run_dir, prior, stop, out))
        obs.start()
        done = ctx.Value("l", 0)
        procs = [ctx.Process(target=worker, args=(i, inst.path, run_dir, cycles, kill_rate, native_share,
                                                  hold_ms, out, done)) for i in range(workers)]
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
        stop.set()
        key, obs_stats = out.get()
        obs.join()
        # what binfmt_info does: recover windows left stale by killed holders
        facts, restored = W.window_facts(ENTRY, inst.path, run_dir, repair=True)
        final = _entry_enabled(inst.path)
        leftover = processes_using(run_dir)
        events = facts.get("events") or []
        for pid in leftover:
            os.kill(pid, signal.SIGKILL)
    total = dict((k, sum(s[k] for s in results.values()))
                 for k in ("cycles", "native", "emulation", "kills", "left_stale", "errors",
                           "violations", "checks"))
    open_ms = [v for s in results.values() for v in s["open_ms"]]
    close_ms = [v for s in results.values() for v in s["close_ms"]]
    summary = dict(total)
    summary.update({
        "workers": workers, "cycles_per_worker": cycles, "kill_rate": kill_rate,
        "worker_violations": total["violations"], "observer_checks": obs_stats["checks"],
        "observer_violations": obs_stats["violations"], "stale_windows_seen": obs_stats["stale_seen"],
        "violations": total["violations"] + obs_stats["violations"],
        "prior": _name(prior), "final": _name(final), "final_leases": facts.get("lease_count"),
        "restored_at_end": restored, "leftover_holders": len(leftover),
        "open_ms_p50": round(pct(open_ms, 50), 1), "open_ms_p99": round(pct(open_ms, 99), 1),
        "close_ms_p50": round(pct(close_ms, 50), 1), "close_ms_p99": round(pct(close_ms, 99), 1),
        "seconds": round(time.time() - started, 1),
        "messages": [m for s in results.values() for m in s["messages"]][:5] + obs_stats["messages"],
        "last_events": [e["event"] for e in events[-5:]],
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
    args = ap.parse_args(argv)
    summary = run(args.workers, args.cycles, args.kill_rate, args.native_share, args.hold_ms,
                  args.prior == "enabled")
    print("cycles %d (native %d, emulation %d), kills %d, violations %d, errors %d, final %s vs prior %s: %s"
          % (summary["cycles"], summary["native"], summary["emulation"], summary["kills"],
             summary["violations"], summary["errors"], summary["final"], summary["prior"],
             "OK" if summary["ok"] else "FAILED"))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
