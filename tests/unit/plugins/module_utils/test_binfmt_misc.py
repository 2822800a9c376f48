import os

import pytest

from ansible_collections.nativearm.binfmt.plugins.module_utils import binfmt_misc as bm
from ansible_collections.nativearm.binfmt.plugins.module_utils.presets import PRESETS, preset

QEMU_ARM_ENTRY = """enabled
interpreter /usr/libexec/qemu-binfmt/arm-binfmt-P
flags: PF
offset 0
magic 7f454c4601010100000000000000000002002800
mask ffffffffffffff00fffffffffffffffffeffffff
"""


def arm(**kw):
    magic, mask, offset = preset("arm")
    args = dict(magic=magic, mask=mask, offset=offset, flags="F")
    args.update(kw)
    return bm.make_definition("qemu-arm", "/usr/bin/qemu-arm-static", **args)


# -- parsing -----------------------------------------------------------------------------

def test_parse_magic_entry():
    e = bm.parse_entry(QEMU_ARM_ENTRY, "qemu-arm")
    assert e == {"name": "qemu-arm", "enabled": True, "interpreter": "/usr/libexec/qemu-binfmt/arm-binfmt-P",
                 "flags": "PF", "type": "magic", "offset": 0,
                 "magic": "7f454c4601010100000000000000000002002800",
                 "mask": "ffffffffffffff00fffffffffffffffffeffffff", "extension": None}


def test_parse_disabled_extension_entry_without_flags():
    e = bm.parse_entry("disabled\ninterpreter /usr/bin/jexec\nflags: \nextension .jar\n", "jar")
    assert e["enabled"] is False and e["type"] == "extension" and e["extension"] == "jar"
    assert e["flags"] == "" and e["magic"] is None and e["offset"] is None


def test_parse_entry_without_mask_has_mask_none():
    e = bm.parse_entry("enabled\ninterpreter /bin/x\nflags: OC\noffset 3\nmagic 6162\n")
    assert e["mask"] is None and e["offset"] == 3 and e["flags"] == "OC"


def test_parse_entry_rejects_garbage():
    with pytest.raises(ValueError):
        bm.parse_entry("hello\n")


def test_parse_status():
    assert bm.parse_status("enabled\n") is True
    assert bm.parse_status("disabled\n") is False


MOUNTINFO = """22 1 0:21 / /proc rw,nosuid - proc proc rw
40 22 0:35 / /proc/sys/fs/binfmt_misc rw,relatime - autofs systemd-1 rw
41 40 0:36 / /proc/sys/fs/binfmt_misc rw,relatime - binfmt_misc binfmt_misc rw
50 1 0:40 / /mnt/my\\040dir rw - binfmt_misc none rw
"""


def test_mountinfo_last_mount_wins_and_escapes():
    assert bm.parse_mountinfo(MOUNTINFO, "/proc/sys/fs/binfmt_misc") is True
    assert bm.parse_mountinfo(MOUNTINFO.splitlines()[1], "/proc/sys/fs/binfmt_misc") is False
    assert bm.parse_mountinfo(MOUNTINFO, "/mnt/my dir") is True
    assert bm.parse_mountinfo(MOUNTINFO, "/proc") is False


@pytest.mark.parametrize("release,size", [("6.18.44", 256), ("5.1.0", 256), ("5.0.21", 128), ("4.19.0-27-arm64", 128), ("", 256)])
def test_kernel_buf_size(release, size):
    assert bm.kernel_buf_size(release) == size


# -- hex and flags -------------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ("7f454c46", b"\x7fELF"), ("7F454C46", b"\x7fELF"), ("\\x7fELF", b"\x7fELF"),
    ("\\x7f\\x45\\x4c\\x46", b"\x7fELF"), ("MZ\\x00", b"MZ\x00"),
])
def test_parse_hex_forms(text, expected):
    assert bm.parse_hex(text, "magic") == expected


@pytest.mark.parametrize("text", ["7f4", "zz", "MZ", "\\x7", "\\xgg", "\\n", "a b", "\\x7f\u00e9"])
def test_parse_hex_rejects_malformed(text):
    with pytest.raises(bm.BinfmtError) as err:
        bm.parse_hex(text, "mask")
    assert err.value.field == "mask"


def test_escape_hex_round_trip():
    data = bytes(range(256))
    assert bm.parse_hex(bm.escape_hex(data), "magic") == data


@pytest.mark.parametrize("given,normal", [("", ""), ("F", "F"), ("FP", "PF"), ("C", "OC"), ("cf", "OCF"),
                                          ("POCF", "POCF"), ("OO", "O"), (None, "")])
def test_normalize_flags(given, normal):
    assert bm.normalize_flags(given) == normal


def test_normalize_flags_rejects_unknown():
    with pytest.raises(bm.BinfmtError, match="flags: unknown flag"):
        bm.normalize_flags("PX")


# -- definitions ---------------------------------------------------------------------------

def test_arm_definition_matches_kernel_view():
    d = arm()
    e = bm.parse_entry(QEMU_ARM_ENTRY.replace("arm-binfmt-P", "x").replace("PF", "F"), "qemu-arm")
    e["interpreter"] = "/usr/bin/qemu-arm-static"
    assert bm.same_definition(e, d)


def test_arm_preset_is_byte_exact_qemu():
    magic, mask, offset = preset("arm")
    assert bm.parse_hex(magic, "magic") == (b"\x7fELF\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00"
                                            b"\x02\x00\x28\x00")
    assert bm.parse_hex(mask, "mask") == (b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff"
                                          b"\xfe\xff\xff\xff")
    assert offset == 0


@pytest.mark.parametrize("arch", sorted(PRESETS))
def test_every_preset_is_a_valid_elf_definition(arch):
    magic, mask, offset = preset(arch)
    d = bm.make_definition("qemu-" + arch, "/usr/bin/qemu-%s-static" % arch, magic=magic, mask=mask, offset=offset)
    assert d["magic"].startswith("7f454c46") and len(d["magic"]) == len(d["mask"])


def test_required_presets_exist():
    assert {"arm", "armeb", "aarch64", "riscv64", "x86_64", "i386", "ppc64le", "s390x"} <= set(PRESETS)


def test_render_register_uses_colon_and_escapes_everything():
    line = bm.render_register(arm())
    assert line == (":qemu-arm:M::" + "".join("\\x%02x" % b for b in bytes.fromhex(arm()["magic"]))
                    + ":" + "".join("\\x%02x" % b for b in bytes.fromhex(arm()["mask"]))
                    + ":/usr/bin/qemu-arm-static:F")


def test_render_register_picks_another_delimiter_for_colon_paths():
    d = bm.make_definition("x", "/opt/a:b/interp", magic="6162")
    line = bm.render_register(d)
    assert line[0] != ":" and line.split(line[0])[6] == "/opt/a:b/interp"


def test_render_extension_and_offset():
    assert bm.render_register(bm.make_definition("jar", "/usr/bin/jexec", type="extension", extension=".jar",
                                                 flags="")) == ":jar:E::jar::/usr/bin/jexec:"
    assert bm.render_register(bm.make_definition("o", "/bin/x", magic="ab", offset=5)) == ":o:M:5:\\xab::/bin/x:"


def test_offset_limit_matches_kernel_buffer():
    bm.make_definition("x", "/bin/x", magic="61626364", offset=252)
    with pytest.raises(bm.BinfmtError, match="^offset:"):
        bm.make_definition("x", "/bin/x", magic="61626364", offset=253)
    with pytest.raises(bm.BinfmtError, match="^offset:"):
        bm.make_definition("x", "/bin/x", magic="61626364", offset=126, buf_size=128)


@pytest.mark.parametrize("kwargs,field", [
    (dict(name=""), "name"), (dict(name="."), "name"), (dict(name=".."), "name"), (dict(name="a/b"), "name"),
    (dict(name="register"), "name"), (dict(name="status"), "name"),
    (dict(interpreter=""), "interpreter"), (dict(interpreter="bin/x"), "interpreter"),
    (dict(interpreter="/bin/x\n"), "interpreter"),
    (dict(magic=""), "magic"), (dict(magic="xyz"), "magic"), (dict(mask="ff"), "mask"),
    (dict(offset=-1), "offset"), (dict(offset="x"), "offset"), (dict(flags="Z"), "flags"),
    (dict(type="script"), "type"), (dict(extension="jar"), "extension"),
    (dict(type="extension", magic=None, extension=None), "extension"),
    (dict(type="extension", magic="6162", extension="jar"), "magic"),
    (dict(type="extension", magic=None, extension="a/b"), "extension"),
])
def test_make_definition_names_the_bad_field(kwargs, field):
    args = dict(name="t", interpreter="/bin/x", type="magic", magic="6162", mask=None, offset=0,
                extension=None, flags="")
    args.update(kwargs)
    with pytest.raises(bm.BinfmtError) as err:
        bm.make_definition(**args)
    assert err.value.field == field


def test_register_string_length_limit():
    with pytest.raises(bm.BinfmtError, match="limit is 1920"):
        bm.render_register(bm.make_definition("x", "/" + "a" * 1920, magic="ab"))


# -- planning ----------------------------------------------------------------------------

def test_plan_register_when_absent_and_nothing_when_same():
    d = arm()
    assert bm.plan_entry(None, d) == ["register"]
    assert bm.plan_entry(None, d, enabled=False) == ["register", "disable"]
    assert bm.plan_entry(bm.expected_entry(d, True), d) == []


def test_plan_toggle_and_drift_and_absent():
    d = arm()
    cur = bm.expected_entry(d, False)
    assert bm.plan_entry(cur, d) == ["enable"]
    assert bm.plan_entry(bm.expected_entry(d, True), d, enabled=False) == ["disable"]
    drifted = dict(bm.expected_entry(d, True), interpreter="/usr/bin/qemu-arm")
    assert bm.plan_entry(drifted, d) == ["unregister", "register"]
    assert bm.plan_entry(cur, d, state="absent") == ["unregister"]
    assert bm.plan_entry(None, d, state="absent") == []


def test_flags_compared_in_normal_form():
    d = arm(flags="CF")
    assert d["flags"] == "OCF"
    assert bm.plan_entry(bm.expected_entry(arm(flags="OCF"), True), d) == []


def test_matches_applies_mask_and_offset_like_the_kernel():
    entry = bm.expected_entry(arm(), True)
    armhf_header = bytes.fromhex("7f454c4601010103000000000000000003002800") + b"\0" * 40  # ET_DYN, OSABI 3
    assert bm.matches(entry, armhf_header)
    aarch64_header = bytes.fromhex("7f454c460201010000000000000000000200b700")
    assert not bm.matches(entry, aarch64_header)
    assert not bm.matches(entry, armhf_header[:10])
    ext = bm.expected_entry(bm.make_definition("jar", "/bin/x", type="extension", extension="jar"), True)
    assert bm.matches(ext, b"", "app.jar") and not bm.matches(ext, b"", "app.jar.txt")


# -- the filesystem check (fstatfs on the directory, O_NOFOLLOW entries) --------------------

def test_check_filesystem_refuses_a_look_alike_directory(tmp_path):
    (tmp_path / "status").write_text("enabled\n")
    with pytest.raises(bm.BinfmtError) as err:
        bm.check_filesystem(str(tmp_path))
    assert err.value.field == "binfmt_misc"
    assert "is not a binfmt_misc filesystem (f_type 0x" in str(err.value)
    assert "/proc/sys/fs/binfmt_misc" in str(err.value)


def test_look_alike_directory_is_neither_mounted_nor_readable(tmp_path):
    (tmp_path / "status").write_text("enabled\n")
    (tmp_path / "qemu-arm").write_text(QEMU_ARM_ENTRY)
    with pytest.raises(bm.BinfmtError):
        bm.is_mounted(str(tmp_path))
    for call in (lambda: bm.read_entry("qemu-arm", str(tmp_path)), lambda: bm.read_status(str(tmp_path)),
                 lambda: bm.list_entries(str(tmp_path)), lambda: bm.set_enabled("qemu-arm", False, str(tmp_path))):
        with pytest.raises(bm.BinfmtError):
            call()
    assert (tmp_path / "qemu-arm").read_text() == QEMU_ARM_ENTRY


def test_empty_or_missing_directory_is_not_mounted(tmp_path):
    assert bm.is_mounted(str(tmp_path)) is False
    assert bm.is_mounted(str(tmp_path / "nope")) is False
    with pytest.raises(OSError):
        bm.check_filesystem(str(tmp_path / "nope"))


@pytest.mark.parametrize("name", ["", ".", "..", "../status", "a/b", "x\0y"])
def test_open_entry_takes_one_file_name_only(name):
    with pytest.raises(bm.BinfmtError) as err:
        bm.open_entry(name, path="/nonexistent")
    assert err.value.field == "name"


# -- one validated definition: names from an allowlist, safe interpreters, bytes -------------

def arm_at(interpreter, name="qemu-arm"):
    magic, mask, offset = preset("arm")
    return bm.make_definition(name, interpreter, magic=magic, mask=mask, offset=offset, flags="F")


@pytest.mark.parametrize("name", ["qemu-arm", "qemu-aarch64_be", "python3.11", "llvm-14-runtime.binfmt",
                                  "CLR", "_x", "a+b", "x" * bm.MAX_NAME_BYTES])
def test_allowed_names(name):
    assert bm.validate_name(name) == name


@pytest.mark.parametrize("name,words", [
    ("-qemu", "'-' at the start"), (".hidden", "'.' at the start"), ("+x", "at the start"),
    ("qemu arm", "' '"), ("qemu\varm", "'\\x0b'"), ("qemu\rarm", "'\\r'"), ("a/b", "'/'"),
    ("qému", "'é'"), (".", "at the start"), ("..", "at the start"), ("register", "control file"),
    ("status", "control file"), ("", "non-empty"), ("x" * 129, "129 bytes"), ("x" * 250, "250 bytes"),
    ("é" * 65, "130 bytes"), ("a:b", "':'"), ("a\x00b", "'\\x00'"),
])
def test_refused_names_say_why(name, words):
    with pytest.raises(bm.BinfmtError) as err:
        bm.validate_name(name)
    assert err.value.field == "name" and words in str(err.value), str(err.value)


@pytest.mark.parametrize("interp,words", [
    ("/usr/bin/qemu\r:x::M::\\x7f:/tmp/evil:C", "'\\r'"), ("/usr/bin/q\vemu", "'\\x0b'"),
    ("/usr/bin/q\temu", "'\\t'"), ("/usr/bin/q\x7femu", "'\\x7f'"), ("/usr/bin/q emu", "' '"),
    ("/usr/bin/q\u2028emu", "'\\u2028'"), ("/usr/bin/q\x85emu", "'\\x85'"), ("/usr/bin/q\u200bemu", "'\\u200b'"),
    ("/usr/bin/q\udcffemu", "'\\udcff'"), ("usr/bin/qemu", "absolute"), ("", "required"),
    ("/" + "a" * 4095, "4096 bytes"),
])
def test_refused_interpreters_say_why(interp, words):
    with pytest.raises(bm.BinfmtError) as err:
        bm.make_definition("qemu-arm", interp, magic="7f454c46")
    assert err.value.field == "interpreter" and words in str(err.value), str(err.value)


def test_register_string_is_counted_in_bytes():
    """A 2-byte character counts twice: a line under the limit in characters but over it in bytes
    is refused before the kernel sees it."""
    fixed = len(bm.render_register(arm_at("/x")))
    chars = bm.MAX_REGISTER_LENGTH - fixed + 2 - 1          # one character under the limit ...
    interp = "/" + "é" * (chars - 1)
    with pytest.raises(bm.BinfmtError) as err:
        arm_at(interp)                                # ... but about twice as many bytes
    assert err.value.field == "interpreter" and "bytes" in str(err.value)
    fits = "/" + "a" * (bm.MAX_REGISTER_LENGTH - fixed + 1)
    assert len(bm.render_register(arm_at(fits))) == bm.MAX_REGISTER_LENGTH
    with pytest.raises(bm.BinfmtError):
        arm_at(fits + "a")


@pytest.mark.parametrize("ext", ["a b", "a\rb", "a/b", ".", "", "a\x7f"])
def test_refused_extensions(ext):
    with pytest.raises(bm.BinfmtError) as err:
        bm.make_definition("x", "/bin/true", type="extension", extension=ext)
    assert err.value.field == "extension"


@pytest.mark.parametrize("flags", [1, ["F"], "X", "f\x00", "PF "[::-1] + "Q"])
def test_refused_flags(flags):
    with pytest.raises(bm.BinfmtError) as err:
        arm(flags=flags)
    assert err.value.field == "flags"


@pytest.mark.parametrize("offset", [-1, True, "x", bm.BINPRM_BUF_SIZE - 19])
def test_refused_offsets(offset):
    with pytest.raises(bm.BinfmtError) as err:
        arm(offset=offset)
    assert err.value.field == "offset"


def test_check_interpreter(tmp_path):
    script = tmp_path / "interp"
    script.write_text("#!/bin/sh\n")
    for path, words in ((str(tmp_path / "nope"), "does not exist"), (str(tmp_path), "not a regular file"),
                        (str(script), "not executable")):
        with pytest.raises(bm.BinfmtError) as err:
            bm.check_interpreter(path)
        assert err.value.field == "interpreter" and words in str(err.value)
    script.chmod(0o755)
    bm.check_interpreter(str(script))


def test_apply_steps_validates_everything_before_the_first_write(tmp_path):
    (tmp_path / "status").write_text("enabled\n")
    (tmp_path / "register").write_text("")
    with pytest.raises(bm.BinfmtError) as err:       # the interpreter is missing: nothing is written
        bm.apply_steps("qemu-arm", ["register"], arm_at("/nonexistent/qemu"), None, str(tmp_path))
    assert err.value.field == "interpreter"
    with pytest.raises(bm.BinfmtError) as err:       # not binfmt_misc: nothing is written
        bm.apply_steps("qemu-arm", ["register"], arm_at("/bin/true"), None, str(tmp_path))
    assert err.value.field == "binfmt_misc"
    with pytest.raises(bm.BinfmtError) as err:
        bm.apply_steps("-x", ["register"], dict(arm_at("/bin/true"), name="-x"), None, str(tmp_path))
    assert err.value.field == "name"
    assert (tmp_path / "register").read_text() == ""


@pytest.mark.parametrize("previous", [None, "arm"])
def test_a_failed_restore_says_so_and_what_was_there(tmp_path, previous):
    prev = bm.expected_entry(arm_at("/bin/true"), False) if previous else None
    ok, sentence = bm.restore_entry("qemu-arm", prev, str(tmp_path))   # not binfmt_misc: every step fails
    assert ok is False and "ALSO failed" in sentence
    if prev:
        assert bm.render_register(prev) in sentence


def test_entry_state_relative_to_a_directory_descriptor(tmp_path):
    """The holder's and the window's one read of an entry's state (a plain
    directory stands in for the instance: with dir_fd nothing checks fstatfs)."""
    (tmp_path / "qemu-arm").write_text("enabled\ninterpreter /usr/bin/qemu-arm-static\n")
    (tmp_path / "off").write_text("disabled\n")
    os.symlink(str(tmp_path / "qemu-arm"), str(tmp_path / "link"))
    dfd = os.open(str(tmp_path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        on = bm.entry_state("qemu-arm", dir_fd=dfd)
        assert on == {"present": True, "enabled": True, "ino": os.stat(str(tmp_path / "qemu-arm")).st_ino}
        assert bm.entry_state("off", dir_fd=dfd)["enabled"] is False
        assert bm.entry_state("gone", dir_fd=dfd) == {"present": False, "enabled": None, "ino": None}
        with pytest.raises(OSError):                 # never through a symlink (ELOOP)
            bm.entry_state("link", dir_fd=dfd)
        with pytest.raises(bm.BinfmtError):
            bm.entry_state("../qemu-arm", dir_fd=dfd)
    finally:
        os.close(dfd)
