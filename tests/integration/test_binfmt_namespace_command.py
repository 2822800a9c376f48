"""binfmt_namespace_command on the real kernel: each run gets its own nested
user + mount namespace with a private binfmt_misc, inside a private instance
that plays the host (whose entries must stay exactly as they were)."""
import os
import subprocess

import pytest

from ansible_env import run_module
from ansible_collections.nativearm.binfmt.plugins.module_utils import binfmt_misc as bm
from ansible_collections.nativearm.binfmt.plugins.module_utils.presets import preset

MACHINE = os.uname().machine


@pytest.fixture(scope="module")
def armhf_binary(tmp_path_factory):
    """A static armhf program built with the cross compiler."""
    src = tmp_path_factory.mktemp("armhf") / "hello.c"
    src.write_text('#include <stdio.h>\nint main(void){puts("armhf-ok");return 0;}\n')
    out = src.parent / "hello"
    subprocess.run(["arm-linux-gnueabihf-gcc", "-static", "-O2", "-o", str(out), str(src)], check=True)
    return str(out)


def host_with_qemu_arm(instance):
    """The instance plays a host whose qemu-arm is registered and disabled (admin's choice)."""
    magic, mask, offset = preset("arm")
    bm.register(bm.make_definition("qemu-arm", "/usr/bin/qemu-arm-static", magic=magic, mask=mask,
                                   offset=offset, flags="F"), instance.path)
    bm.set_enabled("qemu-arm", False, instance.path)
    return instance.snapshot()


def nsc(instance, check=False, **args):
    return run_module("binfmt_namespace_command", args, check=check, wrap=instance.nsenter)


def test_auto_mode_runs_armhf_and_leaves_the_host_entry_alone(instance, armhf_binary):
    before = host_with_qemu_arm(instance)
    result = nsc(instance, argv=[armhf_binary])
    assert result["_status"] == "ok", result.get("msg")
    assert result["rc"] == 0 and result["stdout"] == "armhf-ok\n"
    assert result["changed"] is True
    if MACHINE == "x86_64":
        # the native probe fails for real, so qemu-arm was registered privately
        assert result["mode"] == "emulation" and result["native"] is False
        assert "native probe failed" in result["reason"]
        # the collection's one default probe: the armhf loader loading the armhf libc
        assert "ld-linux-armhf.so.3 --library-path" in result["reason"]
        assert "libc.so.6: Exec format error" in result["reason"]
        assert [e["name"] for e in result["entries"]] == ["qemu-arm"]
        assert result["entries"][0]["enabled"] is True
    assert instance.snapshot() == before  # the "host" qemu-arm is still disabled, untouched


def test_native_mode_has_no_qemu_arm(instance, armhf_binary):
    before = host_with_qemu_arm(instance)
    result = nsc(instance, argv=[armhf_binary], mode="native")
    if MACHINE == "x86_64":
        assert result["_status"] == "failed"
        assert result["rc"] == 126
        assert "Exec format error" in result["msg"] and "no qemu-arm" in result["msg"]
        assert result["entries"] == []
    else:
        assert result["rc"] == 0
    assert instance.snapshot() == before


def test_emulation_mode_registers_only_qemu_arm(instance, armhf_binary):
    result = nsc(instance, argv=["sh", "-c", "ls /proc/sys/fs/binfmt_misc; " + armhf_binary],
                 mode="emulation")
    assert result["_status"] == "ok", result.get("msg")
    assert result["stdout"].split() == ["qemu-arm", "register", "status", "armhf-ok"]
    assert result["mode"] == "emulation" and result["native"] is False
    assert instance.snapshot() == {"status": "enabled\n"}


def test_string_command_without_shell_chdir_environment_and_stdin(instance, tmp_path):
    result = nsc(instance, cmd="sh -c 'echo \"$PWD $GREETING\"; cat'", chdir=str(tmp_path),
                 environment={"GREETING": "hi there"}, stdin="from stdin\n", mode="native")
    assert result["_status"] == "ok", result.get("msg")
    assert result["stdout"] == "%s hi there\nfrom stdin\n" % tmp_path
    shell = nsc(instance, cmd="echo a | tr a b", shell=True, mode="native")
    assert shell["stdout"] == "b\n"
    literal = nsc(instance, cmd="echo a | tr a b", mode="native")
    assert literal["stdout"] == "a | tr a b\n"  # no shell unless asked


def test_failed_command_keeps_its_rc_and_output(instance):
    result = nsc(instance, argv=["sh", "-c", "echo out; echo err >&2; exit 7"], mode="native")
    assert result["_status"] == "failed"
    assert (result["rc"], result["stdout"], result["stderr"]) == (7, "out\n", "err\n")
    assert "7" in result["msg"]


def test_own_uid_map_and_private_instance(instance):
    result = nsc(instance, argv=["sh", "-c", "cat /proc/self/uid_map; id -u; grep binfmt_misc /proc/self/mountinfo | wc -l"],
                 mode="native")
    lines = result["stdout"].split("\n")
    assert lines[0].split() == ["0", "0", "4294967295"]
    assert lines[1] == "0"


@pytest.mark.parametrize("args, words", [
    ({"argv": ["true"], "chdir": "relative/dir"}, "chdir"),
    ({"argv": ["true"], "chdir": "/nonexistent/dir"}, "chdir"),
    ({"argv": []}, "argv/cmd"),
    ({"argv": ["true"], "cmd": "true"}, "mutually exclusive"),
    ({"chdir": "/tmp"}, "one of the following is required"),
    ({"argv": ["true"], "mode": "turbo"}, "mode"),
    ({"argv": ["/nonexistent/program"]}, "No such file"),
])
def test_bad_input(instance, args, words):
    result = nsc(instance, **args)
    assert result["_status"] == "failed"
    assert words in result["msg"]
    assert instance.snapshot() == {"status": "enabled\n"}


def test_check_mode_runs_nothing(instance, tmp_path):
    marker = tmp_path / "ran"
    result = nsc(instance, check=True, argv=["touch", str(marker)])
    assert result["_status"] == "skipped"
    assert not marker.exists()
