"""window.py re-exports the names that modules, tests, bench and the stress test
import from it, wherever they now live (its private parts have their own tests)."""
import pytest

from ansible_collections.nativearm.binfmt.plugins.module_utils import _holder_handle
from ansible_collections.nativearm.binfmt.plugins.module_utils import _window_instance
from ansible_collections.nativearm.binfmt.plugins.module_utils import _window_proc
from ansible_collections.nativearm.binfmt.plugins.module_utils import _window_records
from ansible_collections.nativearm.binfmt.plugins.module_utils import _window_rules
from ansible_collections.nativearm.binfmt.plugins.module_utils import window as W


@pytest.mark.parametrize("part, names", [
    # the tier (TIERS, decide_tier) is imported from tier.py, its one definition, not through the window
    (_window_rules, ["admissible", "desired_enabled", "new_lease_id", "restore_target",
                     "stale_restore_refusal", "validate_lease_id"]),
    (_window_proc, ["boot_id", "describe_lock_holders", "lock_holders_of", "pid_alive", "proc_start_time",
                    "signal_pid", "wait_exit"]),
    (_window_records, ["MODES", "RecordsCorrupt", "RecordsWriteError", "WindowError", "empty_state",
                       "instance_key", "load_state", "save_state", "secure_dir"]),
    (_window_instance, ["parse_proc_locks", "proc_cmdline"]),
    (_holder_handle, ["POLL"]),
])
def test_window_re_exports(part, names):
    for name in names:
        assert getattr(W, name) is getattr(part, name), name


def test_the_window_owns_the_protocol_constants():
    assert W.DEFAULT_ENTRY == "qemu-arm" and W.DEFAULT_RUN_DIR == "/run/nativearm-binfmt"
    assert W.HOLDER_START_WAIT == _holder_handle.START_WAIT
    assert W.FULL_LOOK >= W.POLL > 0
    assert not hasattr(W, "Holder")         # the opener's handle is _holder_handle.HolderHandle
