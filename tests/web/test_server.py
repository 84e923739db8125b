"""``movierec serve web``: gunicorn starts, answers /api/v1/health, records its pid, stops."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from training.serving import processes
from web.server import SERVICE, serve_web_command

pytestmark = pytest.mark.slow

SEARCHES_PER_ROUND = 24
CONCURRENT_SEARCHES = 8
MAX_ROUNDS = 10


@pytest.fixture
def served_app_env(
    project_home, checkpoints, torchserve_model_store, monkeypatch, tmp_path
) -> None:
    """What `movierec serve web` reads: the session's data, SQLite, the in-process models."""
    from training.config import Paths

    paths = Paths(project_home)
    monkeypatch.setenv("MOVIEREC_HOME", str(project_home))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'served.sqlite3'}")
    monkeypatch.setenv("MODEL_BACKEND", "inprocess")
    monkeypatch.setenv("MODEL_CHECKPOINTS", str(checkpoints["sae"].parent))
    monkeypatch.setenv("MODEL_STORE", str(torchserve_model_store))
    monkeypatch.setenv("MOVIES_PATH", str(paths.prepared("ml-100k") / "movies.json"))


def test_serve_web_starts_gunicorn_and_stops(project_home, served_app_env):
    port = processes.free_port()
    serve_web_command(host=processes.LOOPBACK, port=port, workers=1, dev=False, timeout=60)
    try:
        pid = processes.read_pid(SERVICE, project_home)
        assert pid is not None
        health = requests.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=5)
        assert health.status_code == 200 and health.json()["database"] == "ok"
        page = requests.get(f"http://127.0.0.1:{port}/search?q=toy", timeout=10)
        assert "Toy Story" in page.text
        metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert "http_request_duration_seconds" in metrics.text
    finally:
        assert processes.stop_service(SERVICE, project_home) is True
    assert processes.read_pid(SERVICE, project_home) is None


def search(port: int) -> bool:
    return requests.get(f"http://127.0.0.1:{port}/search?q=toy", timeout=10).ok


def test_two_workers_metrics_count_every_request(project_home, served_app_env, monkeypatch):
    """Each gunicorn worker writes its metrics to the multiprocess folder; /metrics sums them."""
    from prometheus_client.parser import text_string_to_metric_families

    from web.server import METRICS_FOLDER

    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    port = processes.free_port()
    serve_web_command(host=processes.LOOPBACK, port=port, workers=2, dev=False, timeout=60)
    folder = processes.run_dir(project_home) / METRICS_FOLDER.format(port=port)
    searches = 0
    try:
        # A new connection each time, 8 at once: either worker may answer. Which one accepts is
        # up to the kernel (one took all 24 of a round on a busy machine), so rounds go on
        # until both have counted something.
        with ThreadPoolExecutor(CONCURRENT_SEARCHES) as pool:
            for _ in range(MAX_ROUNDS):
                answers = list(pool.map(search, [port] * SEARCHES_PER_ROUND))
                assert all(answers)
                searches += len(answers)
                writers = {path.stem.rsplit("_", 1)[-1] for path in folder.glob("counter_*.db")}
                if len(writers) == 2:
                    break
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        assert processes.stop_service(SERVICE, project_home) is True
    counted = sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "http_requests_total"
        and sample.labels.get("endpoint") == "/search"
        and sample.labels.get("status") == "200"
    )
    assert counted == searches
    assert len(writers) == 2, f"metric files of {writers}: expected one per worker"
