"""_window_rules: admission and fairness, the entry state each mode needs,
restore targets, stale windows, lease ids, the result shape."""
import pytest

from ansible_collections.nativearm.binfmt.plugins.module_utils import _window_records as R
from ansible_collections.nativearm.binfmt.plugins.module_utils import _window_rules as W


def state(mode=None, waiters=()):
    s = R.empty_state("qemu-arm")
    s["mode"] = mode
    for i, (m, seq) in enumerate(waiters):
        s["waiters"]["w%d" % i] = {"mode": m, "seq": seq, "pid": 1}
    return s


@pytest.mark.parametrize("window_mode, mode, ok", [
    (None, "native", True), (None, "emulation", True),
    ("native", "native", True), ("native", "emulation", False),
    ("emulation", "emulation", True), ("emulation", "native", False),
])
def test_admissible_by_window_mode(window_mode, mode, ok):
    assert W.admissible(state(window_mode), mode)[0] is ok


def test_fresh_joiner_queues_behind_a_waiter_of_the_other_mode():
    s = state("native", waiters=[("emulation", 5)])
    assert W.admissible(s, "native") == (False, "fairness")
    # a native waiter that arrived before the emulation waiter is not held back by it
    assert W.admissible(s, "native", seq=4) == (True, None)
    assert W.admissible(s, "native", seq=6) == (False, "fairness")
    # the emulation waiter itself waits only for the window to drain
    assert W.admissible(s, "emulation", seq=5) == (False, "window_mode")
    assert W.admissible(state(None, waiters=[("native", 6)]), "emulation", seq=5) == (True, None)
    # a fallback after the wait ignores the queue but never the window's mode
    assert W.admissible(s, "native", ignore_fairness=True) == (True, None)
    assert W.admissible(s, "emulation", ignore_fairness=True) == (False, "window_mode")


def test_a_phase_admits_every_waiter_of_its_mode_that_was_waiting_when_it_opened():
    s = state("emulation", waiters=[("native", 2), ("emulation", 3), ("emulation", 9)])
    s["phase_seq"] = 5                  # the emulation window opened when seq was 5
    assert W.admissible(s, "emulation", seq=3) == (True, None)      # waiting before the phase
    assert W.admissible(s, "emulation", seq=9) == (False, "fairness")  # came later: next phase
    assert W.admissible(s, "emulation") == (False, "fairness")      # fresh arrival queues
    assert W.admissible(s, "native", seq=2) == (False, "window_mode")


def test_same_mode_waiters_do_not_block():
    assert W.admissible(state("native", waiters=[("native", 1)]), "native") == (True, None)


def test_no_deadlock_between_two_waiters():
    """Whoever has the smaller number goes once the window is empty."""
    s = state(None, waiters=[("native", 6), ("emulation", 7)])
    assert W.admissible(s, "native", seq=6)[0] is True
    assert W.admissible(s, "emulation", seq=7)[0] is False


def test_desired_enabled():
    assert W.desired_enabled("native") is False
    assert W.desired_enabled("emulation") is True


def test_restore_target():
    s = R.empty_state("qemu-arm")
    s["prior"] = {"present": True, "enabled": False}
    assert W.restore_target(s) is False
    s["prior"] = {"present": True, "enabled": True}
    assert W.restore_target(s) is True
    s["prior"] = {"present": False, "enabled": None}
    assert W.restore_target(s) is None
    s["adopted"] = True                 # registered mid-window: left as its registrant made it
    assert W.restore_target(s) is True


def _stale(entry_ino=7, boot="b1"):
    s = R.empty_state("qemu-arm")
    s.update(prior={"present": True, "enabled": True}, mode="native", entry_ino=entry_ino, boot_id=boot)
    return s


def test_stale_window_restored_onto_the_entry_it_changed():
    assert W.stale_restore_refusal(_stale(), {"present": True, "enabled": False, "ino": 7}, "b1") is None
    # the entry is gone: nothing would be written anyway, nothing to refuse
    assert W.stale_restore_refusal(_stale(), {"present": False, "enabled": None, "ino": None}, "b1") is None
    # records written before boot ids were recorded, or where /proc hides it
    assert W.stale_restore_refusal(_stale(boot=None), {"present": True, "enabled": False, "ino": 7}, "b1") is None
    assert W.stale_restore_refusal(_stale(), {"present": True, "enabled": False, "ino": 7}, None) is None


def test_stale_window_not_forced_onto_a_new_registration():
    why = W.stale_restore_refusal(_stale(), {"present": True, "enabled": True, "ino": 9}, "b1")
    assert "inode 9" in why and "inode 7" in why


def test_stale_window_from_another_boot_is_not_applied():
    why = W.stale_restore_refusal(_stale(), {"present": True, "enabled": False, "ino": 7}, "b2")
    assert "earlier boot" in why


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "-x", "x" * 65, "a b", 5])
def test_bad_lease_ids(bad):
    with pytest.raises(R.WindowError, match="lease_id"):
        W.validate_lease_id(bad)


def test_good_lease_ids():
    for good in ("build-1", "a", "job_7.step@host", W.new_lease_id()):
        assert W.validate_lease_id(good) == good


def test_texts():
    assert W.prior_text(None) is None and W.describe_prior(None) == "none"
    assert W.prior_text({"present": False, "enabled": None}) == "absent"
    assert W.prior_text({"present": True, "enabled": False}) == "disabled"
    assert W.describe_prior({"present": True, "enabled": True}) == "enabled"
    assert W.describe_status({"present": True, "enabled": False, "ino": 3}) == "disabled"
    assert W.describe_status({"present": False, "enabled": None, "ino": None}) == "absent"


def test_short_probe_keeps_the_tail_of_the_output():
    assert W.short_probe(None) is None
    short = W.short_probe({"native": 1, "method": "direct", "command": ["x"], "rc": 0, "output": "a" * 600,
                           "reason": None, "extra": "dropped"})
    assert short == {"native": True, "method": "direct", "command": ["x"], "rc": 0, "output": "a" * 500,
                     "reason": None}


def test_lease_result_has_one_shape():
    status = {"present": True, "enabled": False, "ino": 9}
    result = W.lease_result(True, "job1", status, {"b": 1}, {"a": 2}, mode="native", native=True, leases=1,
                            first=True, prior_state="enabled", holder_pid=42, expires=5.0)
    assert result == {"changed": True, "lease_id": "job1", "mode": "native", "native": True, "leases": 1,
                      "first": True, "restored": False, "prior_state": "enabled", "reason": None,
                      "holder_pid": 42, "expires": 5.0, "entry_present": True, "entry_enabled": False,
                      "before": {"b": 1}, "after": {"a": 2}}
    closed = W.lease_result(False, "job1", {"present": False, "enabled": None}, None, None)
    assert set(closed) == set(result) and closed["mode"] is None and closed["native"] is False
