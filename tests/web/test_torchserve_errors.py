"""The TorchServe backend's error mapping and request headers, against a stand-in HTTP server.

The backend's requests are TorchServeClient's (the one module that speaks TorchServe's HTTP API);
the real server is exercised by test_torchserve_backend.py.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from training.config import REPO_ROOT
from training.serving.torchserve_client import POOL_CONNECTIONS
from web.backends.base import BackendRejected, BackendUnavailable, RecommendRequest
from web.backends.torchserve import TorchServeBackend

SLOW_S = 1.0
TIMEOUT_S = 0.3
ANSWER = {
    "model": "sae",
    "version": "1.0",
    "strategy": "model",
    "recommendations": [{"movie_id": 50, "title": "Star Wars (1977)", "score": 0.9}],
}
# model name -> (status, JSON body) the stand-in answers with
ANSWERS = {
    "sae": (200, ANSWER),
    "bad": (400, {"code": 400, "type": "InvalidInput", "message": "k must be positive"}),
    "missing": (404, {"code": 404, "type": "ModelNotFoundException", "message": "no model"}),
    "broken": (503, {"code": 503, "message": "worker died"}),
    "slow": (200, ANSWER),
}


class StandIn(BaseHTTPRequestHandler):
    seen: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        model = self.path.rsplit("/", 1)[-1]
        length = int(self.headers.get("Content-Length", 0))
        StandIn.seen.append(
            {"path": self.path, "headers": dict(self.headers), "body": self.rfile.read(length)}
        )
        if model == "slow":
            time.sleep(SLOW_S)
        status, body = ANSWERS[model]
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def stand_in():
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def backend(stand_in):
    found = TorchServeBackend(stand_in + "/", timeout_s=TIMEOUT_S, token="secret-token")
    yield found
    found.close()


QUERY = RecommendRequest(ratings={50: 5}, k=1)


def test_answer_headers_and_body(backend):
    StandIn.seen.clear()
    result = backend.recommend("sae", QUERY, "req-7")
    assert [item.movie_id for item in result.recommendations] == [50]
    (request,) = StandIn.seen
    assert request["path"] == "/predictions/sae"
    assert request["headers"]["X-Request-ID"] == "req-7"
    assert request["headers"]["Authorization"] == "Bearer secret-token"
    assert request["headers"]["Content-Type"] == "application/json"
    assert json.loads(request["body"]) == QUERY.to_json()


def test_a_4xx_is_rejected_with_the_server_message(backend):
    with pytest.raises(BackendRejected, match="k must be positive") as rejected:
        backend.recommend("bad", QUERY, "req")
    assert rejected.value.status == 400


@pytest.mark.parametrize("model", ["missing", "broken"])
def test_404_and_5xx_are_unavailable(backend, model):
    status = ANSWERS[model][0]
    with pytest.raises(BackendUnavailable, match=f"HTTP {status}"):
        backend.recommend(model, QUERY, "req")


def test_a_timeout_is_unavailable(backend):
    with pytest.raises(BackendUnavailable, match=f"did not answer within {TIMEOUT_S:g}s"):
        backend.recommend("slow", QUERY, "req")


def test_no_server_is_unavailable():
    backend = TorchServeBackend("http://127.0.0.1:9", timeout_s=TIMEOUT_S)
    with pytest.raises(BackendUnavailable, match=r"unreachable \(ConnectionError\)"):
        backend.recommend("sae", QUERY, "req")
    health = backend.health()
    assert health and all("unreachable" in state for state in health.values())
    backend.close()


def test_connections_are_pooled(backend):
    adapter = backend._client.session.get_adapter("http://127.0.0.1")
    assert adapter._pool_maxsize == POOL_CONNECTIONS


def test_one_module_builds_torchserve_http_requests():
    """Only the client names TorchServe's inference route among the project's packages."""
    files = [
        path.relative_to(REPO_ROOT).as_posix()
        for package in ("training", "handlers", "web")
        for path in Path(REPO_ROOT, package).rglob("*.py")
        if "/predictions/" in path.read_text(encoding="utf-8")
    ]
    assert files == ["training/serving/torchserve_client.py"]
