"""A real Prometheus (Debian's binary) scrapes the real web app over HTTP, loads the project's
alert rules, and answers queries over its HTTP API with the app's data."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Iterator

import pytest
import requests
import yaml
from werkzeug.serving import make_server

from tests.fixtures.polling import poll
from tests.monitoring.promql import RULES, rule_expressions
from tests.monitoring.web_app import monitored_web_app, recommend_once
from training.serving.processes import LOOPBACK, free_ports, terminate, wait_http

SCRAPE_INTERVAL = "1s"
READY_TIMEOUT_S = 60
QUERY_TIMEOUT_S = 60
POLL_S = 0.5
STOP_TIMEOUT_S = 20

pytestmark = pytest.mark.slow


@pytest.fixture
def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        message = "prometheus not found: apt-get install prometheus"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


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
def prometheus(prometheus_binary, served_web_app, tmp_path) -> Iterator[str]:
    """Prometheus on a free port, scraping the app every second, with the project's rules."""
    folder = tmp_path / "prometheus"
    folder.mkdir()
    shutil.copy(RULES, folder / RULES.name)
    config = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "rule_files": [RULES.name],
        "scrape_configs": [
            {
                "job_name": "web",
                "metrics_path": "/metrics",
                "static_configs": [{"targets": [served_web_app]}],
            }
        ],
    }
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    (port,) = free_ports(1)
    url = f"http://{LOOPBACK}:{port}"
    with (folder / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [prometheus_binary, f"--config.file={folder / 'prometheus.yml'}",
             f"--storage.tsdb.path={folder / 'data'}", f"--web.listen-address={LOOPBACK}:{port}"],
            cwd=folder, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        import psutil

        wait_http(f"{url}/-/ready", READY_TIMEOUT_S, process=psutil.Process(process.pid))
        yield url
    finally:
        terminate(process.pid, STOP_TIMEOUT_S)
        process.wait(timeout=STOP_TIMEOUT_S)


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
