"""The window stress test at a reduced size (CI). Full size, run alone:

    python tests/stress/window_stress.py --workers 64 --cycles 2000 --kill-rate 0.05

Sizes here can be raised with NATIVEARM_STRESS_WORKERS / NATIVEARM_STRESS_CYCLES.
"""
import os

import pytest

import window_stress


@pytest.mark.parametrize("prior_enabled", [True, False], ids=["prior-enabled", "prior-disabled"])
def test_window_stress_reduced(prior_enabled):
    workers = int(os.environ.get("NATIVEARM_STRESS_WORKERS", "8"))
    cycles = int(os.environ.get("NATIVEARM_STRESS_CYCLES", "25"))
    summary = window_stress.run(workers=workers, cycles=cycles, kill_rate=0.1,
                                prior_enabled=prior_enabled)
    assert summary["violations"] == 0, summary["messages"]
    assert summary["errors"] == 0, summary["messages"]
    assert summary["cycles"] == workers * cycles
    assert summary["kills"] > 0                 # the crash path really ran
    assert summary["observer_checks"] > 10
    assert summary["native"] > 0 and summary["emulation"] > 0
    assert summary["final"] == summary["prior"] and summary["final_leases"] == 0
    assert summary["leftover_holders"] == 0
