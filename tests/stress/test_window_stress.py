"""The window stress test at a reduced size (CI). Full size, run alone:

    python tests/stress/window_stress.py --workers 64 --cycles 2000 --kill-rate 0.05

Sizes here can be raised with NATIVEARM_STRESS_WORKERS / NATIVEARM_STRESS_CYCLES.
"""
import os

import pytest

import window_stress


@pytest.mark.parametrize("prior_enabled,run_dirs,builders", [(True, 1, 0), (False, 1, 0), (True, 2, 1)],
                         ids=["prior-enabled", "prior-disabled", "two-run-dirs-and-a-pr9769-builder"])
def test_window_stress_reduced(prior_enabled, run_dirs, builders):
    workers = int(os.environ.get("NATIVEARM_STRESS_WORKERS", "8"))
    cycles = int(os.environ.get("NATIVEARM_STRESS_CYCLES", "25"))
    summary = window_stress.run(workers=workers, cycles=cycles, kill_rate=0.1,
                                prior_enabled=prior_enabled, run_dirs=run_dirs, builders=builders)
    assert summary["violations"] == 0, summary["messages"]
    assert summary["errors"] == 0, summary["messages"]
    assert summary["cycles"] == workers * cycles
    assert summary["kills"] > 0                 # the crash path really ran
    assert summary["observer_checks"] > 10
    assert summary["native"] > 0 and summary["emulation"] > 0
    assert summary["final"] == summary["prior"] and summary["final_leases"] == 0
    assert summary["leftover_holders"] == 0
    if builders:
        assert summary["builder_rounds"] > 0 and summary["builder_violations"] == 0
