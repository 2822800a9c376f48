"""_window_records: run dir checks, whole-or-nothing writes, strict loads."""
import json
import os
import stat

import pytest

from ansible_collections.nativearm.binfmt.plugins.module_utils import _window_records as R

ENTRY = "qemu-arm"
LOCK = "lease-job1-0123abcd.lock"


def good_state():
    s = R.empty_state(ENTRY)
    s.update(mode="native", prior={"present": True, "enabled": True}, entry_ino=7, boot_id="b")
    s["leases"]["job1"] = {"mode": "native", "pid": 123, "start": 456, "lock": LOCK, "owner_pid": None,
                           "owner_start": None, "created": 1.5, "expires": None}
    s["waiters"]["w-1"] = {"mode": "emulation", "seq": 1, "pid": 99, "start": 5, "since": 1.0, "lease": "w"}
    return s


def test_write_private_is_atomic_and_0600(tmp_path):
    path = str(tmp_path / "state.json")
    R.write_private(path, "one")
    R.write_private(path, "two")
    assert open(path).read() == "two"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.listdir(str(tmp_path)) == ["state.json"]


def test_write_failure_leaves_old_version_and_no_temp(tmp_path):
    path = str(tmp_path / "state.json")
    R.write_private(path, "old")
    os.chmod(str(tmp_path), 0o500)
    try:
        if os.access(str(tmp_path), os.W_OK):     # root ignores the mode: use a missing dir instead
            path2 = str(tmp_path / "missing" / "state.json")
            with pytest.raises(R.RecordsWriteError, match="run_dir .*missing.*left as they were"):
                R.write_private(path2, "new")
        else:
            with pytest.raises(R.RecordsWriteError):
                R.write_private(path, "new")
    finally:
        os.chmod(str(tmp_path), 0o700)
    assert open(path).read() == "old"
    assert os.listdir(str(tmp_path)) == ["state.json"]


def test_secure_dir_creates_0700_and_never_chmods(tmp_path):
    d = str(tmp_path / "run")
    R.secure_dir(d)
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    os.chmod(d, 0o755)                    # a /run-like directory: fine, and left as it is
    R.secure_dir(d)
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o755
    os.chmod(d, 0o777)
    with pytest.raises(R.WindowError, match=r"run_dir: .* writable .*chmod 0700"):
        R.secure_dir(d)
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o777
    link = str(tmp_path / "link")
    os.symlink(str(tmp_path), link)
    with pytest.raises(R.WindowError, match="run_dir: .*symlink"):
        R.secure_dir(link)


def test_lock_path_only_for_generated_names(tmp_path):
    d = str(tmp_path)
    assert R.lock_path(d, LOCK) == os.path.join(d, LOCK)
    assert R.lock_name_lease(LOCK) == "job1"
    for bad in ("../../x", "lease-a-0123abcd.lock/../../x", "/etc/passwd", "lease-../x-0123abcd.lock",
                "lease-a-0123abcd.lock.x", "", None, 5):
        assert R.lock_path(d, bad) is None, bad


def test_good_state_round_trips(tmp_path):
    path = str(tmp_path / "state-qemu-arm.json")
    R.save_state(path, good_state())
    assert R.load_state(path, ENTRY) == good_state()
    assert R.load_state(str(tmp_path / "state-other.json"), "other") == R.empty_state("other")


@pytest.mark.parametrize("text, why", [
    ('"x"', "not a JSON object"),
    ('{"version": 1, "entry": "qemu-arm", "leases": null, "waiters": {}}', "'leases' is None"),
    ('{"version": 1, "entry": "qemu-arm", "leases": {}}', "no 'waiters'"),
    ('{"version": 1, "entry": "qemu-arm", "mode": "nat', "not valid JSON"),
    ('{"version": 2, "entry": "qemu-arm", "leases": {}, "waiters": {}}', "version 2"),
    ('{"version": 1, "entry": "qemu-arm", "leases": {}, "waiters": {"t": {"mode": "native", "seq": 1}}}',
     "waiter 't'"),
])
def test_unusable_records_are_moved_aside(tmp_path, text, why):
    path = str(tmp_path / "state-qemu-arm.json")
    with open(path, "w") as f:
        f.write(text)
    with pytest.raises(R.RecordsCorrupt) as err:
        R.load_state(path, ENTRY)
    assert why in err.value.message and "binfmt_drift" in err.value.message
    assert not os.path.exists(path)
    aside = R.corrupt_files(str(tmp_path), ENTRY)
    assert len(aside) == 1 and err.value.aside == os.path.join(str(tmp_path), aside[0])
    assert open(err.value.aside).read() == text
    with pytest.raises(R.RecordsCorrupt, match="not yet repaired"):   # and it stays refused
        R.load_state(path, ENTRY)


@pytest.mark.parametrize("field, value", [
    ("pid", "12"), ("pid", True), ("pid", 0), ("lock", "../../x"), ("lock", "lease-other-0123abcd.lock"),
    ("mode", "both"), ("start", 1.5), ("expires", "soon"),
])
def test_lease_fields_are_checked(field, value):
    s = good_state()
    s["leases"]["job1"][field] = value
    assert "lease 'job1'" in R.validate_state(s, ENTRY)


def test_window_fields_are_checked():
    assert R.validate_state(good_state(), ENTRY) is None
    for key, value in (("prior", {"present": "yes"}), ("mode", "x"), ("events", None), ("seq", "1"),
                       ("entry", "other")):
        s = good_state()
        s[key] = value
        assert R.validate_state(s, ENTRY), key
    s = good_state()
    s["prior"] = None
    assert "without a window" in R.validate_state(s, ENTRY)


def test_salvage_prior(tmp_path):
    p = str(tmp_path / "x")
    with open(p, "w") as f:
        json.dump({"version": 9, "prior": {"present": True, "enabled": False}}, f)
    assert R.salvage_prior(p) == {"present": True, "enabled": False}
    with open(p, "w") as f:
        f.write('{"prior": {"pres')
    assert R.salvage_prior(p) is None
