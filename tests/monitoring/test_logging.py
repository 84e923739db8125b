"""One logging configuration: JSON lines per area file, console, rotation, and a request id
carried from an incoming request to the model server call and back in the logs."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from flask import Flask

from training.monitoring import logging_config as lc


@pytest.fixture
def logs_dir(tmp_path):
    """Logging configured into a temp folder; the previous handlers come back afterwards."""
    root = logging.getLogger(lc.ROOT_LOGGER)
    saved = (list(root.handlers), root.level, root.propagate)
    for handler in saved[0]:
        root.removeHandler(handler)
    lc.configure_logging(tmp_path, level="DEBUG", console=False)
    yield tmp_path
    lc.reset_logging()
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])
    root.propagate = saved[2]


def read_lines(path) -> list[dict]:
    for handler in logging.getLogger(lc.ROOT_LOGGER).handlers:
        handler.flush()
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_each_area_writes_json_lines_to_its_own_file(logs_dir):
    logging.getLogger("movierec.training").info("epoch %d done", 3, extra={"loss": 0.5})
    logging.getLogger("movierec.data").warning("odd line")
    logging.getLogger("movierec.serving").info("started")
    (training,) = read_lines(logs_dir / "training.jsonl")
    assert training["message"] == "epoch 3 done" and training["loss"] == 0.5
    assert training["logger"] == "movierec.training" and training["level"] == "INFO"
    assert training["request_id"] == lc.NO_REQUEST_ID
    assert training["timestamp"].endswith("+00:00")
    assert [line["message"] for line in read_lines(logs_dir / "data.jsonl")] == ["odd line"]
    # Loggers outside the three areas share one file; area records are not repeated there.
    assert [line["message"] for line in read_lines(logs_dir / "movierec.jsonl")] == ["started"]
    assert not (logs_dir / "api.jsonl").exists()  # files open on first use


def test_configuring_twice_keeps_one_set_of_handlers(logs_dir):
    lc.configure_logging(logs_dir, console=False)
    lc.configure_logging(logs_dir, console=False)
    logging.getLogger("movierec.api").info("once")
    assert len(read_lines(logs_dir / "api.jsonl")) == 1


def test_console_gets_every_area(logs_dir, capsys):
    lc.configure_logging(logs_dir, console=True, console_format="text")
    with lc.request_id_context("abc-123"):
        logging.getLogger("movierec.api").info("hello")
    assert "movierec.api [abc-123]: hello" in capsys.readouterr().err
    with pytest.raises(ValueError, match="console_format"):
        lc.configure_logging(logs_dir, console_format="xml")


def test_files_rotate(tmp_path):
    handler = lc.rotating_file_handler(tmp_path / "api.jsonl", max_bytes=500, backup_count=2)
    logger = logging.getLogger("movierec.test_rotation")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for i in range(40):
            logger.warning("line %d with some padding to fill the file", i)
    finally:
        logger.removeHandler(handler)
        handler.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    # The lock file lets the web app's workers share the log (test_shared_log_file.py).
    assert files == ["api.jsonl", "api.jsonl.1", "api.jsonl.2", "api.jsonl.lock"]
    assert all(p.stat().st_size <= 500 for p in tmp_path.glob("api.jsonl*"))


def test_request_ids_are_validated():
    assert lc.valid_request_id("req-1.a:b_c") == "req-1.a:b_c"
    for bad in (None, "", "a b", "x\nforged log line", "é", "x" * 129):
        replaced = lc.valid_request_id(bad)
        assert replaced != bad and len(replaced) == 32


class ModelServer(BaseHTTPRequestHandler):
    """Stands in for TorchServe's side of the contract: log the X-Request-ID it receives (as the
    handlers do, with ``extra``) and echo it back."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        rid = self.headers.get(lc.REQUEST_ID_HEADER)
        logging.getLogger("movierec.serving").info("inference", extra={"request_id": rid})
        self.send_response(200)
        self.send_header(lc.REQUEST_ID_HEADER, rid or "")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def model_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), ModelServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_request_id_travels_from_web_app_to_model_server_and_back(logs_dir, model_server):
    app = Flask("carrier")
    lc.install_request_logging(app)
    lc.install_request_logging(app)  # idempotent

    @app.post("/recommend")
    def recommend():
        logging.getLogger("movierec.api").info("calling the model server")
        answer = requests.post(
            f"{model_server}/predictions/sae", headers=lc.outgoing_headers(), timeout=5
        )
        return {"echoed": answer.headers[lc.REQUEST_ID_HEADER]}

    client = app.test_client()
    given = client.post("/recommend", headers={lc.REQUEST_ID_HEADER: "click-42"})
    assert given.headers[lc.REQUEST_ID_HEADER] == "click-42"
    assert given.json == {"echoed": "click-42"}
    fresh = client.post("/recommend")
    fresh_id = fresh.headers[lc.REQUEST_ID_HEADER]
    assert fresh.json == {"echoed": fresh_id} and fresh_id != "click-42"
    assert lc.current_request_id() is None  # nothing leaks out of the request

    api = read_lines(logs_dir / "api.jsonl")
    assert [(line["message"], line["request_id"]) for line in api] == [
        ("calling the model server", "click-42"),
        ("POST /recommend 200", "click-42"),
        ("calling the model server", fresh_id),
        ("POST /recommend 200", fresh_id),
    ]
    assert api[1]["status"] == 200 and api[1]["route"] == "/recommend"
    served = read_lines(logs_dir / "movierec.jsonl")
    assert [line["request_id"] for line in served] == ["click-42", fresh_id]
