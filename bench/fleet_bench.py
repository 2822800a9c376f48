"""Fleet benchmark: how the collection's cost grows with the number of hosts
(prints figures; never asserts on time).

A fleet of N simulated build hosts on this machine (tests/sandbox/fleet.py: each host
its own user + mount namespace, binfmt_misc instance, /run and descriptor directories,
reached through the test-only nsfleet connection) is provisioned, then every other
host is given drift (qemu-arm disabled, re-registered with another interpreter, or a
stale window from a SIGKILLed holder). For each N and forks value it times:

  ping         ansible all -m ping: the floor (one module round trip per host)
  check        remediate --check
  remediate    remediate (fixes the drift)
  again        remediate once more (changed=0 everywhere)
  serial       remediate with serial batches of SERIAL hosts (-e nativearm_serial; changed=0,
               one fleet table per batch)
  build        build: native_armhf_build_command runs a static armhf program on every
               host at once (emulated under qemu-arm on x86_64)

each as a ratio to the ping floor (goal: <= 1.5 at N = 50), with the controller's CPU
time per host (getrusage(RUSAGE_CHILDREN) around the run: ansible, its workers and,
as every host is on this machine, the modules they ran), the task results per host
(each one a worker process on the controller, a skipped one too), what the run did
(hosts changed / failed; the drift is re-injected before each sequence) and the
machine's 1-minute load average after the run (the machine may be shared).

The whole sequence (drift injected, then every step) runs --repeat times in turn; each row is
the median run of its step (the ratio is the median of each sequence's own ratio to its ping, with
the lowest and highest), so a moment of load on a shared machine does not decide a ratio.

With --profile, each row is followed by its slowest tasks (the longest time from a task's
start to a host's result, from the result_file callback) and the number of task results.

    python bench/fleet_bench.py [--sizes 1,10,50] [--forks 10,50] [--serial 10] [--repeat 3]
                                [--no-pipelining] [--profile]
"""
import argparse
import json
import os
import statistics
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from sandbox.fleet import Fleet, compile_hello  # noqa: E402

STEPS = ("ping", "check", "remediate", "again", "serial", "build")


def counts(run):
    recap = run.recap
    changed = sum(1 for c in recap.values() if c.get("changed"))
    failed = sum(1 for c in recap.values() if c.get("failed") or c.get("unreachable"))
    if not recap:  # ad-hoc ansible prints no recap
        failed = sum(1 for r in run.results if r.get("_status") in ("failed", "unreachable"))
    return changed, failed


def task_times(run, top=6):
    """The slowest tasks of a run: (seconds to the last host's result, results, task name)."""
    tasks = {}
    for r in run.results:
        seconds, count = tasks.get(r.get("_task"), (0.0, 0))
        tasks[r.get("_task")] = (max(seconds, r.get("_seconds") or 0.0), count + 1)
    ranked = sorted(((s, c, name) for name, (s, c) in tasks.items()), reverse=True)
    return ranked[:top], len(run.results)


def measure(fleet, forks, hello, serial):
    """step -> (Run, 1-minute load average right after it)."""
    fleet.inject_drift(forks=forks)
    build_vars = json.dumps({"native_armhf_build_command": [hello]})
    steps = (("ping", lambda: fleet.ping(forks=forks)),
             ("check", lambda: fleet.playbook("remediate", "--check", forks=forks)),
             ("remediate", lambda: fleet.playbook("remediate", forks=forks)),
             ("again", lambda: fleet.playbook("remediate", forks=forks)),
             ("serial", lambda: fleet.playbook("remediate", "-e", "nativearm_serial=%d" % serial, forks=forks)),
             ("build", lambda: fleet.playbook("build", "-e", build_vars, forks=forks)))
    runs = {}
    for step, run in steps:
        runs[step] = (run(), os.getloadavg()[0])
    return runs


def median_rows(sequences):
    """step -> (median Run, its load, median ratio, lowest ratio, highest ratio) over the
    sequences measure() returned (each ratio to the same sequence's ping)."""
    rows = {}
    for step in STEPS:
        ratios = sorted(seq[step][0].wall / seq["ping"][0].wall for seq in sequences)
        ranked = sorted((seq[step] for seq in sequences), key=lambda pair: pair[0].wall)
        run, load = ranked[len(ranked) // 2]
        rows[step] = (run, load, statistics.median(ratios), ratios[0], ratios[-1])
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10,50")
    parser.add_argument("--forks", default="10,50")
    parser.add_argument("--serial", type=int, default=10, help="batch size of the serial step")
    parser.add_argument("--repeat", type=int, default=3, help="sequences per forks value (median shown)")
    parser.add_argument("--no-pipelining", action="store_true")
    parser.add_argument("--profile", action="store_true", help="print each row's slowest tasks")
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]
    forks_values = [int(n) for n in args.forks.split(",")]
    print("fleet benchmark: %d CPUs, load %s, pipelining %s, %d sequences per row (median)"
          % (os.cpu_count(), " ".join("%.1f" % x for x in os.getloadavg()), not args.no_pipelining, args.repeat))
    header = "%4s %5s  %-10s %8s %7s %11s %11s %9s %8s %7s %5s" % (
        "N", "forks", "step", "wall s", "x ping", "(low-high)", "cpu s/host", "res/host", "changed", "failed", "load")
    rows = []
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as directory:
        hello = compile_hello(directory)
        for size in sizes:
            with Fleet(size, os.path.join(directory, "n%d" % size), pipelining=not args.no_pipelining) as fleet:
                fleet.start()
                provision = fleet.provision(forks=max(forks_values))
                print("N=%d: provisioned in %.1f s (forks %d)" % (size, provision.wall, max(forks_values)))
                for forks in forks_values:
                    medians = median_rows([measure(fleet, forks, hello, args.serial) for _sequence in range(args.repeat)])
                    for step in STEPS:
                        run, load, ratio, low, high = medians[step]
                        changed, failed = counts(run)
                        row = "%4d %5d  %-10s %8.1f %7.2f %11s %11.3f %9.1f %8d %7d %5.1f" % (
                            size, forks, step, run.wall, ratio, "%.2f-%.2f" % (low, high), run.cpu / size,
                            len(run.results) / size, changed, failed, load)
                        rows.append(row)
                        print(row, flush=True)
                        if args.profile:
                            ranked, results = task_times(run)
                            print("        %d task results; slowest:" % results)
                            for seconds, count, name in ranked:
                                print("        %7.1f s  %3d x  %s" % (seconds, count, name))
                    ends = sum(1 for n in fleet.names if fleet.snapshot(n) == fleet.provisioned[n])
                    print("N=%d forks=%d: %d/%d hosts in their provisioned state at the end"
                          % (size, forks, ends, size), flush=True)
    print()
    print("load average at the end: %s" % " ".join("%.1f" % x for x in os.getloadavg()))
    print(header)
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
