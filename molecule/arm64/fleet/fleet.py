"""The arm64 fleet: build-or-reuse images, boot every guest, write an inventory, stop them.

usage: python3 fleet.py up    [--state DIR] [GUEST...]   build/reuse, boot, wait for ssh,
                                                         write DIR/fleet.json and DIR/inventory.yml
       python3 fleet.py down  [--state DIR]              stop every guest in DIR/fleet.json by pid
       python3 fleet.py ping  [--state DIR]              ansible -m ping over the inventory
       python3 fleet.py smoke [--state DIR]              up, ping, down (down also when a step fails)

Environment: NATIVEARM_ARM64_CACHE (image cache), NATIVEARM_ARM64_SMP (vCPUs per
guest, default 1), NATIVEARM_ARM64_MEM (MiB, default 1536).
Guests only ever listen on 127.0.0.1.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, HERE)

import guests  # noqa: E402
import image  # noqa: E402
import vm  # noqa: E402

DEFAULT_STATE = os.environ.get("NATIVEARM_ARM64_STATE", "/tmp/nativearm-arm64-fleet")
VENV_BIN = os.path.join(ROOT, ".venv", "bin")


def log(msg):
    sys.stderr.write("[fleet %s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


def phase(name, start):
    log("phase %-28s %7.1f s" % (name, time.monotonic() - start))


def state_file(state):
    return os.path.join(state, "fleet.json")


def load(state):
    try:
        with open(state_file(state)) as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def save(state, records):
    os.makedirs(state, exist_ok=True)
    tmp = state_file(state) + ".tmp"
    with open(tmp, "w") as f:
        json.dump(records, f, indent=1)
    os.replace(tmp, state_file(state))


def inventory_text(records):
    lines = ["# written by molecule/arm64/fleet/fleet.py", "all:", "  children:",
             "    arm64_fleet:", "      hosts:"]
    for name, rec in sorted(records.items()):
        lines += ["        %s:" % name,
                  "          ansible_host: 127.0.0.1",
                  "          ansible_port: %d" % rec["port"],
                  "          ansible_user: %s" % rec["user"],
                  "          ansible_ssh_private_key_file: %s" % rec["key"],
                  "          fleet_suite: %s" % guests.GUESTS[name]["suite"],
                  "          fleet_cpu: %s" % guests.GUESTS[name]["cpu"],
                  "          fleet_aarch32_el0: %s" % str(guests.GUESTS[name]["aarch32_el0"]).lower(),
                  "          fleet_page_size: %d" % guests.GUESTS[name].get("page_size", 4096)]
    lines += ["      vars:",
              "        ansible_python_interpreter: /usr/bin/python3",
              "        ansible_become: true",
              "        ansible_ssh_common_args: >-",
              "          -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
              "          -o LogLevel=ERROR -o ServerAliveInterval=15"]
    return "\n".join(lines) + "\n"


def up(state, names):
    names = names or sorted(guests.GUESTS)
    smp = int(os.environ.get("NATIVEARM_ARM64_SMP", "1"))
    mem = int(os.environ.get("NATIVEARM_ARM64_MEM", "1536"))
    start = time.monotonic()
    dirs = image.build(names)
    phase("images (build or reuse)", start)
    records = load(state)
    try:
        start = time.monotonic()
        for name in names:
            if name in records and vm.is_running(records[name]):
                log("%s already running (pid %d)" % (name, records[name]["pid"]))
                continue
            rec = vm.boot(name, guests.GUESTS[name], dirs[name], os.path.join(state, name),
                          guests.USER, smp=smp, memory_mb=mem)
            records[name] = rec
            save(state, records)
            log("%s: qemu pid %d, ssh on 127.0.0.1:%d (%s, %s)"
                % (name, rec["pid"], rec["port"], guests.GUESTS[name]["suite"],
                   guests.GUESTS[name]["cpu"]))
        for name in names:
            seconds = vm.wait_ssh(records[name])
            log("%s: ssh up %.0f s after qemu start" % (name, seconds))
        phase("boot to ssh", start)
    except BaseException:
        log("boot failed: stopping every guest started")
        down(state)
        raise
    with open(os.path.join(state, "inventory.yml"), "w") as f:
        f.write(inventory_text(records))
    log("inventory: %s" % os.path.join(state, "inventory.yml"))
    return records


def down(state):
    records = load(state)
    for name, rec in sorted(records.items()):
        if vm.stop(rec):
            log("%s: stopped qemu pid %d" % (name, rec["pid"]))
        else:
            log("%s: qemu pid %d was not running" % (name, rec["pid"]))
    if records:
        save(state, {})


def ping(state):
    start = time.monotonic()
    env = dict(os.environ, ANSIBLE_HOST_KEY_CHECKING="0", ANSIBLE_NOCOLOR="1",
               PATH=VENV_BIN + os.pathsep + os.environ.get("PATH", ""))
    subprocess.run([os.path.join(VENV_BIN, "ansible"), "all", "-i",
                    os.path.join(state, "inventory.yml"), "-m", "ansible.builtin.ping"],
                   env=env, check=True)
    phase("ansible -m ping", start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__)
    parser.add_argument("command", choices=("up", "down", "ping", "smoke"))
    parser.add_argument("--state", default=DEFAULT_STATE)
    parser.add_argument("guests", nargs="*", choices=sorted(guests.GUESTS) + [[]])
    args = parser.parse_args(argv)
    total = time.monotonic()
    if args.command == "up":
        up(args.state, args.guests)
    elif args.command == "down":
        down(args.state)
    elif args.command == "ping":
        ping(args.state)
    else:
        try:
            up(args.state, args.guests)
            ping(args.state)
        finally:
            down(args.state)
    phase("total " + args.command, total)


if __name__ == "__main__":
    main()
