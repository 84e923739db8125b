"""PostgreSQL (a private cluster, never the machine's) stopped under the running web app: health
says 503, a rating or feedback gets a clear 503 error (never a silent loss), and once the
database is back the app works again without a restart."""

from __future__ import annotations

import pytest
import requests

from benchmarks.fault_stack import FAULTS
from benchmarks.fault_traffic import count_writes
from tests.fixtures.polling import poll

pytestmark = pytest.mark.slow

DATABASE_DOWN = "database unavailable"
RECOVERY_S = 10.0
POLL_S = 0.2


def health(base_url: str) -> requests.Response:
    return requests.get(f"{base_url}/api/v1/health", timeout=10)


def test_postgres_stopped_refuses_writes_clearly_and_recovers(fault_stack, visitor_factory):
    visitor = visitor_factory()
    assert visitor.rate(50, 5).status_code == 200
    assert visitor.feedback(50, "up").status_code == 201
    fault = FAULTS["postgres_stopped"]
    fault.inject(fault_stack)
    try:
        down = health(visitor.base_url)
        assert down.status_code == 503
        assert down.json()["status"] == "degraded" and down.json()["database"].startswith("error")
        rated = visitor.rate(181, 4)  # htmx: an error fragment the page swaps in
        assert rated.status_code == 503 and DATABASE_DOWN in rated.text
        assert "<html" not in rated.text
        page = visitor.browser.post(
            f"{visitor.base_url}/ratings", data={"movie_id": 172, "rating": 4}, timeout=30
        )
        assert page.status_code == 503 and DATABASE_DOWN in page.text and "<html" in page.text
        fed = visitor.feedback(181, "up")
        assert fed.status_code == 503 and fed.json()["error"].startswith(DATABASE_DOWN)
        profile = visitor.page("/profile")
        assert profile.status_code == 503 and DATABASE_DOWN in profile.text
    finally:
        fault.repair(fault_stack)
    back = poll(lambda: health(visitor.base_url), lambda r: r.ok, RECOVERY_S, POLL_S)
    assert back.status_code == 200, back.text
    # The pooled connections the restart cut are replaced (pre-ping), no restart of the app.
    for movie in (181, 172, 1, 7):
        assert visitor.rate(movie, 4).status_code == 200
    assert visitor.feedback(181, "up").status_code == 201
    assert visitor.page("/recommendations").status_code == 200
    writes = count_writes(fault_stack.postgres_engine(), [visitor], fault_stack.secret)
    assert writes.refused == 2  # the client was told each time
    assert writes.expected == 2 + 4 + 1 and writes.lost == 0
