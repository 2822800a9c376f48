import os

import pytest

from ansible_collections.nativearm.binfmt.plugins.module_utils import descriptors as ds
from ansible_collections.nativearm.binfmt.plugins.module_utils.binfmt_misc import BinfmtError, make_definition
from ansible_collections.nativearm.binfmt.plugins.module_utils.presets import ARCHES, preset

# As Debian's qemu-user-static ships /usr/share/binfmts/qemu-arm.
QEMU_ARM = """package qemu-user-static
interpreter /usr/libexec/qemu-binfmt/arm-binfmt-P
magic \\x7f\\x45\\x4c\\x46\\x01\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\x28\\x00
offset 0
mask \\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff
credentials no
fix_binary yes
preserve yes
"""
ARM_MAGIC = "7f454c4601010100000000000000000002002800"
ARM_MASK = "ffffffffffffff00fffffffffffffffffeffffff"
# As the same package ships /usr/lib/binfmt.d/qemu-arm.conf.
QEMU_ARM_CONF = (":qemu-arm:M::\\x7f\\x45\\x4c\\x46\\x01\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00"
                 "\\x02\\x00\\x28\\x00:\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff"
                 "\\xff\\xff\\xfe\\xff\\xff\\xff:/usr/libexec/qemu-binfmt/arm-binfmt-P:OPF\n")


def definition(arch="arm", name=None, interpreter="/usr/bin/qemu-arm-static", flags="F", **kw):
    magic, mask, offset = preset(arch)
    args = dict(magic=magic, mask=mask, offset=offset, flags=flags)
    args.update(kw)
    return make_definition(name or "qemu-" + arch, interpreter, **args)


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return path


# -- magic decoding -------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("\\x7f\\x45\\x4c\\x46", b"\x7fELF"),
    ("BC", b"BC"),                      # literal characters, not the hex byte 0xbc
    ("PK\\x03\\x04", b"PK\x03\x04"),
    ("\\x7ELF", b"\x7eLF"),             # the kernel takes up to two hex digits
    ("\\xA7\\x0d", b"\xa7\x0d"),
    ("a\\qb", b"a\\qb"),                # a backslash that starts no \\x escape is itself
    ("\\x", b"\\x"),
])
def test_decode_magic_as_the_kernel_does(text, expected):
    assert ds.decode_magic(text) == expected


# -- binfmt-support --------------------------------------------------------------------------

def test_parse_binfmt_support_real_qemu_arm():
    fields = ds.parse_binfmt_support(QEMU_ARM)
    assert list(fields) == ["package", "interpreter", "magic", "offset", "mask",
                            "credentials", "fix_binary", "preserve"]
    assert fields["package"] == "qemu-user-static"
    assert fields["fix_binary"] == "yes"


def test_binfmt_support_fields_round_trip_byte_identical():
    assert ds.render_binfmt_support_fields(ds.parse_binfmt_support(QEMU_ARM)) == QEMU_ARM


def test_parse_binfmt_support_like_update_binfmts():
    fields = ds.parse_binfmt_support("Package foo\n\ninterpreter /usr/bin/x y  \nmagic a\nmagic BC\ndetector\n")
    assert fields == {"package": "foo", "interpreter": "/usr/bin/x y", "magic": "BC", "detector": ""}


def test_binfmt_support_to_definition_qemu_arm():
    d = ds.binfmt_support_to_definition(ds.parse_binfmt_support(QEMU_ARM), "qemu-arm")
    assert d == {"name": "qemu-arm", "interpreter": "/usr/libexec/qemu-binfmt/arm-binfmt-P", "flags": "PF",
                 "type": "magic", "offset": 0, "magic": ARM_MAGIC, "mask": ARM_MASK, "extension": None}
    assert d == definition(interpreter="/usr/libexec/qemu-binfmt/arm-binfmt-P", flags="PF",
                           name="qemu-arm")


@pytest.mark.parametrize("text, flags", [
    ("credentials yes\n", "OC"),
    ("preserve yes\nfix_binary yes\ncredentials yes\n", "POCF"),
    ("preserve no\nfix_binary no\ncredentials no\n", ""),
    ("fix_binary Yes\n", ""),  # update-binfmts compares with "yes" exactly
])
def test_binfmt_support_flags(text, flags):
    fields = ds.parse_binfmt_support("package p\ninterpreter /bin/x\nmagic BC\n" + text)
    assert ds.binfmt_support_to_definition(fields, "x")["flags"] == flags


def test_binfmt_support_literal_magic_and_extension():
    llvm = ds.parse_binfmt_support("package llvm-14-runtime\ninterpreter /usr/bin/lli-14\nmagic BC\n")
    assert ds.binfmt_support_to_definition(llvm, "llvm")["magic"] == "4243"
    jar = ds.parse_binfmt_support("package p\ninterpreter /usr/bin/jexec\nextension .jar\n")
    d = ds.binfmt_support_to_definition(jar, "jar")
    assert (d["type"], d["extension"], d["magic"]) == ("extension", "jar", None)


@pytest.mark.parametrize("text, field", [
    ("package p\ninterpreter /bin/x\n", "magic"),
    ("package p\ninterpreter /bin/x\nmagic BC\nextension bc\n", "extension"),
    ("package p\ninterpreter /bin/x\nmagic BC\noffset -1\n", "offset"),
    ("package p\ninterpreter /bin/x\nmagic BC\noffset ten\n", "offset"),
    ("package p\ninterpreter /bin/x\nmagic BC\nmask \\xff\n", "mask"),
    ("package p\ninterpreter /bin/x\nextension jar\nmask \\xff\n", "mask"),
    ("package p\ninterpreter /bin/x\nextension jar\noffset 2\n", "offset"),
    ("package p\ninterpreter /bin/x\nmagic BC\ndetector /bin/d\nfix_binary yes\n", "detector"),
    ("package p\nmagic BC\n", "interpreter"),
    ("package p\ninterpreter bin/x\nmagic BC\n", "interpreter"),
])
def test_binfmt_support_bad_files_name_the_field(text, field):
    with pytest.raises(BinfmtError) as err:
        ds.binfmt_support_to_definition(ds.parse_binfmt_support(text), "x")
    assert err.value.field == field


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("flags", ["", "P", "F", "PF", "C", "PCF"])
def test_render_binfmt_support_round_trips_every_preset(arch, flags):
    d = definition(arch, flags=flags)
    text = ds.render_binfmt_support(d)
    assert text.startswith("package %s\ninterpreter /usr/bin/qemu-arm-static\nmagic \\x7f\\x45" % ds.OWN_PACKAGE)
    assert ds.binfmt_support_to_definition(ds.parse_binfmt_support(text), d["name"]) == d


def test_render_binfmt_support_extension_and_offset():
    ext = make_definition("jar", "/usr/bin/jexec", type="extension", extension="jar", flags="P")
    text = ds.render_binfmt_support(ext, package="openjdk")
    assert text == ("package openjdk\ninterpreter /usr/bin/jexec\nextension jar\n"
                    "credentials no\npreserve yes\nfix_binary no\n")
    assert ds.binfmt_support_to_definition(ds.parse_binfmt_support(text), "jar") == ext
    off = make_definition("x", "/bin/x", magic="\\x01\\x02", offset=126)
    assert ds.binfmt_support_to_definition(ds.parse_binfmt_support(ds.render_binfmt_support(off)), "x") == off


@pytest.mark.parametrize("flags", ["O", "PO", "OF", "POF"])
def test_binfmt_support_cannot_express_o_without_c(flags):
    with pytest.raises(BinfmtError) as err:
        ds.render_binfmt_support(definition(flags=flags))
    assert err.value.field == "persist"
    assert "persist: systemd" in str(err.value)


def test_binfmt_support_cannot_express_a_colon():
    with pytest.raises(BinfmtError) as err:
        ds.check_binfmt_support_expressible(definition(interpreter="/opt/a:b/qemu"))
    assert err.value.field == "persist" and "persist: systemd" in err.value.message


def test_shared_magic_conflicts():
    mine = definition(flags="F")
    records = [
        {"name": "qemu-arm", "definition": mine},                                    # itself
        {"name": "other-arm", "definition": definition(interpreter="/bin/other", flags="")},
        {"name": "arm-nomask", "definition": make_definition("arm-nomask", "/bin/x", magic=ARM_MAGIC)},
        {"name": "broken", "definition": None},
        {"name": "aarch64", "definition": definition("aarch64")},
        {"name": "shifted", "definition": definition(offset=1)},
    ]
    assert ds.shared_magic_conflicts(mine, records) == ["other-arm"]
    full = make_definition("full", "/bin/y", magic=ARM_MAGIC, mask="ff" * 20)
    assert ds.shared_magic_conflicts(full, records) == ["arm-nomask"]  # no mask == all 0xff
    assert ds.shared_magic_conflicts(mine, {"x": definition(interpreter="/bin/x")}) == ["x"]
    with pytest.raises(BinfmtError) as err:
        ds.check_no_shared_magic(mine, records)
    assert err.value.field == "persist" and "other-arm" in err.value.message
    assert "persist: systemd" in err.value.message
    ds.check_no_shared_magic(definition("riscv64"), records)


def test_shared_extension_conflicts():
    jar = make_definition("jar", "/usr/bin/jexec", type="extension", extension="jar")
    other = make_definition("jar2", "/usr/bin/java", type="extension", extension="jar")
    assert ds.shared_magic_conflicts(jar, {"jar2": other, "jar": jar}) == ["jar2"]


# -- systemd binfmt.d ------------------------------------------------------------------------

def test_parse_binfmt_d_real_qemu_arm_conf():
    [record] = ds.parse_binfmt_d("# comment\n; also a comment\n\n" + QEMU_ARM_CONF)
    assert record["line"] == 4 and record["error"] is None and record["name"] == "qemu-arm"
    assert record["definition"] == {"name": "qemu-arm", "interpreter": "/usr/libexec/qemu-binfmt/arm-binfmt-P",
                                    "flags": "POF", "type": "magic", "offset": 0, "magic": ARM_MAGIC,
                                    "mask": ARM_MASK, "extension": None}


def test_parse_binfmt_d_other_delimiter_extension_and_literal_magic():
    text = ("|odd|M|2|BC||/opt/a:b/lli|P\n"
            "  :jar:E::jar::/usr/bin/jexec:  \n")
    odd, jar = ds.parse_binfmt_d(text)
    assert odd["definition"] == {"name": "odd", "interpreter": "/opt/a:b/lli", "flags": "P", "type": "magic",
                                 "offset": 2, "magic": "4243", "mask": None, "extension": None}
    assert jar["definition"]["type"] == "extension" and jar["definition"]["extension"] == "jar"


@pytest.mark.parametrize("line, field", [
    (":x:M::BC:/bin/x:F", "line"),                  # 6 fields
    (":x:M::BC::/bin/x:F:extra", "line"),           # 8 fields
    (":x:Q::BC::/bin/x:", "type"),
    (":x:M:a::BC:/bin/x:", "offset"),
    (":x:M::::/bin/x:", "magic"),
    (":x:M::BC:\\xff:/bin/x:", "mask"),
    (":x:M::BC::/bin/x:Z", "flags"),
    ("::M::BC::/bin/x:", "name"),
    (":x:M::BC::bin/x:", "interpreter"),
    (":x:M:300:BC::/bin/x:", "offset"),
])
def test_parse_binfmt_d_bad_lines_are_reported_not_raised(line, field):
    good, bad = ds.parse_binfmt_d(QEMU_ARM_CONF + line + "\n")
    assert good["definition"]["name"] == "qemu-arm"
    assert bad["definition"] is None and bad["line"] == 2
    assert bad["error"].startswith(field + ":")
    with pytest.raises(BinfmtError) as err:
        ds.parse_register_line(line)
    assert err.value.field == field


@pytest.mark.parametrize("arch", ARCHES)
def test_render_binfmt_d_round_trips_every_preset(arch):
    d = definition(arch, flags="POCF")
    text = ds.render_binfmt_d(d)
    assert text.startswith(ds.BINFMT_D_HEADER) and "nativearm.binfmt" in text
    [record] = ds.parse_binfmt_d(text)
    assert record["definition"] == d


@pytest.mark.parametrize("interpreter", ["/opt/a:b/qemu", "/opt/a:b|c/qemu", "/opt/:|#/q", "/o/:|#!@,;%+=~/q"])
def test_render_binfmt_d_never_uses_a_comment_delimiter(interpreter):
    d = definition(interpreter=interpreter)
    line = ds.render_binfmt_d(d).splitlines()[-1]
    assert line[0] not in "#;"
    [record] = ds.parse_binfmt_d(ds.render_binfmt_d(d))
    assert record["definition"] == d


def test_binfmt_d_precedence(tmp_path):
    etc, run, usr = (str(tmp_path / d) for d in ("etc", "run", "usr"))
    write(os.path.join(etc, "a.conf"), ":a:M::BC::/etc/a:\n")
    write(os.path.join(run, "a.conf"), ":a:M::BC::/run/a:\n")
    write(os.path.join(usr, "a.conf"), ":a:M::BC::/usr/a:\n")
    write(os.path.join(usr, "b.conf"), ":b:M::BC::/usr/b:\n")
    write(os.path.join(usr, "README"), "not a conf file\n")
    dirs = (etc, run, str(tmp_path / "missing"), usr)
    assert ds.effective_binfmt_d(dirs) == {"a.conf": os.path.join(etc, "a.conf"),
                                           "b.conf": os.path.join(usr, "b.conf")}
    hidden = [(n, p, o) for n, p, o in ds.binfmt_d_files(dirs) if o]
    assert hidden == [("a.conf", os.path.join(run, "a.conf"), os.path.join(etc, "a.conf")),
                      ("a.conf", os.path.join(usr, "a.conf"), os.path.join(etc, "a.conf"))]
    records = ds.read_binfmt_d_dirs(dirs)
    effective = [r["definition"]["interpreter"] for r in records if r["effective"]]
    assert effective == ["/etc/a", "/usr/b"]


def test_binfmt_d_masked_by_dev_null(tmp_path):
    etc, usr = str(tmp_path / "etc"), str(tmp_path / "usr")
    write(os.path.join(usr, "qemu-arm.conf"), QEMU_ARM_CONF)
    os.makedirs(etc)
    os.symlink(os.devnull, os.path.join(etc, "qemu-arm.conf"))
    mask, vendor = ds.read_binfmt_d_dirs((etc, usr))
    assert mask["masked"] and mask["effective"] and mask["definition"] is None and mask["name"] == "qemu-arm"
    assert not vendor["effective"] and vendor["overridden_by"] == os.path.join(etc, "qemu-arm.conf")


# -- package ownership -----------------------------------------------------------------------

def test_parse_dpkg_search():
    out = ("diversion by dash from: /bin/sh\n"
           "diversion by dash to: /bin/sh.distrib\n"
           "qemu-user-static: /usr/share/binfmts/qemu-arm\n"
           "libc6:amd64, libc6:i386: /usr/share/x\n"
           "other: /usr/share/binfmts/qemu-arm-extra\n")
    owners = ds.parse_dpkg_search(out, ["/usr/share/binfmts/qemu-arm", "/usr/share/x", "/nope"])
    assert owners == {"/usr/share/binfmts/qemu-arm": "qemu-user-static", "/usr/share/x": "libc6, libc6"}


def test_dpkg_owner_real_dpkg():
    assert ds.dpkg_owner("/usr/bin/dpkg-query") == "dpkg"
    assert ds.dpkg_owner("/usr/share/binfmts/no-such-descriptor") is None
    assert ds.dpkg_owner("/usr/bin/dpkg-query", dpkg_query="/nonexistent/dpkg-query") is None
    assert ds.dpkg_owners([]) == {}


# -- scanning --------------------------------------------------------------------------------

def test_scan_descriptors_reports_bad_files_and_ownership(tmp_path):
    binfmts = str(tmp_path / "binfmts")
    etc = str(tmp_path / "etc")
    write(os.path.join(binfmts, "qemu-arm"), QEMU_ARM)
    write(os.path.join(binfmts, "admin"), "package :\ninterpreter /bin/x\nmagic AB\n")
    write(os.path.join(binfmts, "ours"), ds.render_binfmt_support(definition("riscv64")))
    write(os.path.join(binfmts, "broken"), "package p\ninterpreter /bin/x\n")
    write(os.path.join(binfmts, "binary"), "\xff\xfe garbage")
    os.makedirs(os.path.join(binfmts, "subdir"))
    write(os.path.join(etc, "mine.conf"), ds.render_binfmt_d(definition("aarch64", name="mine")))
    write(os.path.join(etc, "bad.conf"), "# only junk\nnot a register line\n")
    write(os.path.join(etc, "empty.conf"), "# nothing\n")
    records = ds.scan_descriptors(binfmts, (etc,), dpkg_query="/nonexistent/dpkg-query")
    by = dict(((r["format"], r["name"]), r) for r in records)
    assert sorted(by) == [("binfmt-support", n) for n in ("admin", "binary", "broken", "ours", "qemu-arm")] + \
        [("systemd", n) for n in ("bad", "empty", "mine")]
    assert by["binfmt-support", "qemu-arm"]["package"] == "qemu-user-static"
    assert by["binfmt-support", "qemu-arm"]["definition"]["flags"] == "PF"
    assert by["binfmt-support", "admin"]["package"] is None and by["binfmt-support", "admin"]["package_field"] == ":"
    assert by["binfmt-support", "ours"]["package"] is None and by["binfmt-support", "ours"]["managed"]
    assert by["binfmt-support", "broken"]["error"].startswith("magic:")
    assert by["binfmt-support", "binary"]["error"]
    assert by["systemd", "mine"]["managed"] and by["systemd", "mine"]["definition"]["name"] == "mine"
    assert by["systemd", "bad"]["error"].startswith("line:") and by["systemd", "bad"]["line"] == 2
    assert by["systemd", "empty"]["definition"] is None and by["systemd", "empty"]["error"] is None
    assert all(r["dpkg_package"] is None for r in records)


def test_find_descriptor(tmp_path):
    binfmts, etc, usr = (str(tmp_path / d) for d in ("binfmts", "etc", "usr"))
    write(os.path.join(binfmts, "qemu-arm"), QEMU_ARM)
    write(os.path.join(binfmts, "qemu-aarch64"), ds.render_binfmt_support(definition("aarch64")))
    write(os.path.join(usr, "qemu-arm.conf"), QEMU_ARM_CONF)
    write(os.path.join(etc, "arm-under-another-name.conf"), ds.render_binfmt_d(definition()))
    write(os.path.join(usr, "qemu-armeb.conf"), ds.render_binfmt_d(definition("armeb")))  # "qemu-arm" in its text
    write(os.path.join(usr, "unreadable-elsewhere.conf"), "# mentions qemu-arm in a comment only\n")
    found = ds.find_descriptor("qemu-arm", binfmts, (etc, usr), dpkg_query=None)
    assert [(r["format"], r["path"]) for r in found] == [
        ("binfmt-support", os.path.join(binfmts, "qemu-arm")),
        ("systemd", os.path.join(etc, "arm-under-another-name.conf")),
        ("systemd", os.path.join(usr, "qemu-arm.conf"))]
    assert found[0]["package"] == "qemu-user-static"
    assert ds.find_descriptor("qemu-riscv64", binfmts, (etc, usr), dpkg_query=None) == []
    os.symlink(os.devnull, os.path.join(etc, "qemu-arm.conf"))
    masked = ds.find_descriptor("qemu-arm", binfmts, (etc, usr), dpkg_query=None)
    assert [(r["path"], r["effective"], r["masked"]) for r in masked[1:]] == [
        (os.path.join(etc, "arm-under-another-name.conf"), True, False),
        (os.path.join(etc, "qemu-arm.conf"), True, True),
        (os.path.join(usr, "qemu-arm.conf"), False, False)]


def test_scan_this_machine():
    """The real /usr/share/binfmts and binfmt.d of this machine parse without errors
    (qemu-user-static is a test dependency, installed by the setup; from Debian 13 on
    the descriptors come from its qemu-user-binfmt dependency)."""
    records = ds.scan_descriptors()
    arm = [r for r in records if r["name"] == "qemu-arm"]
    assert {r["format"] for r in arm} == {"binfmt-support", "systemd"}
    assert all(r["dpkg_package"].startswith("qemu-user") and r["package"] == r["dpkg_package"] for r in arm)
    assert all(r["definition"]["magic"] == ARM_MAGIC for r in arm)
    assert [r for r in records if r["error"]] == []


# -- update-binfmts' database (/var/lib/binfmts) ------------------------------------------------

QEMU_ARM_DB = ("qemu-user-static\nmagic\n0\n" + QEMU_ARM.splitlines()[2][len("magic "):] + "\n"
               + QEMU_ARM.splitlines()[4][len("mask "):] + "\n/usr/libexec/qemu-binfmt/arm-binfmt-P\n\nno\nyes\nyes\n")


def test_parse_binfmt_support_db_matches_the_format_file():
    fields = ds.parse_binfmt_support_db(QEMU_ARM_DB)
    assert ds.binfmt_support_to_definition(fields, "qemu-arm") == \
        ds.binfmt_support_to_definition(ds.parse_binfmt_support(QEMU_ARM), "qemu-arm")


def test_parse_binfmt_support_db_extension_and_short_entries():
    fields = ds.parse_binfmt_support_db("openjdk\nextension\n0\njar\n\n/usr/bin/jexec\n")
    d = ds.binfmt_support_to_definition(fields, "jar")
    assert (d["type"], d["extension"], d["flags"]) == ("extension", "jar", "")
    with pytest.raises(BinfmtError) as err:
        ds.parse_binfmt_support_db("p\nmagic\n0\n")
    assert err.value.field == "database"
    with pytest.raises(BinfmtError) as err:
        ds.parse_binfmt_support_db("p\nweird\n0\nBC\n\n/bin/x\n")
    assert err.value.field == "type"


def test_database_records_count_for_shared_magic(tmp_path):
    admin = str(tmp_path / "admin")
    write(os.path.join(admin, "qemu-arm-other"), QEMU_ARM_DB)
    records = ds.read_binfmt_support_dir(admin, database=True)
    assert records[0]["format"] == "binfmt-support-db" and records[0]["package"] == "qemu-user-static"
    assert ds.shared_magic_conflicts(definition(), records) == ["qemu-arm-other"]


def test_this_machines_database_agrees_with_its_format_files():
    db = dict((r["name"], r) for r in ds.read_binfmt_support_dir(ds.BINFMTS_ADMIN_DIR, database=True))
    files = dict((r["name"], r) for r in ds.read_binfmt_support_dir())
    assert "qemu-arm" in db and [r for r in db.values() if r["error"]] == []
    for name in set(db) & set(files):
        assert db[name]["definition"] == files[name]["definition"], name
