"""Alerts that reach someone: the web app (gunicorn) serves from a real TorchServe, which is then
stopped; a real Prometheus scraping both evaluates the project's rules (durations scaled 60
times: five minutes are five seconds) and a real Alertmanager, with the compose stack's routing,
delivers what fires to a webhook receiver on loopback (standing in for Slack or email)."""

from __future__ import annotations

import itertools
import threading
from urllib.parse import urlsplit

import pytest
import requests

from tests.fixtures.alertmanager import start_prometheus
from tests.fixtures.polling import poll
from tests.fixtures.web import TEST_API_KEY
from training.serving.torchserve_server import Ports, start_torchserve

pytestmark = pytest.mark.slow

FACTOR = 60
MODEL = "sae"
TIMEOUT_S = 10
DELIVERY_TIMEOUT_S = 60
RATINGS = {"1": 5, "50": 4, "181": 5}
UNASKED_MOVIE = 200  # and on: one more rating per request
EXPECTED = {"HighApiErrorRate", "ScrapeTargetDown"}


def test_a_stopped_model_server_pages_someone(
    torchserve_model_store, tmp_path, gunicorn_web_factory, alertmanager, webhook_receiver
):
    server = start_torchserve(
        torchserve_model_store, tmp_path / "torchserve", ports=Ports.free(), models=(MODEL,)
    )
    try:
        base = gunicorn_web_factory(
            MODEL_BACKEND="torchserve", TORCHSERVE_URL=server.inference_url, MODEL_TIMEOUT_S="5"
        )
        token = requests.post(f"{base}/api/v1/token", json={"api_key": TEST_API_KEY},
                              timeout=TIMEOUT_S).json()["access_token"]  # fmt: skip
        headers = {"Authorization": f"Bearer {token}"}

        asked = itertools.count(UNASKED_MOVIE)

        def recommend() -> int:
            # Ratings never asked before: a cached answer would be served without the model.
            ratings = {**RATINGS, str(next(asked)): 3}
            return requests.post(f"{base}/api/v1/recommend/{MODEL}", json={"ratings": ratings},
                                 headers=headers, timeout=TIMEOUT_S).status_code  # fmt: skip

        assert recommend() == 200
        targets = {"web": urlsplit(base).netloc, "torchserve": urlsplit(server.metrics_url).netloc}
        with start_prometheus(tmp_path / "prometheus", targets, FACTOR, alertmanager) as prom:
            prom.poll_query('up{job="torchserve"} == 1', bool, TIMEOUT_S)
            assert webhook_receiver.received == []  # nothing fires while all is well
            server.stop()

            stop = threading.Event()
            statuses: list[int] = []

            def traffic() -> None:  # visitors keep asking while the model server is down
                while not stop.is_set():
                    statuses.append(recommend())
                    stop.wait(0.2)

            visitor = threading.Thread(target=traffic, daemon=True)
            visitor.start()
            try:
                poll(webhook_receiver.alert_names, lambda names: EXPECTED <= names,
                     DELIVERY_TIMEOUT_S, 0.5)  # fmt: skip
            finally:
                stop.set()
                visitor.join(TIMEOUT_S)
    finally:
        server.stop()
    assert statuses and set(statuses) == {503}, statuses  # the API said so, clearly
    assert EXPECTED <= webhook_receiver.alert_names(), webhook_receiver.received
    delivered = {
        alert["labels"]["alertname"]: alert
        for message in webhook_receiver.received
        for alert in message["alerts"]
    }
    # Routed as compose routes it: critical alerts to on-call, with their summary.
    message = next(m for m in webhook_receiver.received if m["receiver"] == "oncall")
    assert message["commonLabels"]["severity"] == "critical"
    assert "fail with 5xx" in delivered["HighApiErrorRate"]["annotations"]["summary"]
    assert delivered["ScrapeTargetDown"]["labels"]["job"] == "torchserve"
