"""Module-level unit tests of binfmt_entry's pure parts: argument handling, the definition it
builds, the diff text, and main() refusing bad input (before any I/O) with a message, never a
traceback."""
import contextlib
import io
import json

import pytest

from ansible.module_utils import basic
from ansible_collections.nativearm.binfmt.plugins.module_utils import binfmt_misc as bm
from ansible_collections.nativearm.binfmt.plugins.modules import binfmt_entry

try:
    from ansible.module_utils.testing import patch_module_args
except ImportError:   # ansible-core < 2.19
    @contextlib.contextmanager
    def patch_module_args(args):
        saved = basic._ANSIBLE_ARGS
        basic._ANSIBLE_ARGS = json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode()
        try:
            yield
        finally:
            basic._ANSIBLE_ARGS = saved


def run_main(args):
    out = io.StringIO()
    with patch_module_args(args), contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        binfmt_entry.main()
    return json.loads(out.getvalue().strip().splitlines()[-1])


def params(**kw):
    p = dict(name="qemu-arm", state="present", enabled=True, arch="arm", type="magic", magic=None, mask=None,
             offset=None, extension=None, interpreter="/usr/bin/qemu-arm-static", flags="F",
             allow_credentials=False)
    p.update(kw)
    return p


def test_definition_from_preset():
    d = binfmt_entry.definition_from_params(params())
    assert d["magic"] == "7f454c4601010100000000000000000002002800" and d["flags"] == "F"
    assert binfmt_entry.definition_from_params(params(state="absent")) is None


@pytest.mark.parametrize("kw,field", [
    (dict(name="-qemu"), "name"), (dict(name="qemu arm"), "name"), (dict(name="x" * 250), "name"),
    (dict(interpreter="/usr/bin/qemu\rarm"), "interpreter"), (dict(flags="CF"), "flags"),
    (dict(arch=None, magic="zz"), "magic"),
])
def test_definition_refusals_name_the_option(kw, field):
    with pytest.raises(bm.BinfmtError) as err:
        binfmt_entry.definition_from_params(params(**kw))
    assert err.value.field == field


def test_c_flag_allowed_with_allow_credentials():
    assert binfmt_entry.definition_from_params(params(flags="CF", allow_credentials=True))["flags"] == "OCF"


def test_entry_text_is_what_the_kernel_prints():
    entry = bm.expected_entry(binfmt_entry.definition_from_params(params()), False)
    assert binfmt_entry.entry_text(entry).splitlines()[:3] == [
        "disabled", "interpreter /usr/bin/qemu-arm-static", "flags: F"]
    assert binfmt_entry.entry_text(None) == ""


@pytest.mark.parametrize("args,start", [
    (dict(name="-qemu", arch="arm", interpreter="/bin/true"), "name: "),
    (dict(name="qemu-arm", arch="arm", interpreter="/bin/tr\vue"), "interpreter: "),
    (dict(name="qemu-arm", arch="arm", interpreter="/nonexistent/qemu"), "interpreter: "),
    (dict(name="qemu-arm", arch="arm", interpreter="/bin/true", flags="C"), "flags: "),
])
def test_main_fails_with_a_message(args, start, tmp_path):
    args = dict(args, binfmt_misc=str(tmp_path / "never-used"), mount=False)
    result = run_main(args)
    assert result["failed"] is True and result["msg"].startswith(start), result
    assert "Traceback" not in json.dumps(result)
    assert list(tmp_path.iterdir()) == []


def test_main_refuses_a_look_alike_binfmt_misc(tmp_path):
    (tmp_path / "status").write_text("enabled\n")
    result = run_main(dict(name="qemu-arm", arch="arm", interpreter="/bin/true", binfmt_misc=str(tmp_path)))
    assert result["failed"] and result["msg"].startswith("binfmt_misc: ") and "f_type 0x" in result["msg"]
