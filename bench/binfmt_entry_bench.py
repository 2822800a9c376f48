"""Benchmark (not a test): wall time of a no-change binfmt_entry task vs an ansible.builtin.ping task.

Both run on localhost in one playbook, interleaved, inside a private binfmt_misc instance
(the machine's global binfmt_misc is not touched). Prints medians and their ratio; the goal is
<= 1.05, i.e. the module's own work is close to nothing next to Ansible's per-task floor.

usage: bench/binfmt_entry_bench.py [--rounds N]
"""
import argparse
import os
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

from ansible_env import run_playbook  # noqa: E402
from sandbox.instance import Instance  # noqa: E402

ENTRY = {"name": "bench-arm", "arch": "arm", "interpreter": "/usr/bin/qemu-arm-static", "flags": "F"}


def playbook(rounds):
    tasks = [{"name": "register once", "nativearm.binfmt.binfmt_entry": ENTRY}]
    for i in range(rounds):
        tasks.append({"name": "ping %d" % i, "ansible.builtin.ping": {}})
        tasks.append({"name": "entry %d" % i, "nativearm.binfmt.binfmt_entry": ENTRY})
    return [{"hosts": "localhost", "gather_facts": False,
             "vars": {"ansible_python_interpreter": sys.executable}, "tasks": tasks}]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=25)
    args = parser.parse_args()
    import json
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        json.dump(playbook(args.rounds), f)  # JSON is YAML
        path = f.name
    try:
        with Instance() as inst:
            proc, results = run_playbook(path, wrap=inst.nsenter)
    finally:
        os.unlink(path)
    if proc.returncode != 0:
        sys.exit("playbook failed:\n%s\n%s" % (proc.stdout[-3000:], proc.stderr[-3000:]))
    ping = [r["_seconds"] for r in results if r["_task"].startswith("ping ")]
    entry = [r["_seconds"] for r in results if r["_task"].startswith("entry ")]
    assert not any(r.get("changed") for r in results if r["_task"].startswith("entry ")), "expected no-change runs"
    p, e = statistics.median(ping), statistics.median(entry)
    print("rounds: %d (interleaved, one playbook, localhost, private binfmt_misc)" % args.rounds)
    print("ansible.builtin.ping      median %.1f ms  (p90 %.1f ms)" % (p * 1000, sorted(ping)[int(len(ping) * .9)] * 1000))
    print("binfmt_entry (no change)  median %.1f ms  (p90 %.1f ms)" % (e * 1000, sorted(entry)[int(len(entry) * .9)] * 1000))
    print("ratio binfmt_entry / ping: %.3f (goal <= 1.05)" % (e / p))


if __name__ == "__main__":
    main()
