"""Issue 12, item by item, on the real kernel in private binfmt_misc instances.

Module calls go through tests/integration/module_harness.py inside the sandbox (the module's
main() in-process, result and host snapshot per call); kernel-level checks use the instance
directly through ``instance.path``.
"""
import errno
import json
import os
import stat

import pytest

from module_harness import run_in
from ansible_collections.nativearm.binfmt.plugins.module_utils import binfmt_misc as bm
from ansible_collections.nativearm.binfmt.plugins.module_utils import drift
from ansible_collections.nativearm.binfmt.plugins.module_utils.presets import preset

QEMU_ARM = "/usr/bin/qemu-arm-static"


def qemu_arm(interpreter=QEMU_ARM, flags="F", name="qemu-arm"):
    magic, mask, offset = preset("arm")
    return bm.make_definition(name, interpreter, magic=magic, mask=mask, offset=offset, flags=flags)


def dot_path(total_bytes):
    """QEMU_ARM reached through './' components: an existing path of ``total_bytes`` bytes."""
    pad = total_bytes - len(QEMU_ARM)
    return "/usr/bin/" + "./" * (pad // 2) + ("/" if pad % 2 else "") + "qemu-arm-static"


def call(instance, tmp_path, module, args, check=False, watch=()):
    record = run_in(instance, [{"id": "x", "module": module, "args": args, "check": check,
                                "watch": [bm.DEFAULT_PATH] + [str(w) for w in watch]}], tmp_path)["x"]
    assert record["error"] is None, record["error"]
    text = json.dumps(record["result"])
    assert "Traceback" not in text and "MODULE FAILURE" not in text, text
    return record


def descriptor_dirs(tmp_path):
    d = {}
    for key, name in (("binfmts_dir", "binfmts"), ("binfmts_admin_dir", "admin"), ("binfmt_d_dir", "etc"),
                      ("vendor", "usrlib")):
        path = tmp_path / name
        path.mkdir()
        path.chmod(0o755)
        d[key] = str(path)
    d["binfmt_d_vendor_dirs"] = [d.pop("vendor")]
    return d


# -- 1. a kernel refusal never loses the old entry -------------------------------------------

def test_kernel_limit_is_the_modelled_one_in_bytes(instance):
    """The kernel takes a register line of exactly MAX_REGISTER_LENGTH bytes and refuses one byte
    more with EINVAL: render_register refuses that line before the kernel sees it."""
    fixed = len(bm.render_register(qemu_arm("/x"))) - 2
    fits = qemu_arm(dot_path(bm.MAX_REGISTER_LENGTH - fixed))
    line = bm.render_register(fits)
    assert len(line.encode()) == bm.MAX_REGISTER_LENGTH and os.path.samefile(fits["interpreter"], QEMU_ARM)
    bm.write_entry("register", line, instance.path)
    assert bm.read_entry("qemu-arm", instance.path)["interpreter"] == fits["interpreter"]
    bm.unregister("qemu-arm", instance.path)
    longer = dot_path(bm.MAX_REGISTER_LENGTH - fixed + 1)
    with pytest.raises(OSError) as err:
        bm.write_entry("register", line.replace(fits["interpreter"], longer), instance.path)
    assert err.value.errno == errno.EINVAL
    with pytest.raises(bm.BinfmtError) as refused:
        qemu_arm(longer)
    assert refused.value.field == "interpreter" and "bytes" in str(refused.value)
    assert bm.read_entry("qemu-arm", instance.path) is None


def test_overlong_reregistration_keeps_the_old_entry(instance, tmp_path):
    """Item 1: re-registering with an existing interpreter whose register line is too long (many
    './') is refused by name and the old entry stays byte-for-byte."""
    bm.register(qemu_arm(flags="PF"), instance.path)
    bm.set_enabled("qemu-arm", False, instance.path)
    before = instance.snapshot()
    record = call(instance, tmp_path, "binfmt_entry", dict(name="qemu-arm", arch="arm", flags="F",
                                                           interpreter=dot_path(1900)))
    assert record["result"]["failed"] and record["result"]["msg"].startswith("interpreter: ")
    assert "bytes" in record["result"]["msg"]
    assert record["unchanged"] and instance.snapshot() == before


def test_refusal_after_the_first_write_rolls_back(instance):
    """The kernel refuses the new registration after the old one was unregistered (F opens a
    missing interpreter: ENOENT); apply_steps puts the old one back, enabled state included."""
    old = qemu_arm(flags="PF")
    bm.register(old, instance.path)
    bm.set_enabled("qemu-arm", False, instance.path)
    previous = bm.read_entry("qemu-arm", instance.path)
    before = instance.snapshot()
    new = qemu_arm("/nonexistent/qemu-arm", flags="F")
    with pytest.raises(bm.ApplyError) as err:
        bm.apply_steps("qemu-arm", ["unregister", "register", "disable"], new, previous, instance.path, check=False)
    assert err.value.errno == errno.ENOENT and err.value.restored is True
    assert "ENOENT" in str(err.value) and "put back unchanged" in str(err.value)
    assert instance.snapshot() == before


def test_drift_shares_the_rollback(instance):
    """Item 6: binfmt_drift's register path is the same routine: a refusal puts the entry back."""
    bm.register(qemu_arm(flags="PF"), instance.path)
    before = instance.snapshot()
    item = drift.plan_drift(
        [{"name": "qemu-arm", "state": "present", "enabled": True, "alternatives": [], "source": "given",
          "definition": qemu_arm("/nonexistent/qemu-arm")}], bm.read_all_entries(instance.path))[0]
    assert item["steps"] == ["unregister", "register"]
    with pytest.raises(bm.BinfmtError) as err:      # refused before any write: no such interpreter
        drift.apply_item(item, item["expected"], instance.path)
    assert err.value.field == "interpreter" and "does not exist" in str(err.value)
    assert instance.snapshot() == before


def test_drift_refuses_a_packaged_descriptor_without_its_interpreter(instance, tmp_path):
    """Item 6: a packaged binfmt.d descriptor whose interpreter is not installed is not registered."""
    usrlib = tmp_path / "usrlib"
    usrlib.mkdir()
    binfmts = tmp_path / "binfmts"     # empty: the host's /usr/share/binfmts is not read
    binfmts.mkdir()
    magic, mask, _offset = preset("arm")
    (usrlib / "qemu-arm.conf").write_text(":qemu-arm:M::%s:%s:/usr/bin/qemu-arm-not-installed:F\n" % (magic, mask))
    before = instance.snapshot()
    record = call(instance, tmp_path, "binfmt_drift", dict(entries=[{"name": "qemu-arm"}], window=False,
                                                           descriptor_dirs=[str(binfmts), str(usrlib)]))
    result = record["result"]
    assert result["failed"] and "interpreter: /usr/bin/qemu-arm-not-installed does not exist" in result["msg"]
    assert record["unchanged"] and instance.snapshot() == before


# -- 2. a binfmt.d mask is never turned into a writable file ---------------------------------

def test_mask_is_reported_left_alone_and_never_removed(instance, tmp_path):
    d = descriptor_dirs(tmp_path)
    mask = os.path.join(d["binfmt_d_dir"], "qemu-arm.conf")
    os.symlink(os.devnull, mask)
    args = dict(name="qemu-arm", arch="arm", interpreter=QEMU_ARM, flags="F", persist="systemd", **d)
    present = call(instance, tmp_path, "binfmt_entry", args, watch=[d["binfmt_d_dir"]])["result"]
    assert present["masked"] is True and present.get("failed") is not True
    assert "is masked (a symlink to /dev/null" in json.dumps(present.get("warnings"))
    assert os.readlink(mask) == os.devnull and stat.S_ISCHR(os.stat(os.devnull).st_mode)
    for force in (False, True):
        absent = call(instance, tmp_path, "binfmt_entry", dict(args, state="absent", force=force))["result"]
        assert absent.get("failed") is not True and absent["masked"] is True
        assert os.readlink(mask) == os.devnull


def test_force_replaces_a_mask_with_a_root_0644_file(instance, tmp_path):
    d = descriptor_dirs(tmp_path)
    mask = os.path.join(d["binfmt_d_dir"], "qemu-arm.conf")
    os.symlink(os.devnull, mask)
    args = dict(name="qemu-arm", arch="arm", interpreter=QEMU_ARM, flags="F", persist="systemd", force=True, **d)
    result = call(instance, tmp_path, "binfmt_entry", args)["result"]
    assert result["changed"] and result.get("failed") is not True, result
    st = os.lstat(mask)
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o644 and st.st_uid == 0 and st.st_gid == 0
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)


# -- 3. control characters and byte lengths --------------------------------------------------

@pytest.mark.parametrize("char", ["\r", "\v", "\x0c", "\x85", "\u2028"])
def test_no_second_line_can_be_injected(instance, tmp_path, char):
    d = descriptor_dirs(tmp_path)
    interp = QEMU_ARM + char + ":evil:M::\\x7fELF::/tmp/evil:C"
    record = call(instance, tmp_path, "binfmt_entry", dict(name="qemu-arm", arch="arm", interpreter=interp,
                                                           persist="systemd", **d), watch=[d["binfmt_d_dir"]])
    assert record["result"]["failed"] and record["result"]["msg"].startswith("interpreter: ")
    assert record["unchanged"] and os.listdir(d["binfmt_d_dir"]) == []


@pytest.mark.parametrize("name", ["-qemu", "qemu arm", "qemu\varm", "x" * 250, "é" * 100])
def test_unsafe_names_are_refused(instance, tmp_path, name):
    record = call(instance, tmp_path, "binfmt_entry", dict(name=name, arch="arm", interpreter=QEMU_ARM))
    assert record["result"]["failed"] and record["result"]["msg"].startswith("name: ")
    assert record["unchanged"]


def test_multibyte_interpreter_over_the_limit_in_bytes(instance, tmp_path):
    fixed = len(bm.render_register(qemu_arm("/x"))) - 2
    interp = "/" + "é" * ((bm.MAX_REGISTER_LENGTH - fixed) // 2 + 1)
    assert len(interp) < bm.MAX_REGISTER_LENGTH - fixed < len(interp.encode())
    record = call(instance, tmp_path, "binfmt_entry", dict(name="qemu-arm", arch="arm", interpreter=interp))
    assert record["result"]["msg"].startswith("interpreter: ") and "bytes" in record["result"]["msg"]
    assert record["unchanged"]


# -- 4. C is gated in namespaces too ---------------------------------------------------------

@pytest.mark.parametrize("flags", ["C", "CF", "OCF"])
def test_namespace_command_gates_c(instance, tmp_path, flags):
    record = call(instance, tmp_path, "binfmt_namespace_command",
                  dict(argv=["/bin/true"], mode="emulation", flags=flags, interpreter=QEMU_ARM))
    assert record["result"]["failed"] and record["result"]["msg"].startswith("flags: ")
    assert "allow_credentials" in record["result"]["msg"]


# -- 5. persist: systemd and packaged descriptors --------------------------------------------

def test_shadowing_a_vendor_file_needs_force_and_competitors_are_reported(instance, tmp_path):
    d = descriptor_dirs(tmp_path)
    vendor = os.path.join(d["binfmt_d_vendor_dirs"][0], "qemu-arm.conf")
    with open(vendor, "w") as f:
        f.write(":qemu-arm:M::\\x7fELF::/usr/bin/qemu-arm-static:F\n")
    with open(os.path.join(d["binfmts_dir"], "qemu-arm"), "w") as f:
        f.write("package qemu-user-static\ninterpreter /usr/bin/qemu-arm-static\nmagic \\x7fELF\n")
    args = dict(name="qemu-arm", arch="arm", interpreter=QEMU_ARM, flags="F", persist="systemd", **d)
    refused = call(instance, tmp_path, "binfmt_entry", args, watch=[d["binfmt_d_dir"]])
    assert refused["result"]["failed"] and "would silently override %s" % vendor in refused["result"]["msg"]
    assert refused["unchanged"]
    forced = call(instance, tmp_path, "binfmt_entry", dict(args, force=True))["result"]
    assert forced["changed"] and forced.get("failed") is not True, forced
    assert "through update-binfmts (binfmt-support)" in json.dumps(forced.get("warnings"))


# -- 7. binfmt_info and binfmt_drift: messages, never tracebacks -----------------------------

def test_info_and_drift_fail_with_a_message(instance, tmp_path):
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "status").write_text("enabled\n")
    info = call(instance, tmp_path, "binfmt_info", dict(binfmt_misc=str(fake), probe=False))["result"]
    assert info["failed"] and "is not a binfmt_misc filesystem" in info["msg"]
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = call(instance, tmp_path, "binfmt_drift", dict(entries=[], window=False,
                                                           report=str(blocker / "sub" / "report.json")))["result"]
    # refused before anything changes, naming the option (report) and why
    assert result["failed"] and result["msg"].startswith("report: ") and "Not a directory" in result["msg"]
