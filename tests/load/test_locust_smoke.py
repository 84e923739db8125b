"""The load-test smoke (``python -m benchmarks.run_load --smoke``) against real servers.

Locust only ever runs as a subprocess here: importing it would monkey-patch this process's
networking (breaking other tests), and its pytest plugin claims ``--host``. TorchServe and
Triton are the session's servers; the driver starts (and must stop) the web app itself.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from training.serving import processes

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
RUN_LOAD = "benchmarks.run_load"
SCENARIOS = ("torchserve_http", "torchserve_grpc", "triton_grpc", "web")
SMOKE_USERS = 2
SMOKE_TIMEOUT_S = 300
FAILING_RUN_SECONDS = 2


def run_load(*args: str, timeout: float = SMOKE_TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", RUN_LOAD, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
    )


def aggregated_row(stats_csv: Path) -> dict[str, str]:
    with stats_csv.open(newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row["Name"] == "Aggregated"]
    assert len(rows) == 1, f"{stats_csv}: no Aggregated row"
    return rows[0]


@pytest.fixture(scope="module")
def smoke(project_home, torchserve, triton_server, tmp_path_factory):
    out = tmp_path_factory.mktemp("load-smoke")
    result = run_load(
        "--smoke",
        "--out", str(out),
        "--home", str(project_home),
        "--model-store", str(torchserve.model_store),
        "--torchserve-url", torchserve.inference_url,
        "--torchserve-grpc", torchserve.grpc_target,
        "--triton-grpc", triton_server.grpc_url,
    )  # fmt: skip
    return result, out


def test_smoke_passes_on_every_scenario(smoke):
    result, out = smoke
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    report = (out / "load_smoke.md").read_text(encoding="utf-8")
    for scenario in SCENARIOS:
        assert f"| {scenario} | {SMOKE_USERS} |" in report


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_locust_csv_shows_requests_and_no_failures(smoke, scenario):
    _, out = smoke
    row = aggregated_row(out / "locust" / "smoke" / f"{scenario}_u{SMOKE_USERS}_stats.csv")
    assert int(row["Request Count"]) > 0
    assert int(row["Failure Count"]) == 0


def test_every_point_records_the_loopback_round_trip_before_it(smoke):
    _, out = smoke
    record = json.loads((out / "locust" / "smoke" / "run.json").read_text(encoding="utf-8"))
    assert {point["scenario"] for point in record["points"]} == set(SCENARIOS)
    for point in record["points"]:
        assert point["loopback_us"] > 0, point


def test_the_driver_stopped_the_web_app_it_started(smoke):
    _, out = smoke
    record = json.loads((out / "locust" / "smoke" / "run.json").read_text(encoding="utf-8"))
    started = record["servers_started"]
    assert set(started) == {"web"}  # TorchServe and Triton were given by address
    assert not processes.is_alive(started["web"])


def test_smoke_fails_when_requests_fail(project_home, torchserve, tmp_path):
    nobody = f"http://{processes.LOOPBACK}:{processes.free_port()}"  # connection refused
    result = run_load(
        "--smoke",
        "--scenarios", "torchserve_http",
        "--duration", str(FAILING_RUN_SECONDS),
        "--out", str(tmp_path),
        "--home", str(project_home),
        "--model-store", str(torchserve.model_store),
        "--torchserve-url", nobody,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-3000:]
    assert "failed request(s)" in result.stderr
    row = aggregated_row(
        tmp_path / "locust" / "smoke" / f"torchserve_http_u{SMOKE_USERS}_stats.csv"
    )
    assert int(row["Failure Count"]) > 0
