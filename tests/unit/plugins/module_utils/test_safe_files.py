"""_safe_files.write_atomic: whole-or-nothing writes with an explicit mode and
owner, a symlink at the name refused (never followed; replaced only when asked),
nothing left behind."""
import errno
import os
import stat

import pytest

from ansible_collections.nativearm.binfmt.plugins.module_utils import _safe_files as S


def test_writes_whole_with_the_mode_whatever_the_umask(tmp_path):
    path = str(tmp_path / "f.json")
    old = os.umask(0o077)
    try:
        S.write_atomic(path, "one", 0o644)
    finally:
        os.umask(old)
    assert open(path).read() == "one"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    S.write_atomic(path, b"\x00two", 0o600)
    assert open(path, "rb").read() == b"\x00two"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.listdir(str(tmp_path)) == ["f.json"]


def test_owner_is_set_where_we_are_root(tmp_path):
    path = str(tmp_path / "f")
    S.write_atomic(path, "x", 0o644, owner=(0, 0))
    st = os.stat(path)
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (0, 0)
    else:
        assert st.st_uid == os.geteuid()


@pytest.mark.parametrize("dangling", [False, True])
def test_a_symlink_at_the_name_is_refused_never_followed_nor_replaced(tmp_path, dangling):
    target = tmp_path / "victim"
    if not dangling:
        target.write_text("keep")
    link = tmp_path / "f"
    os.symlink(str(target), str(link))
    with pytest.raises(OSError) as err:
        S.write_atomic(str(link), "new", 0o644)
    assert err.value.errno == errno.ELOOP
    assert str(link) in err.value.strerror and "symlink" in err.value.strerror
    assert os.readlink(str(link)) == str(target)
    assert target.read_text() == "keep" if not dangling else not target.exists()
    assert sorted(os.listdir(str(tmp_path))) == (["f", "victim"] if not dangling else ["f"])   # no temp file


def test_a_symlink_is_refused_relative_to_a_directory_descriptor(tmp_path):
    os.symlink(os.devnull, str(tmp_path / "g.conf"))
    dfd = os.open(str(tmp_path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(OSError) as err:
            S.write_atomic("g.conf", "text\n", 0o644, dir_fd=dfd)
    finally:
        os.close(dfd)
    assert err.value.errno == errno.ELOOP and "g.conf is a symlink" in err.value.strerror
    assert os.readlink(str(tmp_path / "g.conf")) == os.devnull and os.listdir(str(tmp_path)) == ["g.conf"]


def test_replace_link_replaces_the_link_itself_never_its_target(tmp_path):
    target = tmp_path / "victim"
    target.write_text("keep")
    link = tmp_path / "f"
    os.symlink(str(target), str(link))
    S.write_atomic(str(link), "new", 0o644, replace_link=True)
    assert not os.path.islink(str(link)) and link.read_text() == "new"
    assert target.read_text() == "keep"


def test_a_failure_leaves_the_old_file_and_no_temporary_file(tmp_path):
    blocker = tmp_path / "f"
    blocker.mkdir()
    (blocker / "inside").write_text("old")          # rename over a non-empty directory fails
    with pytest.raises(OSError):
        S.write_atomic(str(blocker), "new", 0o644)
    assert sorted(os.listdir(str(tmp_path))) == ["f"]
    assert (blocker / "inside").read_text() == "old"


def test_relative_to_a_directory_descriptor(tmp_path):
    dfd = os.open(str(tmp_path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        S.write_atomic("g.conf", "text\n", 0o644, dir_fd=dfd)
        S.write_atomic("g.conf", "text 2\n", 0o644, dir_fd=dfd)
    finally:
        os.close(dfd)
    assert (tmp_path / "g.conf").read_text() == "text 2\n"
    assert os.listdir(str(tmp_path)) == ["g.conf"]


def test_temp_names_are_hidden_and_unique():
    a, b = S.temp_name("state-qemu-arm.json"), S.temp_name("state-qemu-arm.json")
    assert a != b and a.startswith(".state-qemu-arm.json" + S.TMP_INFIX)
