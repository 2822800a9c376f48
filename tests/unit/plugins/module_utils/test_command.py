"""The pure parts of native_armhf_command (plugins/module_utils/_command.py)."""
import errno

import pytest

from ansible_collections.nativearm.binfmt.plugins.module_utils import _command as C


def test_command_argv_from_a_list_or_a_string_never_a_shell():
    assert C.command_argv(["make", "-j4"]) == ["make", "-j4"]
    assert C.command_argv(cmd="./configure --prefix='/opt/a b' $HOME") == ["./configure", "--prefix=/opt/a b", "$HOME"]
    assert C.command_argv([1, "x"]) == ["1", "x"]


@pytest.mark.parametrize("argv, cmd, words", [
    ([], None, "argv/cmd: the command is empty"),
    ([""], None, "argv/cmd: the command is empty"),
    (None, "", "argv/cmd: the command is empty"),
    (None, "echo 'unterminated", "cmd: "),
])
def test_command_argv_refuses_an_empty_or_unsplittable_command(argv, cmd, words):
    with pytest.raises(C.CommandError) as err:
        C.command_argv(argv, cmd)
    assert words in err.value.message


def test_check_chdir():
    assert C.check_chdir(None) is None
    assert C.check_chdir("/src", isdir=lambda p: True) == "/src"
    for bad in ("src", "/missing"):
        with pytest.raises(C.CommandError) as err:
            C.check_chdir(bad, isdir=lambda p: False)
        assert err.value.message.startswith("chdir: %r" % bad)


def test_command_environment_adds_removes_and_checks_names():
    env = C.command_environment({"A": "1", "B": "2"}, {"B": None, "C": 3, "D": "x"})
    assert env == {"A": "1", "C": "3", "D": "x"}
    with pytest.raises(C.CommandError) as err:
        C.command_environment({}, {"A-B": "1"})
    assert "environment: 'A-B'" in err.value.message


def test_stdin_bytes():
    assert C.stdin_bytes(None) is None
    assert C.stdin_bytes("a") == b"a\n" and C.stdin_bytes("a\n") == b"a\n"
    assert C.stdin_bytes("a", add_newline=False) == b"a"


def test_output_text():
    assert C.output_text(b"a\nb\n\n") == "a\nb"
    assert C.output_text(b"a\n", strip_empty_ends=False) == "a\n"
    assert C.output_text(b"\xff ok") == "\ufffd ok" and C.output_text(None) == ""


def test_lease_reason():
    native = {"native": True, "probe": {"reason": "the probe ran natively (exit status 0)"}}
    expected = "native window: qemu-arm was disabled while the command ran; the probe ran natively (exit status 0)"
    assert C.lease_reason(native, "qemu-arm") == expected
    joined = {"native": True, "probe": None, "leases": 3}
    assert "joined a native window already open (3 lease(s))" in C.lease_reason(joined, "qemu-arm")
    fallback = {"native": False, "mode": "emulation", "reason": "Exec format error: this host is x86_64"}
    assert C.lease_reason(fallback, "qemu-arm") == "Exec format error: this host is x86_64"
    asked = {"native": False, "mode": "emulation", "reason": None}
    assert C.lease_reason(asked, "qemu-arm").startswith("mode emulation was asked for")


def test_start_failure():
    assert C.start_failure(["nope"], OSError(errno.ENOENT, "No such file or directory"), False) == (
        127, "the command could not be started: nope: No such file or directory")
    rc, msg = C.start_failure(["./x"], OSError(errno.ENOEXEC, "Exec format error"), True)
    assert rc == 126 and "ran natively in this window" in msg
    assert C.start_failure(["./x"], OSError(errno.EACCES, "Permission denied"), False)[0] == 126
