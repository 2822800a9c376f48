"""_holder_handle: the pipe messages between an opener and its holder, and the
opener's side of them (pipes within this process: nothing is forked)."""
import os

import pytest

from ansible_collections.nativearm.binfmt.plugins.module_utils import _holder_handle as H


@pytest.mark.parametrize("word, arg, line", [
    (H.READY, None, "ready"), (H.HOLD, "native", "hold native"), (H.HELD, 1099511640000, "held 1099511640000"),
    (H.BUSY, None, "busy"), (H.COMMIT, "emulation", "commit emulation"), (H.OK, None, "ok"),
    (H.ABORT, None, "abort"),
])
def test_messages_round_trip(word, arg, line):
    assert H.message(word, arg) == line
    assert H.parse(line) == (word, None if arg is None else str(arg))


def test_parse_of_no_line():
    assert H.parse(None) == (None, None)
    assert H.parse("") == (None, None)
    assert H.parse("error cannot open register: [Errno 13]") == (H.ERROR, "cannot open register: [Errno 13]")


def test_lines_through_a_pipe():
    """One message at a time (each side waits for the answer before it says more)."""
    r, w = os.pipe()
    try:
        assert H.send_line(w, H.message(H.HOLD, "none"))
        assert H.read_line(r) == "hold none"
        assert H.send_line(w, H.OK)
        assert H.read_line(r) == "ok"
        os.close(w)
        w = None
        assert H.read_line(r) is None                   # end of file: the other side is gone
    finally:
        os.close(r)
        if w is not None:
            os.close(w)
    r, w = os.pipe()
    os.close(r)
    try:
        assert H.send_line(w, H.OK) is False            # nobody reads: EPIPE (SIGPIPE is ignored by Python)
    finally:
        os.close(w)


def _handle():
    """A handle whose 'holder' is this test: (handle, holder's ctl read end, holder's status write end)."""
    ctl_r, ctl_w = os.pipe()
    st_r, st_w = os.pipe()
    return H.HolderHandle(0, ctl_w, st_r, "lease-a-00000000.lock"), ctl_r, st_w


def test_handle_reads_lines_with_a_timeout():
    handle, ctl_r, st_w = _handle()
    try:
        assert handle.read_line(0.01) is None           # nothing said yet
        os.write(st_w, b"held 5\nbu")
        assert handle.read_line(1) == "held 5"
        assert handle.read_line(0.01) is None           # half a line
        os.write(st_w, b"sy\n")
        assert handle.read_line(1) == "busy"
    finally:
        handle.close_pipes()
        os.close(ctl_r)
        os.close(st_w)
    assert handle.ctl_w == handle.st_r == -1


def test_commit_waits_for_ok_and_end_of_file():
    handle, ctl_r, st_w = _handle()
    os.write(st_w, b"ok\n")
    os.close(st_w)                                      # the holder closed its pipes after "ok"
    try:
        assert handle.commit("native") is True
        assert H.read_line(ctl_r) == "commit native"
    finally:
        os.close(ctl_r)
    assert handle.ctl_w == handle.st_r == -1


def test_commit_without_ok_fails():
    handle, ctl_r, st_w = _handle()
    os.close(st_w)                                      # the holder ended before it answered
    try:
        assert handle.commit("emulation") is False
    finally:
        os.close(ctl_r)
    assert handle.ctl_w == handle.st_r == -1
