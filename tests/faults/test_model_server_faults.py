"""TorchServe failing under a running web app (gunicorn, two workers, private PostgreSQL and
Redis): killed, a worker killed under load, stalled past MODEL_TIMEOUT_S. Pages degrade to a
"recommendations unavailable" panel, the API answers 503 JSON, writes are kept, and the app
recovers on its own."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from benchmarks.fault_stack import FAULTS, MODEL_TIMEOUT_S, torchserve_worker_pid
from benchmarks.fault_traffic import count_writes
from tests.faults.model_server_down import (
    PROFILE,
    RECOVERY_S,
    UNAVAILABLE_PANEL,
    assert_degraded,
    recovered,
)
from tests.fixtures.polling import poll

pytestmark = pytest.mark.slow

LOAD_REQUESTS = 48
LOAD_THREADS = 6
# Requests answered before the worker is killed, so that others are in flight when it dies.
ANSWERED_BEFORE_KILL = 6


def test_torchserve_killed_pages_degrade_and_recover_without_a_restart(
    fault_stack, visitor_factory
):
    visitor = visitor_factory()
    for movie, stars in PROFILE.items():
        assert visitor.rate(movie, stars).status_code == 200
    fault = FAULTS["torchserve_killed"]
    fault.inject(fault_stack)
    try:
        assert_degraded(visitor, fault_stack, "unreachable")
    finally:
        fault.repair(fault_stack)
    answer = recovered(visitor)
    assert answer.status_code == 200, answer.text
    assert UNAVAILABLE_PANEL not in visitor.page("/recommendations?k=8").text
    writes = count_writes(fault_stack.postgres_engine(), [visitor], fault_stack.secret)
    assert writes.expected == len(PROFILE) + 2 and writes.lost == 0


def test_model_server_stalled_past_the_timeout_answers_503_not_a_hung_page(
    fault_stack, visitor_factory
):
    visitor = visitor_factory()
    assert visitor.rate(50, 5).status_code == 200
    fault = FAULTS["model_server_slow"]
    fault.inject(fault_stack)
    try:
        # Every request below returns (the client would raise after CLIENT_TIMEOUT_S).
        assert_degraded(visitor, fault_stack, f"did not answer within {MODEL_TIMEOUT_S:g}s")
    finally:
        fault.repair(fault_stack)
    answer = recovered(visitor)
    assert answer.status_code == 200, answer.text
    writes = count_writes(fault_stack.postgres_engine(), [visitor], fault_stack.secret)
    assert writes.expected == 3 and writes.lost == 0


def test_a_torchserve_worker_killed_under_load(fault_stack, visitor_factory):
    visitors = [visitor_factory() for _ in range(LOAD_THREADS)]
    old_worker = torchserve_worker_pid(fault_stack.torchserve, "sae")

    def ask(index: int) -> int:
        # Distinct ratings per request: none is answered from the cache.
        answer = visitors[index % LOAD_THREADS].recommend("sae", {index + 1: 4, 50: 5})
        return answer.status_code

    fault = FAULTS["torchserve_worker_killed"]
    with ThreadPoolExecutor(LOAD_THREADS) as pool:
        futures = [pool.submit(ask, index) for index in range(LOAD_REQUESTS)]
        poll(lambda: sum(f.done() for f in futures), lambda done: done >= ANSWERED_BEFORE_KILL,
             RECOVERY_S, 0.01)  # fmt: skip
        fault.inject(fault_stack)
        # A hung request would raise the client's ReadTimeout here.
        statuses = Counter(future.result() for future in futures)
    assert set(statuses) <= {200, 503}, statuses
    fault.repair(fault_stack)
    assert torchserve_worker_pid(fault_stack.torchserve, "sae") != old_worker
    answers = [visitors[0].recommend("sae", {movie: 3}).status_code for movie in (7, 8, 9)]
    assert answers == [200, 200, 200]
