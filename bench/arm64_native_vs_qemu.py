"""Benchmark (not a test): a fixed armhf workload on the arm64 fleet's `compat` guest,
inside a native armhf window vs. under qemu-arm, and the ratio.

The guest is itself emulated (qemu-system-aarch64 TCG on this x86_64 host), so
the ratio compares "A32 code run by the guest kernel" with "A32 code run by
qemu-arm inside the guest"; it is not a hardware figure.

Workload (fixed): a C file compiled once with arm-linux-gnueabihf-gcc -O2, then
  - START_RUNS short runs of the program (process start-up: loader, libc), and
  - one compute run (COMPUTE_ITERS iterations of an integer hash loop).

usage: python3 bench/arm64_native_vs_qemu.py [--state DIR] [--host compat] [--repeat N]
With a running fleet in DIR (`python3 molecule/arm64/fleet/fleet.py up` / `KEEP=1 molecule/arm64/run.sh`) it uses it;
otherwise it boots the fleet, provisions it (nativearm.binfmt.provision), and
stops every guest by pid at the end.
"""
import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FLEET = os.path.join(ROOT, "molecule", "arm64", "fleet")
sys.path.insert(0, FLEET)

import fleet  # noqa: E402
import remote  # noqa: E402
import vm  # noqa: E402

START_RUNS = 40
COMPUTE_ITERS = 20000000
WORKDIR = "/var/tmp/nativearm-bench"
# No armhf multiarch on the guests: use the cross toolchain's loader and libc.
LINK = ("-Wl,--dynamic-linker=/usr/arm-linux-gnueabihf/lib/ld-linux-armhf.so.3 "
        "-Wl,-rpath=/usr/arm-linux-gnueabihf/lib")
C_SOURCE = r"""
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    unsigned long n = argc > 1 ? strtoul(argv[1], 0, 10) : 0, h = 2166136261u;
    for (unsigned long i = 0; i < n; i++) h = (h ^ (i & 0xff)) * 16777619u;
    printf("%lu\n", h);
    return 0;
}
"""
WORKLOAD = (
    "set -e; cd %(w)s; "
    "t0=$(date +%%s%%N); for i in $(seq %(runs)d); do ./hash 0 >/dev/null; done; "
    "t1=$(date +%%s%%N); ./hash %(iters)d >/dev/null; t2=$(date +%%s%%N); "
    "echo $(( (t1-t0)/1000000 )) $(( (t2-t1)/1000000 ))"
) % {"w": WORKDIR, "runs": START_RUNS, "iters": COMPUTE_ITERS}


def ssh(rec, command, check=True):
    proc = subprocess.run(vm.ssh_argv(rec, "sudo sh -c %s" % _quote(command)),
                          check=False, capture_output=True, text=True, timeout=1800)
    if check and proc.returncode != 0:
        raise SystemExit("on %s: %s\nrc %d\n%s%s" % (rec["name"], command, proc.returncode,
                                                     proc.stdout, proc.stderr))
    return proc.stdout.strip()


def _quote(text):
    return "'" + text.replace("'", "'\\''") + "'"


def qemu_arm_state(rec):
    return ssh(rec, "head -n1 /proc/sys/fs/binfmt_misc/qemu-arm 2>/dev/null || echo absent")


def run_workload(rec, repeat):
    best = None
    for _round in range(repeat):
        start_ms, compute_ms = (int(x) for x in ssh(rec, WORKLOAD).split())
        total = start_ms + compute_ms
        if best is None or total < best[2]:
            best = (start_ms, compute_ms, total)
    return best


def bench(state, host, repeat):
    records = fleet.load(state)
    rec = records[host]
    inventory = os.path.join(state, "inventory.yml")
    ssh(rec, "mkdir -p %s && cat > %s/hash.c <<'EOF'\n%s\nEOF\n"
             "arm-linux-gnueabihf-gcc -O2 -o %s/hash %s/hash.c %s"
        % (WORKDIR, WORKDIR, C_SOURCE, WORKDIR, WORKDIR, LINK))
    print("host: x86_64 running qemu-system-aarch64 (TCG, software emulation); guest %s = %s"
          % (host, ssh(rec, "uname -srm")))
    print("NOTE: the guest CPU is emulated, so this ratio is not a hardware figure.")
    print("workload: %d start-ups of a small armhf program + one run of %d hash iterations; "
          "best of %d" % (START_RUNS, COMPUTE_ITERS, repeat))

    before = qemu_arm_state(rec)
    if before != "enabled":
        raise SystemExit("qemu-arm on %s is %r; provision first (it must be enabled)" % (host, before))
    emu = run_workload(rec, repeat)
    print("qemu-arm (emulated): start-ups %6d ms  compute %6d ms  total %6d ms" % emu)

    lease = remote.module(inventory, host, "native_armhf_window",
                          {"state": "open", "ttl": 1800, "on_unsupported": "fail"})
    if lease.get("failed") or not lease.get("native"):
        raise SystemExit("native window did not open on %s: %s" % (host, lease.get("msg") or lease))
    try:
        during = qemu_arm_state(rec)
        nat = run_workload(rec, repeat)
    finally:
        closed = remote.module(inventory, host, "native_armhf_window",
                               {"state": "closed", "lease_id": lease["lease_id"]})
    print("native window     : start-ups %6d ms  compute %6d ms  total %6d ms  (qemu-arm %s)"
          % (nat + (during,)))
    print("qemu-arm after the window: %s (restored: %s)" % (qemu_arm_state(rec), closed.get("restored")))
    print("ratio emulated/native: start-ups %.1fx  compute %.1fx  total %.1fx  (goal >= 3x)"
          % (emu[0] / max(nat[0], 1), emu[1] / max(nat[1], 1), emu[2] / max(nat[2], 1)))
    print("(host emulated: qemu-system-aarch64 TCG on x86_64 -- not a hardware figure)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state", default=fleet.DEFAULT_STATE)
    parser.add_argument("--host", default="compat")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    records = fleet.load(args.state)
    running = args.host in records and vm.is_running(records[args.host])
    if running:
        bench(args.state, args.host, args.repeat)
        return
    try:
        fleet.up(args.state, [args.host])
        proc = remote.playbook(os.path.join(args.state, "inventory.yml"),
                               "nativearm.binfmt.provision", limit=args.host)
        if proc.returncode != 0:
            raise SystemExit("provision failed:\n%s\n%s" % (proc.stdout[-4000:], proc.stderr[-2000:]))
        bench(args.state, args.host, args.repeat)
    finally:
        fleet.down(args.state)


if __name__ == "__main__":
    main()
