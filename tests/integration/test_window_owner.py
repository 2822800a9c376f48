"""native_armhf_window's owner: connection on the real kernel: the lease is tied to
the process that lives as long as Ansible's connection (for the local connection,
the controller process itself), so it ends with the play even when no close runs.
(The ssh case picks the connection's sshd process: tests/unit/.../test_owner.py.)"""
import os
import signal
import subprocess
import textwrap

from ansible_env import BIN, ansible_env, run_module
from ansible_collections.nativearm.binfmt.plugins.module_utils import window as W

from window_support import gone, wait_for


def test_ad_hoc_lease_owned_by_the_connection_ends_with_the_ansible_process(host):
    before = host.inst.snapshot()
    r = run_module("native_armhf_window", {"state": "open", "owner": "connection", "probe": ["/bin/true"],
                                           "ttl": 600, "run_dir": host.run_dir}, wrap=host.inst.nsenter)
    assert r["_status"] == "ok" and r["native"] is True, r
    assert r["owner"]["kind"] == "local" and "/ansible " in r["owner"]["cmdline"] + " ", r["owner"]
    # `ansible` has exited by now: the holder sees its owner gone and restores the entry
    wait_for(lambda: host.entry() == "enabled", timeout=10)
    wait_for(lambda: gone(r["holder_pid"]), timeout=5)
    facts = host.facts()
    assert facts["lease_count"] == 0 and "owner_gone" in [e["event"] for e in facts["events"]]
    assert host.inst.snapshot() == before


def test_owner_and_owner_pid_are_exclusive(host):
    r = run_module("native_armhf_window", {"state": "open", "owner": "connection", "owner_pid": 1,
                                           "run_dir": host.run_dir}, wrap=host.inst.nsenter)
    assert r["_status"] == "failed" and "mutually exclusive" in r["msg"] and "owner" in r["msg"], r


def test_killed_playbook_ends_its_connection_owned_lease(host, tmp_path):
    """The controller dies mid-build (SIGKILL: no always, no close): the lease ends with it."""
    before = host.inst.snapshot()
    marker = "300.%d" % os.getpid()
    playbook = tmp_path / "build.yml"
    playbook.write_text(textwrap.dedent("""\
        - hosts: all
          gather_facts: false
          tasks:
            - name: Open
              nativearm.binfmt.native_armhf_window:
                state: open
                owner: connection
                ttl: 600
                probe: [/bin/true]
                run_dir: %s
            - name: A long build
              ansible.builtin.command: sleep %s
              changed_when: true
        """ % (host.run_dir, marker)))
    argv = [os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook)]
    proc = subprocess.Popen(host.inst.nsenter(argv), env=ansible_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: host.facts()["lease_count"] == 1 and sleeping(marker), timeout=90, step=0.1)
        lease = host.facts()["leases"][0]
        assert lease["owner_pid"] == proc.pid, (lease, proc.pid)     # nsenter execs ansible-playbook
        assert "ansible-playbook" in W.proc_cmdline(proc.pid)
        assert host.entry() == "disabled"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        wait_for(lambda: host.entry() == "enabled", timeout=10)
        wait_for(lambda: gone(lease["pid"]), timeout=5)
        facts = host.facts()
        assert facts["lease_count"] == 0 and "owner_gone" in [e["event"] for e in facts["events"]]
        assert host.inst.snapshot() == before
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in sleeping(marker):
            os.kill(pid, signal.SIGKILL)


def sleeping(marker):
    """Pids of `sleep MARKER` processes (the build of this test, orphaned once the controller is killed)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/cmdline" % name, "rb") as f:
                    if f.read().split(b"\0")[:2] == [b"sleep", marker.encode()]:
                        found.append(int(name))
            except OSError:
                pass
    return found
