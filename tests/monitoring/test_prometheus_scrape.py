"""A real Prometheus (Debian's binary) scrapes the real web app over HTTP, loads the project's
alert rules, and answers queries over its HTTP API with the app's data."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import requests
from werkzeug.serving import make_server

from tests.fixtures.polling import poll
from tests.monitoring.prometheus_process import running_prometheus
from tests.monitoring.promql import rule_expressions
from tests.monitoring.web_app import monitored_web_app, recommend_once
from training.serving.processes import LOOPBACK, free_ports

QUERY_TIMEOUT_S = 60
POLL_S = 0.5

pytestmark = pytest.mark.slow


@pytest.fixture
def served_web_app(web_app_factory, checkpoints, prepared, tmp_path, monkeypatch) -> Iterator:
    """The real app on a free loopback port (werkzeug, threaded), with one recommendation made."""
    app = monitored_web_app(web_app_factory, checkpoints, prepared, tmp_path / "home", monkeypatch)
    recommend_once(app.test_client())
    (port,) = free_ports(1)
    server = make_server(LOOPBACK, port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{LOOPBACK}:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def prometheus(served_web_app, tmp_path) -> Iterator[str]:
    """Prometheus on a free port, scraping the app every second, with the project's rules."""
    with running_prometheus(
        tmp_path / "prometheus", {"web": f"http://{served_web_app}/metrics"}
    ) as url:
        yield url


def query(url: str, expr: str) -> list[dict]:
    """The instant-query result, once it is non-empty (scrapes take a moment)."""

    def result() -> list[dict]:
        answer = requests.get(f"{url}/api/v1/query", params={"query": expr}, timeout=5).json()
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    found = poll(result, bool, QUERY_TIMEOUT_S, POLL_S)
    assert found, f"{expr}: no data after {QUERY_TIMEOUT_S}s"
    return found


def test_prometheus_scrapes_the_web_app(prometheus):
    (up,) = query(prometheus, 'up{job="web"} == 1')
    assert up["value"][1] == "1"
    (predictions,) = query(prometheus, 'predictions_total{job="web", model_type="sae"}')
    assert float(predictions["value"][1]) == 1
    requests_seen = query(prometheus, 'sum(http_requests_total{job="web"})')
    assert float(requests_seen[0]["value"][1]) >= 2  # the API calls made before the scrape
    assert query(prometheus, 'training_epochs_run{job="web"}')
    (window,) = query(prometheus, 'drift_window_requests{job="web"}')
    assert float(window["value"][1]) == 1


def test_prometheus_loads_the_alert_rules(prometheus):
    answer = requests.get(f"{prometheus}/api/v1/rules", timeout=5).json()
    rules = [rule for group in answer["data"]["groups"] for rule in group["rules"]]
    assert {rule["name"] for rule in rules} == set(rule_expressions())
    assert all(rule["health"] in ("ok", "unknown") for rule in rules), rules
