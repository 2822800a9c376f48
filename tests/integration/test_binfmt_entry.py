"""binfmt_entry on the real kernel, inside private binfmt_misc instances.

Every test runs the module through ``ansible`` inside the sandbox's namespaces
(where the private instance is at the default path) and checks the kernel's
own view of the entry from outside through ``instance.path``.
"""
import os
import subprocess

import pytest

from ansible_env import run_module
from ansible_collections.nativearm.binfmt.plugins.module_utils import binfmt_misc as bm
from ansible_collections.nativearm.binfmt.plugins.module_utils.presets import preset

QEMU_ARM = "/usr/bin/qemu-arm-static"
ARMHF_PROBE = "/usr/lib/arch-test/armhf"


def entry_module(instance, check=False, diff=False, **args):
    return run_module("binfmt_entry", args, check=check, diff=diff, wrap=instance.nsenter)


def qemu_arm(**kw):
    args = dict(name="qemu-arm", arch="arm", interpreter=QEMU_ARM, flags="F")
    args.update(kw)
    return args


def read(instance, name="qemu-arm"):
    return bm.read_entry(name, instance.path)


def test_register_then_idempotent(instance):
    first = entry_module(instance, **qemu_arm())
    assert first["_status"] == "ok", first.get("msg")
    assert first["changed"] is True and first["previous"] is None
    assert first["actions"] == ["register"]
    entry = read(instance)
    assert entry["enabled"] and entry["interpreter"] == QEMU_ARM and entry["flags"] == "F"
    assert entry["magic"] == "7f454c4601010100000000000000000002002800"
    assert entry["mask"] == "ffffffffffffff00fffffffffffffffffeffffff"
    assert first["entry"] == entry
    second = entry_module(instance, **qemu_arm())
    assert second["changed"] is False and second["actions"] == []
    assert second["entry"] == second["previous"] == entry


def test_registered_qemu_arm_really_runs_armhf(instance):
    """The preset is byte-exact: the kernel hands a real armhf binary to qemu-arm."""
    entry_module(instance, **qemu_arm())
    proc = instance.run([ARMHF_PROBE])
    assert proc.returncode == 0, proc.stderr
    entry_module(instance, **qemu_arm(enabled=False))
    proc = instance.run([ARMHF_PROBE])
    assert proc.returncode != 0  # x86_64 cannot run armhf without qemu


def test_check_mode_changes_nothing_and_reports(instance):
    before = instance.snapshot()
    result = entry_module(instance, check=True, diff=True, **qemu_arm())
    assert result["changed"] is True and result["actions"] == ["register"]
    assert instance.snapshot() == before
    assert "interpreter /usr/bin/qemu-arm-static" in result["diff"][0]["after"]
    assert result["diff"][0]["before"] == ""


def test_diff_shows_before_and_after_of_entry(instance):
    entry_module(instance, **qemu_arm())
    result = entry_module(instance, diff=True, **qemu_arm(enabled=False))
    assert result["changed"] and result["actions"] == ["disable"]
    diff = result["diff"][0]
    assert diff["before"].startswith("enabled\n") and diff["after"].startswith("disabled\n")
    assert read(instance)["enabled"] is False


def test_disable_enable_keeps_inode(instance):
    entry_module(instance, **qemu_arm())
    ino = os.stat(os.path.join(instance.path, "qemu-arm")).st_ino
    assert entry_module(instance, **qemu_arm(enabled=False))["changed"]
    assert entry_module(instance, **qemu_arm(enabled=False))["changed"] is False
    assert entry_module(instance, **qemu_arm(enabled=True))["actions"] == ["enable"]
    assert os.stat(os.path.join(instance.path, "qemu-arm")).st_ino == ino
    assert read(instance)["enabled"] is True


def test_absent_removes_and_is_idempotent(instance):
    entry_module(instance, **qemu_arm())
    result = entry_module(instance, name="qemu-arm", state="absent")
    assert result["changed"] and result["entry"] is None and result["previous"]["interpreter"] == QEMU_ARM
    assert read(instance) is None
    assert entry_module(instance, name="qemu-arm", state="absent")["changed"] is False


def test_reregister_on_drift_keeps_disabled_state_requested(instance):
    entry_module(instance, **qemu_arm(flags="PF"))
    result = entry_module(instance, diff=True, **qemu_arm(flags="F", enabled=False))
    assert result["actions"] == ["unregister", "register", "disable"]
    entry = read(instance)
    assert entry["flags"] == "F" and entry["enabled"] is False
    assert "flags: PF" in result["diff"][0]["before"] and "flags: F" in result["diff"][0]["after"]


def test_flags_compared_in_kernel_normal_form(instance):
    entry_module(instance, allow_credentials=True, **qemu_arm(flags="CF"))
    assert read(instance)["flags"] == "OCF"
    assert entry_module(instance, allow_credentials=True, **qemu_arm(flags="OCF"))["changed"] is False


def test_extension_entry_and_colon_in_interpreter(instance, tmp_path):
    odd = tmp_path / "dir:with:colons"
    odd.mkdir()
    interp = odd / "interp"
    interp.write_text("#!/bin/sh\nexit 0\n")
    interp.chmod(0o755)
    result = entry_module(instance, name="odd", type="extension", extension=".zzq", interpreter=str(interp))
    assert result["_status"] == "ok", result.get("msg")
    entry = read(instance, "odd")
    assert entry["interpreter"] == str(interp) and entry["extension"] == "zzq"
    assert entry_module(instance, name="odd", type="extension", extension="zzq",
                        interpreter=str(interp))["changed"] is False


def test_kernel_refusal_puts_previous_back(instance, tmp_path):
    """F makes the kernel open the interpreter at registration; one held open for writing is
    refused with ETXTBSY. The old registration must come back exactly, disabled state included."""
    entry_module(instance, **qemu_arm(enabled=False))
    before = instance.snapshot()
    ino = os.stat(os.path.join(instance.path, "qemu-arm")).st_ino
    busy = tmp_path / "busy-interp"
    busy.write_bytes(open("/bin/true", "rb").read())
    busy.chmod(0o755)
    fd = os.open(str(busy), os.O_WRONLY)
    try:
        result = entry_module(instance, **qemu_arm(interpreter=str(busy)))
    finally:
        os.close(fd)
    assert result["_status"] == "failed"
    assert "ETXTBSY" in result["msg"] and "put back" in result["msg"]
    assert instance.snapshot() == before
    assert os.stat(os.path.join(instance.path, "qemu-arm")).st_ino != ino  # really re-registered


def test_mounts_binfmt_misc_when_missing(tmp_path):
    """In a namespace where nothing is mounted at the module's binfmt_misc path, the module mounts
    an instance there (mount: true), the namespace's own. The path is a scratch directory: the
    default path in a --no-mount namespace is the host's global instance."""
    from sandbox.instance import NSRUN
    import json
    import sys
    from ansible_env import ansible_env
    mount_point = tmp_path / "binfmt_misc"
    mount_point.mkdir()
    result_file = tmp_path / "r.jsonl"
    script = ("ansible localhost -i localhost, -c local -m nativearm.binfmt.binfmt_entry -a \"$1\" >/dev/null; "
              "cat \"$2/status\" \"$2/t\"")
    args = json.dumps({"name": "t", "magic": "6162", "interpreter": "/bin/true", "binfmt_misc": str(mount_point)})
    argv = [sys.executable, NSRUN, "--no-mount", "--", "sh", "-c", script, "sh", args, str(mount_point)]
    proc = subprocess.run(argv, check=False, env=ansible_env(str(result_file)), capture_output=True, text=True, timeout=120)
    assert proc.stdout.startswith("enabled\nenabled\ninterpreter /bin/true\n"), proc.stderr
    assert '"mounted": true' in result_file.read_text()
    assert not os.path.exists(str(mount_point / "register"))  # the mount lived only in the namespace


# -- persistence ---------------------------------------------------------------------------

def dirs(tmp_path):
    """Private descriptor directories; the vendor binfmt.d too (the host's /usr/lib/binfmt.d has
    qemu-user-static's qemu-arm.conf, which /etc/binfmt.d would shadow only with force)."""
    d = dict(binfmts_dir=tmp_path / "binfmts", binfmts_admin_dir=tmp_path / "admin", binfmt_d_dir=tmp_path / "binfmt.d",
             vendor=tmp_path / "usr-lib-binfmt.d")
    for p in d.values():
        p.mkdir(exist_ok=True)
    args = {k: str(v) for k, v in d.items()}
    args["binfmt_d_vendor_dirs"] = [args.pop("vendor")]
    return args


def test_persist_systemd_writes_and_is_idempotent(instance, tmp_path):
    d = dirs(tmp_path)
    result = entry_module(instance, diff=True, persist="systemd", **dict(qemu_arm(), **d))
    assert result["changed"], result.get("msg")
    conf = tmp_path / "binfmt.d" / "qemu-arm.conf"
    text = conf.read_text()
    assert bm.render_register(bm.make_definition("qemu-arm", QEMU_ARM, magic=preset("arm")[0],
                                                 mask=preset("arm")[1], flags="F")) in text
    assert result["descriptor"] == str(conf)
    assert any(x.get("after") == text for x in result["diff"])
    again = entry_module(instance, persist="systemd", **dict(qemu_arm(), **d))
    assert again["changed"] is False


def test_persist_systemd_check_mode_writes_nothing(instance, tmp_path):
    d = dirs(tmp_path)
    result = entry_module(instance, check=True, persist="systemd", **dict(qemu_arm(), **d))
    assert result["changed"] is True
    assert not (tmp_path / "binfmt.d" / "qemu-arm.conf").exists()
    assert read(instance) is None


def test_persist_binfmt_support_imports_and_removes(instance, tmp_path):
    d = dirs(tmp_path)
    result = entry_module(instance, persist="binfmt-support", **dict(qemu_arm(flags="PF"), **d))
    assert result["_status"] == "ok", result.get("msg")
    descriptor = (tmp_path / "binfmts" / "qemu-arm").read_text()
    assert "interpreter %s" % QEMU_ARM in descriptor and "preserve yes" in descriptor
    assert (tmp_path / "admin" / "qemu-arm").exists()  # update-binfmts knows it
    assert read(instance)["flags"] == "PF"
    assert entry_module(instance, persist="binfmt-support", **dict(qemu_arm(flags="PF"), **d))["changed"] is False
    gone = entry_module(instance, state="absent", persist="binfmt-support", name="qemu-arm", **d)
    assert gone["changed"] and read(instance) is None
    assert not (tmp_path / "binfmts" / "qemu-arm").exists()
    assert not (tmp_path / "admin" / "qemu-arm").exists()


def test_package_owned_descriptor_needs_force(instance, tmp_path):
    d = dirs(tmp_path)
    owned = tmp_path / "binfmts" / "qemu-arm"
    owned.write_text("package qemu-user-static\ninterpreter /usr/libexec/qemu-binfmt/arm-binfmt-P\n"
                     "magic \\x7f\\x45\\x4c\\x46\\x01\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\x28\\x00\n"
                     "offset 0\nmask \\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff\n"
                     "credentials no\nfix_binary yes\npreserve yes\n")
    before_text = owned.read_text()
    before = instance.snapshot()
    refused = entry_module(instance, persist="binfmt-support", **dict(qemu_arm(), **d))
    assert refused["_status"] == "failed" and "qemu-user-static" in refused["msg"] and "force" in refused["msg"]
    assert owned.read_text() == before_text and instance.snapshot() == before
    forced = entry_module(instance, persist="binfmt-support", force=True, **dict(qemu_arm(), **d))
    assert forced["_status"] == "ok", forced.get("msg")
    assert "interpreter %s" % QEMU_ARM in owned.read_text()


def test_dpkg_owned_binfmt_d_file_is_refused(instance):
    """/usr/lib/binfmt.d/qemu-arm.conf belongs to qemu-user-static according to dpkg itself."""
    path = "/usr/lib/binfmt.d/qemu-arm.conf"
    if not os.path.exists(path):
        pytest.fail("%s missing: scripts/setup.sh installs qemu-user-static" % path)
    with open(path) as f:
        before = f.read()
    try:
        result = entry_module(instance, persist="systemd", binfmt_d_dir="/usr/lib/binfmt.d", **qemu_arm())
        assert result["_status"] == "failed" and "qemu-user-static" in result["msg"]
    finally:
        with open(path) as f:
            after = f.read()
        if after != before:  # never leave the host's packaged file changed, even if the module failed us
            with open(path, "w") as f:
                f.write(before)
    assert after == before
    assert read(instance) is None


# -- bad input: tests/integration/test_fuzz_bad_inputs.py runs the corpus (the cases once here included)


def test_look_alike_binfmt_misc_is_refused_and_symlink_target_untouched(instance, tmp_path):
    """A directory with a status file and a qemu-arm symlink is not binfmt_misc: nothing is
    written through the link (issue 12, item 8)."""
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "status").write_text("enabled\n")
    (fake / "register").write_text("")
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    os.symlink(str(victim), str(fake / "qemu-arm"))
    for args in (qemu_arm(binfmt_misc=str(fake)), qemu_arm(binfmt_misc=str(fake), enabled=False),
                 dict(name="qemu-arm", state="absent", binfmt_misc=str(fake))):
        result = entry_module(instance, **args)
        assert result["_status"] == "failed"
        assert result["msg"].startswith("binfmt_misc: ") and "is not a binfmt_misc filesystem" in result["msg"]
        assert "Traceback" not in result["msg"] and "MODULE FAILURE" not in result["msg"]
    assert victim.read_text() == "precious\n" and (fake / "register").read_text() == ""
    for call in (lambda: bm.set_enabled("qemu-arm", False, str(fake)), lambda: bm.unregister("qemu-arm", str(fake))):
        with pytest.raises(bm.BinfmtError):
            call()
    assert victim.read_text() == "precious\n"


def test_entries_are_opened_without_following_symlinks(instance):
    """open_entry on the real instance: the directory passes the f_type check and entries are
    opened O_NOFOLLOW relative to it."""
    bm.check_filesystem(instance.path)
    entry_module(instance, **qemu_arm())
    fd = bm.open_entry("qemu-arm", os.O_RDONLY, instance.path)
    try:
        assert os.read(fd, 7) == b"enabled"
    finally:
        os.close(fd)
    assert bm.read_entry_text("nope", instance.path) is None
    assert bm.read_status(instance.path) is True
