"""A generated corpus of bad inputs, run on the real kernel in a private instance (issue 12).

Modules: binfmt_entry, binfmt_drift (entries), binfmt_namespace_command, native_armhf_window and
native_armhf_command options. Every case is a module call that must be refused with a message naming the field, without a
traceback, leaving the private binfmt_misc instance, the descriptor directories and the run
directory byte-identical. The descriptor directories (/etc/binfmt.d, /usr/lib/binfmt.d,
/usr/share/binfmts, /var/lib/binfmts) and /run/nativearm-binfmt are private tmpfs mounts inside
the sandbox's mount namespace, so even a default path never reaches the host's. The cases run
in batches through tests/integration/module_harness.py (many module calls per process).

Each case is one pytest item named ``bad_input[...]`` so tests/conftest.py counts it in the
closing ``bad inputs: N refused, host unchanged, 0 failed`` line.
"""
import json

import pytest

from module_harness import run_in
from sandbox.instance import Instance

QEMU_ARM = "/usr/bin/qemu-arm-static"
PRIVATE_DIRS = ("/etc/binfmt.d", "/usr/lib/binfmt.d", "/usr/share/binfmts", "/var/lib/binfmts",
                "/run/nativearm-binfmt")
BINFMT_MISC = "/proc/sys/fs/binfmt_misc"
SCRATCH = "/run/nativearm-binfmt/fuzz"        # inside the private tmpfs: files the cases point at
WATCH = [BINFMT_MISC] + list(PRIVATE_DIRS)
ARM_MASK = "\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff"
ARM_MAGIC = "\\x7fELF\\x01\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\x28\\x00"
MAX_REGISTER = 1920
CONTROL = [chr(c) for c in list(range(1, 32)) + [127]]
UNICODE_SPACE = ["\x85", "\xa0", "\u1680", "\u2000", "\u2028", "\u2029", "\u200b", "\u202f", "\ufeff", "\u3000"]

# The state every case starts from (set up once in the sandbox): a registered entry, a masked
# descriptor, a descriptor symlinked elsewhere, a package's vendor file, a binfmt-support file.
SETUP = r"""
set -e
for d in {dirs}; do mkdir -p "$d"; mount -t tmpfs -o mode=0755 tmpfs "$d"; done
mkdir -p {scratch}/realdir
printf 'precious\n' > {scratch}/victim
printf '#!/bin/sh\n' > {scratch}/not-exec
cp /bin/true {scratch}/interp && chmod 755 {scratch}/interp
ln -s {scratch}/realdir {scratch}/linkdir
mkdir {scratch}/fake && printf 'enabled\n' > {scratch}/fake/status && : > {scratch}/fake/register
ln -s {scratch}/victim {scratch}/fake/qemu-fz
echo ':qemu-fz:M::{magic}:{mask}:{qemu}:F' > {bm}/register
ln -s /dev/null /etc/binfmt.d/qemu-fz.conf
ln -s {scratch}/victim /etc/binfmt.d/qemu-fzlink.conf
printf ':qemu-fzvendor:M::{magic}::{qemu}:F\n' > /usr/lib/binfmt.d/qemu-fzvendor.conf
printf ':qemu-fzmiss:M::{magic}::/usr/bin/qemu-fzmiss-not-installed:\n' > /usr/lib/binfmt.d/qemu-fzmiss.conf
printf 'package qemu-user-static\ninterpreter {qemu}\nmagic {magic}\n' > /usr/share/binfmts/qemu-fzpkg
echo ready
"""


def entry_args(**kw):
    args = dict(name="qemu-fznew", arch="arm", interpreter=QEMU_ARM, flags="F", mount=False)
    args.update(kw)
    return args


def long_path(total_bytes):
    """An existing interpreter path (QEMU_ARM through './' components) of ``total_bytes`` bytes."""
    pad = total_bytes - len(QEMU_ARM)
    return "/usr/bin/" + "./" * (pad // 2) + ("/" if pad % 2 else "") + "qemu-arm-static"


def register_len(interpreter):
    # ":qemu-fznew:M::<80 escaped magic>:<80 escaped mask>:<interp>:F"
    from ansible_collections.nativearm.binfmt.plugins.module_utils import binfmt_misc as bm
    from ansible_collections.nativearm.binfmt.plugins.module_utils.presets import preset
    magic, mask, offset = preset("arm")
    definition = bm.make_definition("qemu-fznew", "/x", magic=magic, mask=mask, offset=offset, flags="F")
    return len(bm.render_register(definition)) - 2 + len(interpreter.encode())


def corpus():
    """(id, module, args, field, check) for every bad input."""
    cases = []

    def add(case_id, module, args, field, check=False):
        cases.append((case_id, module, args, field, check))

    # -- binfmt_entry: names ------------------------------------------------------------------
    bad_names = ["-qemu", "--import", "qemu arm", "qemu\varm", "qemu\rarm", "qemu\tarm", "qemu\narm",
                 ".", "..", ".hidden", "+x", "a/b", "../status", "register", "status", "", "qému", "qemu-\u2028",
                 "q:emu", "q;emu", "q#emu", "q!emu", "q@emu", "q\\emu", "q\x7femu", "q\x00emu", "\U0001F600",
                 "x" * 129, "x" * 250, "x" * 256, "é" * 65, "a" * 127 + "é"]
    bad_names += ["q%semu" % c for c in CONTROL[:8]]
    for i, name in enumerate(bad_names):
        add("entry-name-%d" % i, "binfmt_entry", entry_args(name=name), "name")
        add("entry-name-absent-%d" % i, "binfmt_entry", dict(name=name, state="absent"), "name")
    # -- binfmt_entry: interpreters -----------------------------------------------------------
    for i, char in enumerate(CONTROL + UNICODE_SPACE + [" "]):
        add("entry-interp-char-%d" % i, "binfmt_entry", entry_args(interpreter="/usr/bin/qemu%sarm" % char), "interpreter")
        add("entry-interp-char-check-%d" % i, "binfmt_entry",
            entry_args(interpreter=QEMU_ARM + char), "interpreter", True)
    injected = QEMU_ARM + "\r:qemu-evil:M::\\x7fELF::/tmp/evil:C"
    for i, interp in enumerate([injected, injected.replace("\r", "\v"), injected.replace("\r", "\x0c"),
                                "usr/bin/qemu-arm-static", "qemu-arm-static", "./qemu", "~nobody/x",
                                SCRATCH + "/missing", SCRATCH + "/not-exec", SCRATCH + "/realdir",
                                SCRATCH + "/linkdir", "/dev/null", "/", "/usr/bin/", "/" + "a" * 4096]):
        add("entry-interp-%d" % i, "binfmt_entry", entry_args(interpreter=interp), "interpreter")
    limit = MAX_REGISTER - register_len("")
    for i, size in enumerate([limit + 1, limit + 2, limit + 100, 4000, 4095, 4096, 5000]):
        add("entry-interp-bytes-%d" % i, "binfmt_entry", entry_args(interpreter=long_path(size)), "interpreter")
    for i, extra in enumerate([1, 2, 3, 50]):   # under the limit in characters, over it in bytes
        chars = limit - len("/usr/bin/") + 1 - extra
        add("entry-interp-multibyte-%d" % i, "binfmt_entry",
            entry_args(interpreter="/usr/bin/" + "é" * (chars // 2 + extra)), "interpreter")
    add("entry-interp-missing-register", "binfmt_entry", dict(name="qemu-fznew", arch="arm", mount=False), "interpreter")
    # -- binfmt_entry: magic / mask / offset / type / extension -------------------------------
    magic_cases = [("magic", dict(magic="zz")), ("magic", dict(magic="7f4")), ("magic", dict(magic="\\x7")),
                   ("magic", dict(magic="\\xZZ")), ("magic", dict(magic="\\q")), ("magic", dict(magic="ab cd")),
                   ("magic", dict(magic="é")), ("magic", dict(magic="\\x7f\x01")), ("magic", dict(magic="")),
                   ("magic", dict(magic="00" * 257)), ("offset", dict(magic="00" * 256, offset=1)),
                   ("offset", dict(magic="7f", offset=256)), ("offset", dict(magic="7f", offset=-1)),
                   ("offset", dict(magic="7f", offset=2 ** 40)), ("offset", dict(magic="7f", offset="x")),
                   ("mask", dict(magic="7f45", mask="ff")), ("mask", dict(magic="7f45", mask="ffffff")),
                   ("mask", dict(magic="7f45", mask="zzzz")), ("mask", dict(magic="7f45", mask="\\xff\\xg0")),
                   ("extension", dict(magic="7f45", extension="jar")),
                   ("extension", dict(type="extension", extension="")),
                   ("extension", dict(type="extension", extension="a/b")),
                   ("extension", dict(type="extension", extension="a b")),
                   ("extension", dict(type="extension", extension="a\rb")),
                   ("extension", dict(type="extension", extension=".")),
                   ("magic", dict(type="extension", extension="jar", magic="7f")),
                   ("offset", dict(type="extension", extension="jar", offset=3)),
                   ("type", dict(type="elf", magic="7f")), ("arch", dict(arch="armhf")),
                   ("arch", dict(arch="arm", magic="7f"))]
    for i, (field, kw) in enumerate(magic_cases):
        args = entry_args(**kw)
        if "arch" not in kw:
            del args["arch"]
        add("entry-magic-%d" % i, "binfmt_entry", args, field)
    # -- binfmt_entry: flags, the C gate ------------------------------------------------------
    for i, flags in enumerate(["X", "PFX", "F\x00", "F\r", "P F", "\u0192", "C", "OC", "CF", "c", "POCF", "fc"]):
        add("entry-flags-%d" % i, "binfmt_entry", entry_args(flags=flags), "flags")
        add("entry-flags-check-%d" % i, "binfmt_entry", entry_args(flags=flags), "flags", True)
    # -- binfmt_entry: descriptors ------------------------------------------------------------
    for i, (field, kw) in enumerate([
            ("persist", dict(name="qemu-fzlink", persist="systemd")),
            ("persist", dict(name="qemu-fzlink", persist="systemd", state="absent")),
            ("persist", dict(name="qemu-fzvendor", persist="systemd")),
            ("binfmt_d_dir", dict(persist="systemd", binfmt_d_dir=SCRATCH + "/linkdir")),
            ("binfmts_dir", dict(persist="binfmt-support", binfmts_dir=SCRATCH + "/linkdir")),
            ("binfmt_d_dir", dict(persist="systemd", binfmt_d_dir=SCRATCH + "/victim")),
            ("persist", dict(persist="binfmt-support", name="qemu-fzpkg")),
            ("persist", dict(persist="binfmt-support", name="qemu-fzo", flags="O")),
            ("binfmt_misc", dict(binfmt_misc=SCRATCH + "/realdir")),
            ("binfmt_misc", dict(binfmt_misc=SCRATCH + "/victim")),
            ("binfmt_misc", dict(binfmt_misc=SCRATCH + "/fake")),
            ("binfmt_misc", dict(binfmt_misc=SCRATCH + "/fake", name="qemu-fz", state="absent")),
            ("binfmt_misc", dict(binfmt_misc=SCRATCH + "/fake", name="qemu-fz", enabled=False)),
            ("binfmt_misc", dict(binfmt_misc="/proc/sys/fs")),
    ]):
        add("entry-desc-%d" % i, "binfmt_entry", entry_args(**kw), field)
    # masked descriptors: reported and left alone (the entry already matches, so nothing changes)
    for i, kw in enumerate([dict(), dict(state="present"), dict(enabled=True)]):
        add("entry-masked-%d" % i, "binfmt_entry",
            entry_args(name="qemu-fz", persist="systemd", **kw), "masked")
    # -- binfmt_entry: the cases tests/integration/test_binfmt_entry.py ran one ansible process each
    for i, (field, kw) in enumerate([
            ("name", dict(name="")), ("name", dict(name="a/b")), ("name", dict(name="..")),
            ("name", dict(name="status")), ("name", dict(name="n" * 256)), ("flags", dict(flags="PX")),
            ("allow_credentials", dict(flags="CF")), ("magic", dict(arch=None, magic="zz")),
            ("magic", dict(arch=None, magic="\\x7")), ("mask", dict(arch=None, magic="7f454c46", mask="ffff")),
            ("offset", dict(arch=None, magic="7f454c46", offset=-1)),
            ("offset", dict(arch=None, magic="7f454c46", offset=253)),
            ("interpreter", dict(interpreter="/nonexistent/qemu-arm-static")),
            ("interpreter", dict(interpreter=SCRATCH + "/not-exec")),
            ("interpreter", dict(interpreter="relative/qemu")), ("interpreter", dict(interpreter=None)),
            ("extension", dict(arch=None, type="extension")),
            ("magic", dict(arch=None, type="extension", extension="jar", magic="6162")),
            ("arch", dict(magic="7f454c46")), ("arch", dict(arch="sparc99")),
            ("persist", dict(flags="O", persist="binfmt-support")), ("state", dict(state="gone")),
            ("enabled", dict(enabled="maybe")), ("persist", dict(persist="nfs")),
            ("type", dict(arch=None, type="script", magic="6162"))]):
        args = dict(entry_args(name="qemu-fz", persist="systemd", force=False), **kw)
        add("entry-legacy-%d" % i, "binfmt_entry", {k: v for k, v in args.items() if v is not None}, field)
    # -- binfmt_drift entries -----------------------------------------------------------------
    base = dict(window=False, run_dir="/run/nativearm-binfmt/fuzz-drift",
                descriptor_dirs=["/usr/share/binfmts", "/etc/binfmt.d", "/usr/lib/binfmt.d"])
    drift_specs = [("name", {"name": n, "arch": "arm", "interpreter": QEMU_ARM}) for n in bad_names[:24]]
    drift_specs += [("interpreter", {"name": "qemu-fznew", "arch": "arm", "interpreter": "/usr/bin/qemu%sarm" % c})
                    for c in CONTROL[::3] + UNICODE_SPACE[::2]]
    drift_specs += [("flags", {"name": "qemu-fznew", "arch": "arm", "interpreter": QEMU_ARM, "flags": f})
                    for f in ["C", "OC", "X", 5]]
    drift_specs += [("magic", {"name": "qemu-fznew", "magic": "zz", "interpreter": QEMU_ARM}),
                    ("offset", {"name": "qemu-fznew", "magic": "7f", "offset": 256, "interpreter": QEMU_ARM}),
                    ("mask", {"name": "qemu-fznew", "magic": "7f", "mask": "ffff", "interpreter": QEMU_ARM}),
                    ("arch", {"name": "qemu-fznew", "arch": "armhf", "interpreter": QEMU_ARM}),
                    ("state", {"name": "qemu-fznew", "state": "gone"}),
                    ("enabled", {"name": "qemu-fznew", "enabled": "maybe"}),   # "yes" is a bool (AWX surveys)
                    ("bogus", {"name": "qemu-fznew", "bogus": 1}),
                    ("name", {"arch": "arm"}), ("entries", "qemu-arm"),
                    ("interpreter", {"name": "qemu-fznew", "arch": "arm", "interpreter": long_path(MAX_REGISTER)}),
                    ("interpreter", {"name": "qemu-fzmiss"}),
                    ("interpreter", {"name": "qemu-fznew", "arch": "arm", "interpreter": SCRATCH + "/realdir"}),
                    ("interpreter", {"name": "qemu-fznew", "arch": "arm", "interpreter": SCRATCH + "/not-exec"}),
                    ("interpreter", {"name": "qemu-fznew", "arch": "arm", "interpreter": SCRATCH + "/missing"})]
    for i, (field, spec) in enumerate(drift_specs):
        add("drift-%d" % i, "binfmt_drift", dict(base, entries=[spec]), field)
    add("drift-dup", "binfmt_drift", dict(base, entries=[{"name": "qemu-fz"}, {"name": "qemu-fz"}]), "name")
    add("drift-not-binfmt", "binfmt_drift", dict(base, binfmt_misc=SCRATCH + "/fake", entries=[
        {"name": "qemu-fz", "arch": "arm", "interpreter": QEMU_ARM, "flags": "F"}]), "binfmt_misc")
    # -- binfmt_namespace_command -------------------------------------------------------------
    for i, (field, kw) in enumerate([
            ("flags", dict(flags="C")), ("flags", dict(flags="OC")), ("flags", dict(flags="CF")),
            ("flags", dict(flags="c")), ("flags", dict(flags="X")), ("flags", dict(flags="F\r")),
            ("interpreter", dict(interpreter="/usr/bin/qemu\rarm")), ("interpreter", dict(interpreter="qemu")),
            ("interpreter", dict(interpreter="/usr/bin/qemu arm")),
            ("interpreter", dict(interpreter=long_path(MAX_REGISTER))),
            ("chdir", dict(chdir="relative")), ("chdir", dict(chdir=SCRATCH + "/missing")),
            ("argv", dict(argv=[])), ("argv", dict(argv=[""])), ("mode", dict(mode="fast"))]):
        args = dict(argv=["/bin/true"], mode="emulation")
        args.update(kw)
        add("nscmd-%d" % i, "binfmt_namespace_command", args, field)
        add("nscmd-check-%d" % i, "binfmt_namespace_command", args, field, True)
    # -- native_armhf_window options ----------------------------------------------------------
    for i, name in enumerate(bad_names):
        add("window-entry-%d" % i, "native_armhf_window", dict(state="open", entry=name, wait=0,
                                                               on_unsupported="fail"), "entry")
    for i, (field, kw) in enumerate([
            ("lease_id", dict(state="closed", lease_id="../../etc/passwd")),
            ("lease_id", dict(state="closed", lease_id="a/b")), ("lease_id", dict(state="closed", lease_id="")),
            ("lease_id", dict(state="closed", lease_id="x" * 300)),
            ("lease_id", dict(state="closed", lease_id="a\nb")), ("lease_id", dict(state="closed")),
            ("wait", dict(state="open", wait=-1)), ("wait", dict(state="open", wait="soon")),
            ("ttl", dict(state="open", ttl=-5)), ("ttl", dict(state="open", ttl="x")),
            ("owner_pid", dict(state="open", owner_pid=-1)), ("owner_pid", dict(state="open", owner_pid="me")),
            ("mode", dict(state="open", mode="turbo")), ("state", dict(state="ajar")),
            ("on_unsupported", dict(state="open", on_unsupported="ignore")),
            ("probe", dict(state="open", probe=[])), ("probe", dict(state="open", probe=5)),
            ("probe", dict(state="open", probe={"a": 1})),
            ("binfmt_misc", dict(state="open", binfmt_misc=SCRATCH + "/fake"))]):
        add("window-opt-%d" % i, "native_armhf_window", dict(kw, run_dir="/run/nativearm-binfmt/fuzz-run"), field)
    # -- native_armhf_command options --------------------------------------------------------
    for i, name in enumerate(bad_names[::2]):
        add("command-entry-%d" % i, "native_armhf_command",
            dict(argv=["/bin/true"], entry=name, wait=0, on_unsupported="fail"), "entry")
    for i, (field, kw) in enumerate([
            ("wait", dict(wait=-1)), ("wait", dict(wait="soon")), ("mode", dict(mode="turbo")),
            ("on_unsupported", dict(on_unsupported="ignore")), ("probe", dict(probe=[])),
            ("probe", dict(probe=5)), ("chdir", dict(chdir="relative")), ("chdir", dict(chdir=SCRATCH + "/missing")),
            ("argv", dict(argv=[])), ("argv", dict(argv=[""])), ("argv", dict(argv=None, cmd="")),
            ("binfmt_misc", dict(binfmt_misc=SCRATCH + "/fake"))]):
        args = dict(argv=["/bin/true"], wait=0, on_unsupported="fail", run_dir="/run/nativearm-binfmt/fuzz-run")
        args.update(kw)
        add("command-opt-%d" % i, "native_armhf_command", {k: v for k, v in args.items() if v is not None}, field)
    return cases


CASES = corpus()


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Run the whole corpus in one sandbox, in batches of module calls per process."""
    work = tmp_path_factory.mktemp("fuzz")
    inst = Instance()
    try:
        setup = SETUP.format(dirs=" ".join(PRIVATE_DIRS), scratch=SCRATCH, bm=BINFMT_MISC,
                             magic=ARM_MAGIC, mask=ARM_MASK, qemu=QEMU_ARM)
        proc = inst.run(["sh", "-c", setup])
        assert proc.returncode == 0 and proc.stdout.strip() == "ready", proc.stderr
        # Every later nsenter joins the same mount namespace, so the tmpfs mounts hold for the harness.
        cases = [{"id": c[0], "module": c[1], "args": c[2], "check": c[4], "watch": WATCH} for c in CASES]
        yield run_in(inst, cases, work)
    finally:
        inst.close()


def test_corpus_is_large_enough():
    assert len(CASES) >= 300, len(CASES)
    assert len(set(c[0] for c in CASES)) == len(CASES)


# Window options whose validation belongs to the window's own work (issue 12 item 3, in progress):
# xfail while the window accepts them; one the window refuses passes and counts as refused (not
# strict: the window's validation lands piece by piece). The window and command cases come last
# in the corpus: one that is wrongly accepted may leave a lease behind.
WINDOW_PENDING = pytest.mark.xfail(strict=False, reason="the window does not validate this option yet")
PENDING_OPTIONS = ()


def _window_refuses_already(name):
    return True     # the window takes binfmt_entry's name allowlist


# ansible-core's own argument validation of a list of dicts with suboptions says "dictionary
# requested, could not parse JSON or key=value" for a string element, without naming the option.
CORE_MESSAGE = pytest.mark.xfail(strict=False, reason="ansible-core's message does not name the option")


def _param(case):
    if case[0] == "drift-52":
        return pytest.param(*case, id=case[0], marks=[CORE_MESSAGE])
    pending = case[1] in ("native_armhf_window", "native_armhf_command") and (
        ("-entry-" in case[0] and not _window_refuses_already(case[2]["entry"])) or case[0] in PENDING_OPTIONS)
    return pytest.param(*case, id=case[0], marks=[WINDOW_PENDING] if pending else [])


@pytest.mark.parametrize("case_id,module,args,field,check", [_param(c) for c in CASES])
def test_bad_input(outcomes, case_id, module, args, field, check):
    record = outcomes[case_id]
    assert record["error"] is None, record["error"]
    result = record["result"]
    text = json.dumps(result)
    assert "Traceback" not in text and "MODULE FAILURE" not in text, text[:2000]
    assert record["unchanged"], "host changed: %s" % record["changes"]
    if field == "masked":
        assert result.get("failed") is not True and result["masked"] is True and result["changed"] is False, text
        return
    assert result.get("failed") is True, "accepted: %s" % text[:2000]
    assert field in result["msg"], "the message does not name %r: %s" % (field, result["msg"])
