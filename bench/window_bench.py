"""Benchmark of native armhf windows (prints figures; never asserts on time).

1. Raw protocol: open+close latency (p50/p99) of native leases through
   window.py at 1, 8 and 32 concurrent workers (goal: p99 < 50 ms at 32).
2. Module: wall time of a playbook that opens and closes a window with
   nativearm.binfmt.native_armhf_window, over a playbook of two
   ansible.builtin.ping tasks (goal: ratio <= 1.10), run in turns in one
   bench run; also their CPU time (steady on a loaded machine) and a "floor"
   play, a no-op module carrying the same code, which splits the extra cost
   into carrying the code and doing the work.
3. Re-assertion: time for a holder to put the entry back after an external
   write of 1 (goal <= 0.2 s), and the holder's CPU use while idle.

Everything runs against private binfmt_misc instances (Linux >= 6.7, root).
The lease records go where production keeps them, on a tmpfs: a fresh
/run/nativearm-bench-XXXX when /run is a tmpfs, else a directory under
/dev/shm (said in the output); removed at the end.

    python bench/window_bench.py [--cycles 20] [--workers 1,8,32] [--playbook-runs 5]
"""
import argparse
import contextlib
import multiprocessing
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from ansible_env import ansible_env, collections_path  # noqa: E402

sys.path.insert(0, collections_path())

from ansible_collections.nativearm.binfmt.plugins.module_utils import binfmt_misc as bm  # noqa: E402
from ansible_collections.nativearm.binfmt.plugins.module_utils import probe  # noqa: E402
from ansible_collections.nativearm.binfmt.plugins.module_utils import window as W  # noqa: E402
from ansible_collections.nativearm.binfmt.plugins.module_utils.presets import preset  # noqa: E402
from sandbox.instance import Instance  # noqa: E402

# x86_64 CI: /bin/true stands in for an arm64 kernel with CONFIG_COMPAT, so the window's
# capability check is left to that probe (probe.CAPABILITY_ENV).
os.environ.setdefault(probe.CAPABILITY_ENV, "probe")


ENTRY = "qemu-arm"


def fs_type(path):
    """The file system type of the mount holding ``path`` (from /proc/self/mountinfo)."""
    path = os.path.realpath(path)
    best, kind = "", "?"
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            mount_point, fstype = fields[4], fields[fields.index("-") + 1]
            if (path == mount_point or path.startswith(mount_point.rstrip("/") + "/")) \
                    and len(mount_point) >= len(best):
                best, kind = mount_point, fstype
    return kind


@contextlib.contextmanager
def tmpfs_run_dir():
    """A fresh run dir on a tmpfs, as /run is in production; removed afterwards."""
    base = "/run" if fs_type("/run") == "tmpfs" else "/dev/shm"
    path = tempfile.mkdtemp(prefix="nativearm-bench-", dir=base)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def register(path):
    magic, mask, offset = preset("arm")
    bm.register(bm.make_definition(ENTRY, "/usr/bin/qemu-arm-static", magic=magic, mask=mask,
                                   offset=offset, flags="F"), path)


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100.0 * (len(values) - 1))))]


def _true():
    return W.run_probe(["/bin/true"])


def _worker(path, run_dir, cycles, start_at, out):
    w = W.Window(ENTRY, path, run_dir)
    while time.time() < start_at:
        time.sleep(0.001)
    both, opens, closes = [], [], []
    for dummy in range(cycles):
        t0 = time.time()
        lease = w.open("native", probe=_true, wait=120, ttl=600)
        t1 = time.time()
        w.close(lease["lease_id"])
        t2 = time.time()
        both.append((t2 - t0) * 1000)
        opens.append((t1 - t0) * 1000)
        closes.append((t2 - t1) * 1000)
    out.put((both, opens, closes))


def raw_protocol(workers_list, cycles):
    print("== raw protocol: native open+close through window.py (ms)")
    ctx = multiprocessing.get_context("fork")
    rows = []
    for workers in workers_list:
        with Instance() as inst, tmpfs_run_dir() as run_dir:
            register(inst.path)
            # warm-up: creates the run dir's instance directory
            w = W.Window(ENTRY, inst.path, run_dir)
            w.close(w.open("native", probe=_true)["lease_id"])
            out = ctx.Queue()
            start_at = time.time() + 0.5
            procs = [ctx.Process(target=_worker, args=(inst.path, run_dir, cycles, start_at, out))
                     for dummy in range(workers)]
            for p in procs:
                p.start()
            both, opens, closes = [], [], []
            for dummy in procs:
                b, o, c = out.get()
                both += b
                opens += o
                closes += c
            for p in procs:
                p.join()
        rows.append((workers, both, opens, closes))
        print("  %2d workers x %d cycles: open+close p50 %6.1f p99 %6.1f | open p50 %6.1f p99 %6.1f | "
              "close p50 %5.1f p99 %5.1f" % (workers, cycles, pct(both, 50), pct(both, 99), pct(opens, 50),
                                             pct(opens, 99), pct(closes, 50), pct(closes, 99)))
    last = rows[-1]
    p99 = pct(last[1], 99)
    print("  goal p99 < 50 ms at %d workers: %.1f ms (%s)" % (last[0], p99, "met" if p99 < 50 else "NOT met"))
    cycle_cpu, fork_cpu = cycle_cost(cycles=max(cycles, 50))
    cpus = os.cpu_count() or 1
    print("  one open+close costs %.1f ms of CPU (opener + its holder), %.1f ms of it the holder's bare "
          "fork and exit; back-to-back workers cannot do better than about workers x %.1f / %d CPUs: "
          "%.0f ms at %d workers" % (cycle_cpu, fork_cpu, cycle_cpu, cpus, last[0] * cycle_cpu / cpus, last[0]))
    return rows


def _cpu_seconds():
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def cycle_cost(cycles):
    """(CPU ms of one open+close incl. its holder, CPU ms of a bare fork + exit of this process),
    measured in a child process so that holders are reaped children and their CPU is counted."""
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()

    def measure():
        with Instance() as inst, tmpfs_run_dir() as run_dir:
            register(inst.path)
            w = W.Window(ENTRY, inst.path, run_dir)
            base = w.open("native", probe=_true, ttl=600)        # joiners: no probe per cycle
            c0 = _cpu_seconds()
            for dummy in range(cycles):
                w.close(w.open("native", probe=_true, ttl=600)["lease_id"])
            c1 = _cpu_seconds()
            for dummy in range(cycles):
                pid = os.fork()
                if pid == 0:
                    os._exit(0)
                os.waitpid(pid, 0)
            c2 = _cpu_seconds()
            w.close(base["lease_id"])
        out.put(((c1 - c0) / cycles * 1000, (c2 - c1) / cycles * 1000))

    proc = ctx.Process(target=measure)
    proc.start()
    result = out.get()
    proc.join()
    return result


WINDOW_PLAY = """- hosts: localhost
  gather_facts: false
  tasks:
    - name: Open
      nativearm.binfmt.native_armhf_window:
        state: open
        probe: [/bin/true]
        run_dir: %s
        ttl: 600
      register: w
    - name: Close
      nativearm.binfmt.native_armhf_window:
        state: closed
        lease_id: "{{ w.lease_id }}"
        run_dir: %s
"""

PING_PLAY = """- hosts: localhost
  gather_facts: false
  tasks:
    - name: Ping one
      ansible.builtin.ping:
    - name: Ping two
      ansible.builtin.ping:
"""


# A module that carries native_armhf_window's code and does nothing: the same imports
# (top level, the open's, and the lazy ones the controller still packs), so its
# AnsiballZ payload holds the same module_utils. Written into a temporary
# ANSIBLE_LIBRARY for the bench only. Keep its imports in step with the module's.
FLOOR_MODULE = """#!/usr/bin/python
from __future__ import absolute_import, division, print_function
__metaclass__ = type
from ansible.module_utils.basic import AnsibleModule
from ansible_collections.nativearm.binfmt.plugins.module_utils import window


def packed_only():
    from ansible_collections.nativearm.binfmt.plugins.module_utils._owner import find_connection_owner  # noqa: F401
    from ansible_collections.nativearm.binfmt.plugins.module_utils.descriptors import find_descriptor  # noqa: F401


def main():
    module = AnsibleModule(argument_spec=dict(state=dict(type="str"), lease_id=dict(type="str"), probe=dict(type="raw"),
                                              ttl=dict(type="int"), run_dir=dict(type="path")))
    if module.params["state"] == "open":
        from ansible_collections.nativearm.binfmt.plugins.module_utils import _holder, probe  # noqa: F401
    module.exit_json(changed=False, lease_id="floor", mode=window.DEFAULT_ENTRY)


if __name__ == "__main__":
    main()
"""


def _children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def module_ratio(runs):
    """Wall and CPU time of whole ansible-playbook runs, interleaved round by round.

    CPU (user + system of the playbook's whole process tree: controller, workers,
    module processes; not the holder, which outlives its module) is steady when
    other jobs load the machine, wall time is not: both are printed. The floor
    play runs a module with native_armhf_window's code that does nothing: the
    share of the extra cost due to carrying that code (the controller's AST scan
    of every module_utils file it packs, the target's compiling them: AnsiballZ
    payloads carry no bytecode) rather than the window's work."""
    print("== module: playbook open+close vs two ansible.builtin.ping tasks")
    print("   (load average before: %s)" % " ".join("%.2f" % x for x in os.getloadavg()))
    env = ansible_env()
    env.pop("ANSIBLE_CALLBACKS_ENABLED", None)
    bin_dir = os.path.dirname(sys.executable)
    names = ("ping", "floor", "window")
    with Instance() as inst, tmpfs_run_dir() as tmp:
        register(inst.path)
        run_dir = os.path.join(tmp, "run")
        library = os.path.join(tmp, "library")
        os.mkdir(library)
        with open(os.path.join(library, "nativearm_bench_floor.py"), "w") as f:
            f.write(FLOOR_MODULE)
        env["ANSIBLE_LIBRARY"] = library
        plays = {}
        for name, text in (("window", WINDOW_PLAY % (run_dir, run_dir)), ("ping", PING_PLAY),
                           ("floor", WINDOW_PLAY.replace("nativearm.binfmt.native_armhf_window",
                                                         "nativearm_bench_floor") % (run_dir, run_dir))):
            plays[name] = os.path.join(tmp, name + ".yml")
            with open(plays[name], "w") as f:
                f.write(text)
        wall = dict((name, []) for name in names)
        cpu = dict((name, []) for name in names)
        for i in range(runs + 1):
            order = names if i % 2 else tuple(reversed(names))     # A/B/A/B: no play always first
            for name in order:
                argv = inst.nsenter([os.path.join(bin_dir, "ansible-playbook"), "-i", "localhost,",
                                     "-c", "local", plays[name]])
                c0, t0 = _children_cpu(), time.time()
                proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
                elapsed, used = time.time() - t0, _children_cpu() - c0
                if proc.returncode != 0:
                    print(proc.stdout[-2000:], proc.stderr[-2000:])
                    raise SystemExit("%s playbook failed" % name)
                if i:                              # the first round warms caches
                    wall[name].append(elapsed)
                    cpu[name].append(used)
        state = bm.read_entry(ENTRY, inst.path)["enabled"]
    med = dict((name, (statistics.median(wall[name]), statistics.median(cpu[name]))) for name in names)
    print("  median over %d runs (wall s / CPU s): two pings %.2f / %.2f, window open+close %.2f / %.2f, "
          "floor %.2f / %.2f" % (runs, med["ping"][0], med["ping"][1], med["window"][0], med["window"][1],
                                 med["floor"][0], med["floor"][1]))
    for name in names:
        print("    %-6s wall %s | CPU %s" % (name, " ".join("%.2f" % x for x in wall[name]),
                                             " ".join("%.2f" % x for x in cpu[name])))
    ratio = med["window"][0] / med["ping"][0]
    cpu_ratio = med["window"][1] / med["ping"][1]
    print("  ratio %.3f (goal <= 1.10: %s); CPU ratio %.3f; entry after: %s"
          % (ratio, "met" if ratio <= 1.10 else "NOT met", cpu_ratio, "enabled" if state else "disabled"))
    paired = statistics.median(a / b for a, b in zip(wall["window"], wall["ping"]))
    print("  (median of the ratios of each round's window and ping plays, which ran back to back: %.3f)" % paired)
    print("  floor (the same play with a no-op module carrying the window's code) CPU ratio %.3f; the window's "
          "work costs window minus floor: %+.2f s of CPU (within run-to-run noise, about 0.1 s, when small or "
          "negative)" % (med["floor"][1] / med["ping"][1], med["window"][1] - med["floor"][1]))
    return ratio


def _cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _memory_kb(pid):
    """(RSS, PSS) of ``pid`` in KiB."""
    values = {}
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            parts = line.split()
            if parts and parts[0] in ("Rss:", "Pss:"):
                values[parts[0]] = int(parts[1])
    return values.get("Rss:", 0), values.get("Pss:", 0)


def reassert(samples, idle_seconds):
    print("== re-assertion after an external 'echo 1' (seconds)")
    with Instance() as inst, tmpfs_run_dir() as run_dir:
        register(inst.path)
        w = W.Window(ENTRY, inst.path, run_dir)
        lease = w.open("native", probe=_true, ttl=600)
        path = os.path.join(inst.path, ENTRY)
        lat = []
        for dummy in range(samples):
            time.sleep(0.13)                           # land at random points of the poll period
            bm.set_enabled(ENTRY, True, inst.path)
            t0 = time.time()
            while True:
                with open(path) as f:
                    if f.readline().strip() == "disabled":
                        break
                time.sleep(0.0005)
            lat.append(time.time() - t0)
        pid = lease["holder_pid"]
        hz = os.sysconf("SC_CLK_TCK")
        c0, t0 = _cpu_ticks(pid), time.time()
        time.sleep(idle_seconds)
        c1, t1 = _cpu_ticks(pid), time.time()
        rss, pss = _memory_kb(pid)
        w.close(lease["lease_id"])
    cpu = (c1 - c0) / float(hz) / (t1 - t0) * 100
    print("  %d samples: p50 %.3f p99 %.3f max %.3f (goal <= 0.2: %s)"
          % (samples, pct(lat, 50), pct(lat, 99), max(lat), "met" if pct(lat, 99) <= 0.2 else "NOT met"))
    print("  holder CPU while watching: %.2f%% of one CPU over %.0f s (poll every %.2f s)"
          % (cpu, idle_seconds, W.POLL))
    print("  holder memory: RSS %d KiB, PSS %d KiB (forked from this benchmark process, so RSS counts "
          "pages shared with it)" % (rss, pss))
    return lat, cpu


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--cycles", type=int, default=20, help="open+close cycles per worker")
    ap.add_argument("--workers", default="1,8,32")
    ap.add_argument("--playbook-runs", type=int, default=5)
    ap.add_argument("--reassert-samples", type=int, default=30)
    ap.add_argument("--idle-seconds", type=float, default=10)
    ap.add_argument("--skip", default="", help="comma list of raw,module,reassert to skip")
    args = ap.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    print("host: %s, %d CPUs, python %s, load average %s; run dirs on %s"
          % (os.uname().release, os.cpu_count(), sys.version.split()[0],
             " ".join("%.2f" % x for x in os.getloadavg()),
             "/run (tmpfs)" if fs_type("/run") == "tmpfs" else "/dev/shm (tmpfs; /run is %s here)" % fs_type("/run")))
    if "raw" not in skip:
        raw_protocol([int(x) for x in args.workers.split(",")], args.cycles)
    if "module" not in skip:
        module_ratio(args.playbook_runs)
    if "reassert" not in skip:
        reassert(args.reassert_samples, args.idle_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
