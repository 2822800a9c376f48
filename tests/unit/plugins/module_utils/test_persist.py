"""Descriptor files: never through a symlink, masks left alone, root-owned 0644 files (issue 12, item 2)."""
import os
import stat

import pytest

from ansible_collections.nativearm.binfmt.plugins.module_utils import binfmt_misc as bm
from ansible_collections.nativearm.binfmt.plugins.module_utils import descriptors
from ansible_collections.nativearm.binfmt.plugins.module_utils.persist import Persistence
from ansible_collections.nativearm.binfmt.plugins.module_utils.presets import preset


def definition(name="qemu-arm", interpreter="/usr/bin/qemu-arm-static", flags="F"):
    magic, mask, offset = preset("arm")
    return bm.make_definition(name, interpreter, magic=magic, mask=mask, offset=offset, flags=flags)


def params(tmp_path, **kw):
    d = dict(binfmts_dir=tmp_path / "binfmts", binfmts_admin_dir=tmp_path / "admin",
             binfmt_d_dir=tmp_path / "etc", vendor=tmp_path / "usrlib")
    for path in d.values():
        path.mkdir(exist_ok=True)
        path.chmod(0o755)
    p = dict(name="qemu-arm", state="present", persist="systemd", force=False,
             binfmts_dir=str(d["binfmts_dir"]), binfmts_admin_dir=str(d["binfmts_admin_dir"]),
             binfmt_d_dir=str(d["binfmt_d_dir"]), binfmt_d_vendor_dirs=[str(d["vendor"])])
    p.update(kw)
    return p


def plan(p, defn=None):
    persistence = Persistence(defn or definition(), p, dpkg_query="/nonexistent/dpkg-query")
    persistence.plan()
    return persistence


def test_writes_a_root_0644_file_and_is_idempotent(tmp_path):
    p = params(tmp_path)
    first = plan(p)
    assert first.changed and first.action == "write"
    first.apply()
    conf = tmp_path / "etc" / "qemu-arm.conf"
    st = os.lstat(str(conf))
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o644 and st.st_uid == os.geteuid()
    assert conf.read_text() == descriptors.render_binfmt_d(definition())
    assert sorted(os.listdir(str(tmp_path / "etc"))) == ["qemu-arm.conf"]   # no temporary file left
    assert plan(p).changed is False


@pytest.mark.parametrize("state", ["present", "absent"])
def test_a_mask_is_reported_and_left_alone(tmp_path, state):
    p = params(tmp_path, state=state)
    conf = tmp_path / "etc" / "qemu-arm.conf"
    os.symlink(os.devnull, str(conf))
    persistence = plan(p)
    assert persistence.masked and not persistence.changed
    assert any("masked" in w for w in persistence.warnings)
    persistence.apply()
    assert os.readlink(str(conf)) == os.devnull


def test_absent_never_removes_a_mask_even_with_force(tmp_path):
    p = params(tmp_path, state="absent", force=True)
    conf = tmp_path / "etc" / "qemu-arm.conf"
    os.symlink(os.devnull, str(conf))
    persistence = plan(p)
    assert not persistence.changed
    persistence.apply()
    assert os.readlink(str(conf)) == os.devnull


def test_force_replaces_the_mask_itself_never_dev_null(tmp_path):
    p = params(tmp_path, force=True)
    conf = tmp_path / "etc" / "qemu-arm.conf"
    os.symlink(os.devnull, str(conf))
    null_mode = os.stat(os.devnull).st_mode
    persistence = plan(p)
    assert persistence.action == "write"
    assert persistence.diff()[0]["before"] == "symlink to /dev/null\n"
    persistence.apply()
    st = os.lstat(str(conf))
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o644
    assert os.stat(os.devnull).st_mode == null_mode and stat.S_ISCHR(null_mode)


@pytest.mark.parametrize("mode", ["systemd", "binfmt-support"])
def test_a_symlink_elsewhere_is_never_written_through(tmp_path, mode):
    p = params(tmp_path, persist=mode)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    victim.chmod(0o600)
    link = (tmp_path / "etc" / "qemu-arm.conf") if mode == "systemd" else (tmp_path / "binfmts" / "qemu-arm")
    os.symlink(str(victim), str(link))
    with pytest.raises(bm.BinfmtError) as err:
        plan(p)
    assert err.value.field == "persist" and "symlink" in str(err.value)
    assert victim.read_text() == "precious\n" and stat.S_IMODE(victim.stat().st_mode) == 0o600


def test_symlinked_or_shared_directories_are_refused(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    os.symlink(str(real), str(tmp_path / "linked"))
    with pytest.raises(bm.BinfmtError) as err:
        plan(params(tmp_path, binfmt_d_dir=str(tmp_path / "linked")))
    assert err.value.field == "binfmt_d_dir" and "symlink" in str(err.value)
    p = params(tmp_path)
    (tmp_path / "etc").chmod(0o1777)
    with pytest.raises(bm.BinfmtError) as err:
        plan(p)
    assert err.value.field == "binfmt_d_dir" and "writable by other users" in str(err.value)
    assert plan(dict(p, state="absent")).changed is False     # nothing to write or remove: no objection


def test_shadowing_a_vendor_file_needs_force(tmp_path):
    p = params(tmp_path)
    (tmp_path / "usrlib" / "qemu-arm.conf").write_text(":qemu-arm:M::\\x7fELF::/usr/bin/qemu-arm-static:F\n")
    with pytest.raises(bm.BinfmtError) as err:
        plan(p)
    assert "would silently override" in str(err.value) and "force: true" in str(err.value)
    assert plan(dict(p, force=True)).action == "write"


def test_competing_binfmt_support_descriptor_is_reported(tmp_path):
    p = params(tmp_path)
    (tmp_path / "binfmts" / "qemu-arm").write_text("package qemu-user-static\ninterpreter /usr/bin/qemu-arm-static\n")
    persistence = plan(p)
    assert any("update-binfmts" in w and "binfmts/qemu-arm" in w for w in persistence.warnings)


def test_a_failed_write_puts_the_previous_file_back(tmp_path):
    p = params(tmp_path)
    conf = tmp_path / "etc" / "qemu-arm.conf"
    conf.write_text("# mine\n")
    conf.chmod(0o644)
    persistence = plan(p)
    persistence.after = None                     # a write that fails after the plan
    with pytest.raises(bm.BinfmtError):
        persistence.apply()
    assert conf.read_text() == "# mine\n"
