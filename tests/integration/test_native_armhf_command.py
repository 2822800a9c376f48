"""nativearm.binfmt.native_armhf_command through Ansible, on the real kernel.

Every run happens inside a private binfmt_misc instance (nsenter) where
qemu-arm is registered as qemu-user-static registers it; the machine's own
binfmt_misc (which may well have qemu-arm registered) is never looked at.
The armhf program is a real one, compiled here with arm-linux-gnueabihf-gcc.
"""
import json
import os
import signal
import subprocess
import textwrap

import pytest

from ansible_env import BIN, ansible_env, run_module, run_playbook
from ansible_collections.nativearm.binfmt.plugins.module_utils import window as W

from window_support import ENTRY, gone, wait_for

MACHINE = os.uname().machine
# what uname -m says to a process under PER_LINUX32 on this kernel
LINUX32_MACHINE = {"x86_64": "i686", "aarch64": "armv8l"}.get(MACHINE)
HELLO_C = r"""
#include <stdio.h>
#include <sys/utsname.h>
int main(int argc, char **argv)
{
    struct utsname u;
    if (uname(&u) != 0)
        return 1;
    printf("armhf says hello, machine %s, pointer %u bytes\n", u.machine, (unsigned)sizeof(void *));
    return argc > 1 ? 5 : 0;
}
"""


@pytest.fixture(scope="module")
def armhf_program(tmp_path_factory):
    d = tmp_path_factory.mktemp("armhf")
    (d / "hello.c").write_text(HELLO_C)
    subprocess.run(["arm-linux-gnueabihf-gcc", "-static", "-O2", "-o", str(d / "hello"), str(d / "hello.c")],
                   check=True)
    return str(d / "hello")


def command(host, check=False, **args):
    args.setdefault("run_dir", host.run_dir)
    return run_module("native_armhf_command", args, check=check, wrap=host.inst.nsenter)


def assert_window_gone(host, before):
    """No lease, no window, no holder process: the entry is as it was."""
    facts = host.facts()
    assert facts["lease_count"] == 0 and facts["mode"] is None and facts["prior_state"] is None, facts
    assert not W.lock_holders_of(os.path.join(host.path, ENTRY))
    assert host.inst.snapshot() == before


def test_emulated_run_of_a_real_armhf_binary(host, armhf_program):
    """The real armhf program runs under the private instance's qemu-arm. On this x86_64
    host the default probe decides (Exec format error); elsewhere a failing probe forces it."""
    before = host.inst.snapshot()
    args = {} if MACHINE == "x86_64" else {"probe": ["/bin/false"]}
    r = command(host, argv=[armhf_program], **args)
    assert r["_status"] == "ok" and r["changed"] and r["rc"] == 0, r
    assert r["stdout"] == "armhf says hello, machine armv7l, pointer 4 bytes", r["stdout"]
    assert r["stdout_lines"] == [r["stdout"]] and r["stderr"] == "" and r["stderr_lines"] == []
    assert r["native"] is False and r["mode"] == "emulation" and r["linux32"] is False
    if MACHINE == "x86_64":
        assert "Exec format error" in r["reason"] and "x86_64" in r["reason"], r["reason"]
    assert r["tier"] in ("packaged_descriptor", "registered_entry")
    assert r["restored"] is True and r["prior_state"] == "enabled" and r["duration"] >= 0
    assert_window_gone(host, before)


def test_native_window_runs_the_command_under_linux32_with_qemu_arm_disabled(host):
    """A probe that succeeds stands in for an arm64 kernel with CONFIG_COMPAT: the window
    is native, the entry is disabled while the command runs, and uname -m answers as a
    32-bit process of this kernel (armv8l on arm64) unless linux32 is false."""
    before = host.inst.snapshot()
    script = "uname -m; head -n1 /proc/sys/fs/binfmt_misc/qemu-arm"
    r = command(host, argv=["sh", "-c", script], probe=["/bin/true"])
    assert r["_status"] == "ok" and r["rc"] == 0, r
    assert r["native"] is True and r["mode"] == "native" and r["linux32"]
    assert r["tier"] in ("packaged_descriptor", "registered_entry")    # qemu-arm is registered: not tier 3
    assert r["stdout_lines"] == [LINUX32_MACHINE, "disabled"], r["stdout_lines"]
    assert r["reason"].startswith("native window: qemu-arm was disabled while the command ran")
    assert r["restored"] is True
    assert_window_gone(host, before)
    r = command(host, argv=["sh", "-c", script], probe="/bin/true", linux32=False)
    assert r["stdout_lines"] == [MACHINE, "disabled"] and r["linux32"] is False, r
    assert_window_gone(host, before)


def test_failing_command_fails_like_command_with_rc_and_output(host, armhf_program):
    before = host.inst.snapshot()
    r = command(host, argv=["sh", "-c", "echo out-1; echo out-2; echo err-1 >&2; exit 7"], probe=["/bin/true"])
    assert r["_status"] == "failed" and r["msg"] == "non-zero return code" and r["rc"] == 7, r
    assert r["stdout_lines"] == ["out-1", "out-2"] and r["stderr_lines"] == ["err-1"]
    assert r["native"] is True and r["restored"] is True
    assert_window_gone(host, before)
    # the armhf program's own exit status, under emulation or natively
    r = command(host, argv=[armhf_program, "fail"])
    assert r["_status"] == "failed" and r["rc"] == 5 and "armhf says hello" in r["stdout"], r
    assert_window_gone(host, before)
    r = command(host, argv=["/no/such/program"], probe=["/bin/true"])
    assert r["_status"] == "failed" and r["rc"] == 127 and "could not be started" in r["msg"], r
    assert_window_gone(host, before)


def test_check_mode_opens_nothing_and_runs_nothing(host, tmp_path):
    before = host.inst.snapshot()
    marker = tmp_path / "marker"
    r = command(host, check=True, argv=["touch", str(marker)], probe=["/bin/true"])
    assert r["_status"] == "skipped" or r.get("skipped"), r
    assert r["changed"] is False and "rc" not in r
    assert not marker.exists()
    assert host.inst.snapshot() == before and host.facts()["lease_count"] == 0
    assert not os.path.exists(host.run_dir) or not os.listdir(host.run_dir)


def test_window_that_cannot_open_fails_without_running_the_command(host, tmp_path):
    before = host.inst.snapshot()
    marker = tmp_path / "marker"
    r = command(host, argv=["touch", str(marker)], probe=["/bin/false"], on_unsupported="fail")
    assert r["_status"] == "failed", r
    assert r["msg"].startswith("the window could not be opened: "), r["msg"]
    assert "exited with status 1" in r["msg"] and "rc" not in r
    assert not marker.exists()
    assert_window_gone(host, before)
    # on_unsupported: emulate runs it under an emulation lease instead, and says why
    r = command(host, argv=["touch", str(marker)], probe=["/bin/false"])
    assert r["_status"] == "ok" and r["native"] is False and r["mode"] == "emulation", r
    assert "exited with status 1" in r["reason"] and marker.exists()
    assert_window_gone(host, before)


def test_stdin_environment_and_chdir(host, tmp_path):
    r = command(host, argv=["sh", "-c", "read line; echo \"$line $GREETING $(pwd)\""], stdin="hi",
                environment={"GREETING": "there"}, chdir=str(tmp_path), probe=["/bin/true"])
    assert r["_status"] == "ok" and r["stdout"] == "hi there %s" % tmp_path, r


@pytest.mark.parametrize("args, words", [
    ({"argv": []}, "argv/cmd: the command is empty"),
    ({"argv": ["true"], "chdir": "relative/dir"}, "chdir: 'relative/dir' is not an existing directory"),
    ({"argv": ["true"], "environment": {"1BAD": "x"}}, "environment: '1BAD'"),
    ({"argv": ["true"], "probe": {"a": 1}}, "probe: must be an argv list"),
    ({"argv": ["true"], "wait": -1}, "wait: must be 0 or more"),
    ({"argv": ["true"], "cmd": "true"}, "mutually exclusive"),
])
def test_bad_input_names_the_field(host, args, words):
    before = host.inst.snapshot()
    r = command(host, **args)
    assert r["_status"] == "failed" and words in r["msg"], r
    assert "rc" not in r
    assert_window_gone(host, before)


def test_async_task_with_poll(host, tmp_path):
    before = host.inst.snapshot()
    playbook = tmp_path / "async.yml"
    playbook.write_text(textwrap.dedent("""\
        - hosts: all
          gather_facts: false
          tasks:
            - name: A windowed command longer than a poll interval
              nativearm.binfmt.native_armhf_command:
                argv: [sh, -c, "sleep 3; uname -m; head -n1 /proc/sys/fs/binfmt_misc/qemu-arm"]
                probe: [/bin/true]
                run_dir: %s
              async: 60
              poll: 2
              register: built
            - name: Show it
              ansible.builtin.debug:
                msg: "async: {{ built.stdout_lines | join(' ') }} native={{ built.native }} restored={{ built.restored }}"
        """ % host.run_dir))
    proc, results = run_playbook(str(playbook), wrap=host.inst.nsenter)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    said = [r["msg"] for r in results if isinstance(r.get("msg"), str) and r["msg"].startswith("async: ")]
    assert said == ["async: %s disabled native=True restored=True" % LINUX32_MACHINE], said
    assert_window_gone(host, before)


def test_sigkilled_module_leaves_no_open_lease(host, tmp_path):
    """SIGKILL the module mid-command: its command dies with it (PR_SET_PDEATHSIG), the
    lease's holder sees its owner gone and restores qemu-arm; nothing is left."""
    before = host.inst.snapshot()
    marker = "300.%d" % os.getpid()       # sleep's argument: a name for this test's command
    argv = [os.path.join(BIN, "ansible"), "localhost", "-i", "localhost,", "-c", "local",
            "-m", "nativearm.binfmt.native_armhf_command",
            "-a", json.dumps({"argv": ["sleep", marker], "probe": ["/bin/true"],
                              "run_dir": host.run_dir})]
    proc = subprocess.Popen(host.inst.nsenter(argv), env=ansible_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: host.facts()["lease_count"] == 1 and host.entry() == "disabled", timeout=60, step=0.1)
        lease = host.facts()["leases"][0]
        module_pid, holder_pid = lease["owner_pid"], lease["pid"]
        assert "AnsiballZ_native_armhf_command" in W.proc_cmdline(module_pid)
        wait_for(lambda: processes_named(marker), timeout=10)
        os.kill(module_pid, signal.SIGKILL)
        wait_for(lambda: host.entry() == "enabled", timeout=10)
        wait_for(lambda: gone(holder_pid), timeout=5)
        wait_for(lambda: not processes_named(marker), timeout=5)
        events = [e["event"] for e in host.facts()["events"]]
        assert "owner_gone" in events, events
        assert_window_gone(host, before)
    finally:
        proc.kill()
        proc.wait()
        for pid in processes_named(marker):
            os.kill(pid, signal.SIGKILL)


def processes_named(text):
    """Pids of the processes whose first argument is ``text``."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/cmdline" % name, "rb") as f:
                    if f.read().split(b"\0")[1:2] == [text.encode()]:
                        found.append(int(name))
            except OSError:
                pass
    return found
