"""The API's rate limit with Redis across 2 gunicorn workers: one shared budget (not one per
worker), and what goes over it is a JSON 429 with ``Retry-After``."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from prometheus_client.mmap_dict import MmapedDict

from tests.fixtures.web import TEST_API_KEY
from training.serving import processes
from web.server import METRICS_FOLDER

pytestmark = pytest.mark.slow

BUDGET = 12
SENT = 3 * BUDGET  # per round: per-worker budgets (2 x BUDGET) would let more than BUDGET through
MAX_ROUNDS = 10  # all within the minute the budget is for
CONCURRENT = 6
TIMEOUT_S = 30
REDIS_URL = "redis://127.0.0.1:6379/0"
TOKEN_ROUTE = "/api/v1/token"


def token_request(base: str) -> requests.Response:
    # A new connection each time, several at once, so either worker may take it.
    return requests.post(f"{base}{TOKEN_ROUTE}", json={"api_key": TEST_API_KEY},
                         headers={"Connection": "close"}, timeout=TIMEOUT_S)  # fmt: skip


def test_two_workers_share_one_budget_in_redis(gunicorn_web_factory, project_home):
    prefix = f"movierec-test-{uuid.uuid4().hex[:8]}:"  # this test's keys only
    base = gunicorn_web_factory(
        REDIS_URL=REDIS_URL, RATE_LIMIT=f"{BUDGET} per minute", CACHE_PREFIX=prefix
    )
    folder = processes.run_dir(project_home) / METRICS_FOLDER.format(port=urlsplit(base).port)
    answers: list[requests.Response] = []
    # Which worker accepts a connection is up to the kernel (one may take a whole round on a
    # busy machine): rounds go on until both have answered. The budget is spent in the first;
    # with one budget per worker the other would let BUDGET more through.
    with ThreadPoolExecutor(CONCURRENT) as pool:
        for _ in range(MAX_ROUNDS):
            answers += pool.map(token_request, [base] * SENT)
            if len(workers_that_served(folder, TOKEN_ROUTE)) == 2:
                break
    statuses = [answer.status_code for answer in answers]
    assert statuses.count(200) == BUDGET, statuses
    assert statuses.count(429) == len(statuses) - BUDGET, statuses
    refused = next(answer for answer in answers if answer.status_code == 429)
    assert refused.headers["Content-Type"].startswith("application/json")
    assert "rate limit exceeded" in refused.json()["error"]
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert len(workers_that_served(folder, TOKEN_ROUTE)) == 2, "one worker took every request"


def workers_that_served(folder: Path, route: str) -> set[str]:
    """Pids whose metrics file (prometheus_client's multiprocess folder) counted ``route``."""
    served = set()
    for path in folder.glob("counter_*.db"):
        for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
            _metric, name, labels, _help = json.loads(key)
            if name == "http_requests_total" and labels.get("endpoint") == route and value > 0:
                served.add(path.stem.rsplit("_", 1)[-1])
    return served
