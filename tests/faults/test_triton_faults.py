"""tritonserver killed under a web app on MODEL_BACKEND=triton (gunicorn, private PostgreSQL and
Redis): the same as TorchServe's row. Pages show the "recommendations unavailable" panel, the
API answers 503 JSON, ratings and feedback are stored, and recommendations are back within
10 s of Triton being back, without restarting the web app."""

from __future__ import annotations

import pytest

from benchmarks.fault_stack import FAULTS
from benchmarks.fault_traffic import count_writes
from tests.faults.model_server_down import PROFILE, assert_degraded, recovered

pytestmark = pytest.mark.slow


def test_triton_killed_pages_degrade_and_recover_without_a_restart(
    fault_stack_triton, visitor_factory
):
    visitor = visitor_factory("triton")
    for movie, stars in PROFILE.items():
        assert visitor.rate(movie, stars).status_code == 200
    assert visitor.recommend("sae", {50: 5}).status_code == 200  # served by Triton
    fault = FAULTS["triton_killed"]
    fault.inject(fault_stack_triton)
    try:
        assert_degraded(visitor, fault_stack_triton, "Triton at")
    finally:
        fault.repair(fault_stack_triton)
    answer = recovered(visitor)
    assert answer.status_code == 200, answer.text
    assert answer.json()["version"].startswith("triton-")
    stack = fault_stack_triton
    writes = count_writes(stack.postgres_engine(), [visitor], stack.secret)
    assert writes.expected == len(PROFILE) + 2 and writes.lost == 0
