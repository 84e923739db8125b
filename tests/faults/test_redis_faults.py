"""The private redis-server stopped under the running web app (two gunicorn workers): the
recommendation cache and the rate limits go on in-process, each worker logs one warning per
outage, nothing answers 500, and Redis is used again once it is back."""

from __future__ import annotations

import itertools

import pytest
import redis

from benchmarks.fault_stack import FAULTS, WEB_WORKERS
from tests.fixtures.polling import poll

pytestmark = pytest.mark.slow

ROUNDS = 6
CACHE_WARNING = "Redis cache unreachable"
LIMITER_WARNING = "Rate limit storage unreachable"
RECOVERY_S = 15.0  # the cache retries Redis every 5 s (web/cache.py REDIS_RETRY_S)
POLL_S = 0.5


def traffic(visitor, round_: int) -> list[int]:
    """One round of what a visitor does: the cache and the rate limiter are both touched."""
    answers = [
        visitor.recommend("sae", {50: 5, 100 + round_: 4}),
        visitor.recommend("sae", {50: 5, 100 + round_: 4}),  # the same query: a cache hit
        visitor.page(f"/recommendations?k={5 + round_}"),
        visitor.rate(200 + round_, 3),
        visitor.feedback(200 + round_, "watched"),
    ]
    return [answer.status_code for answer in answers]


def test_redis_stopped_falls_back_in_process_with_one_warning(fault_stack, visitor_factory):
    app = fault_stack.web["torchserve"]
    visitor = visitor_factory()
    assert max(traffic(visitor, 0)) < 400
    log_start = len(app.log())
    fault = FAULTS["redis_stopped"]
    fault.inject(fault_stack)
    try:
        statuses = [status for round_ in range(1, ROUNDS) for status in traffic(visitor, round_)]
        second = visitor.recommend("sae", {50: 5, 101: 4})
    finally:
        fault.repair(fault_stack)
    assert set(statuses) <= {200, 201}, statuses
    assert second.json()["cache_hit"] is True  # cached in-process while Redis was down
    outage_log = app.log()[log_start:]
    assert 1 <= outage_log.count(CACHE_WARNING) <= WEB_WORKERS, outage_log[-3000:]
    assert 1 <= outage_log.count(LIMITER_WARNING) <= WEB_WORKERS, outage_log[-3000:]
    assert "Traceback" not in outage_log

    # Back on Redis: new answers land in the shared cache again.
    client = redis.Redis.from_url(fault_stack.redis.url)
    movies = itertools.count(300)
    try:
        entries = poll(
            lambda: (visitor.recommend("sae", {50: 5, next(movies): 2}), client.keys("*rec:*"))[1],
            bool,
            RECOVERY_S,
            POLL_S,
        )
    finally:
        client.close()
    assert entries, "nothing was cached in Redis after it came back"
