"""The fault soak (benchmarks/fault_soak.py) in its short form: two faults on the shared fault
stack in about 40 s of traffic, and not one acknowledged write missing from the database."""

from __future__ import annotations

import pytest

from benchmarks.fault_soak import NO_ANSWER, report, run_soak

pytestmark = pytest.mark.slow

FAULTS = ["postgres_stopped", "gunicorn_worker_killed"]
DURATION_S = 40.0
PERIOD_S = 20.0
HOLD_S = 5.0
VISITORS = 2


def test_short_fault_soak_loses_no_write(fault_stack):
    result = run_soak(fault_stack, FAULTS, DURATION_S, PERIOD_S, HOLD_S, VISITORS)
    text = report(result, fault_stack, FAULTS)
    assert [window.fault for window in result.windows] == FAULTS, text
    assert result.writes.expected > 0 and result.writes.lost == 0, text
    assert result.hung == 0, text
    # Failures only while a fault lasts, and only clear ones: 503s or a cut connection.
    assert set(result.outside) <= {"200", "201"}, text
    seen = {outcome for window in result.windows for outcome in window.statuses}
    assert seen - {"200", "201"} <= {"503", NO_ANSWER}, text
    assert "**lost writes** | **0**" in text
