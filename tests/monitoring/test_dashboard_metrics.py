"""Every metric a dashboard or an alert rule queries is really exposed: by the web app (a real
app instance, scraped), by TorchServe or by Triton (the session's real servers, scraped after
one inference), or by Prometheus itself. GPU metrics only exist with a GPU; they are listed here
with where each comes from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import requests
import yaml

from tests.monitoring.helpers import exposed_names, sampled_names, value
from tests.monitoring.promql import (
    dashboard_expressions,
    metric_names,
    recorded_names,
    rule_expressions,
)
from tests.monitoring.web_app import monitored_web_app, recommend_once
from training.monitoring.gpu import GPU_METRICS
from training.monitoring.pipeline_metrics import PIPELINE_METRICS
from training.monitoring.tuning_metrics import TUNING_METRICS

SCRAPE_TIMEOUT_S = 10
PREDICTION_METRIC = "PredictionTime"  # what TorchServe's worker reports for every batch
PROMETHEUS_OWN = {"up", "ALERTS", "ALERTS_FOR_STATE"}
# Written by `dvc repro` (data/metrics/pipeline.prom), which no fixture here runs: the CLI writing
# them is tests/monitoring/test_pipeline_metrics.py's, the panels showing them
# test_dashboard_queries.py's.
PIPELINE = set(PIPELINE_METRICS)
# Written by `movierec tune` (data/metrics/tuning.prom): test_tune.py checks the file, the
# panels showing them test_dashboard_queries.py's.
TUNING = set(TUNING_METRICS)
# Reported only where CUDA is present, so a CPU machine cannot scrape them. Triton's, from its
# metrics documentation ("GPU metrics"); ours, from training/monitoring (gpu.py, the textfile).
TRITON_GPU = {"nv_gpu_memory_used_bytes", "nv_gpu_memory_total_bytes", "nv_gpu_utilization"}
TRAINING_GPU = {"training_gpu_memory_peak_bytes"}
GPU_ONLY = TRITON_GPU | TRAINING_GPU | set(GPU_METRICS)
# TorchServe declares its GPU gauges even on a CPU (no samples), so they are checked for real.
TORCHSERVE_GPU = {"GPUMemoryUsed", "GPUUtilization", "GPUMemoryUtilization"}


def queried_metrics() -> dict[str, set[str]]:
    """metric name -> where it is queried."""
    found: dict[str, set[str]] = {}
    for source, expressions in (
        ("rule", rule_expressions()),
        ("dashboard", dashboard_expressions()),
    ):
        for where, expr in expressions.items():
            for name in metric_names(expr):
                found.setdefault(name, set()).add(f"{source} {where}")
    return found


@pytest.fixture
def web_metrics(web_app_factory, checkpoints, prepared, tmp_path, monkeypatch) -> str:
    app = monitored_web_app(web_app_factory, checkpoints, prepared, tmp_path, monkeypatch)
    client = app.test_client()
    recommend_once(client)
    assert client.get("/api/v1/health").status_code in (200, 503)
    response = client.get("/metrics")
    assert response.status_code == 200
    return response.get_data(as_text=True)


@pytest.fixture(scope="module")
def torchserve_metrics(torchserve) -> str:
    client = torchserve.client()
    client.recommend("sae", {"ratings": {"1": 5, "50": 4}, "k": 5})
    return torchserve.metrics_once_reported(PREDICTION_METRIC, "sae")


@pytest.fixture(scope="module")
def triton_metrics(triton_server, triton_client, prepared) -> str:
    triton_client.scores("sae", np.zeros((1, prepared.n_items), dtype=np.float32))
    return requests.get(triton_server.metrics_url, timeout=SCRAPE_TIMEOUT_S).text


@pytest.fixture(scope="module")
def triton_client(triton_server):
    from training.serving.triton_client import TritonClient

    with TritonClient(triton_server.grpc_url) as client:
        yield client


def test_the_real_web_app_exposes_its_metrics(web_metrics):
    names = exposed_names(web_metrics)
    assert value(web_metrics, "predictions_total", model_type="sae", endpoint="api.recommend") == 1
    assert value(web_metrics, "drift_window_requests") == 1
    assert value(web_metrics, "training_epochs_run", model_type="rbm") >= 1
    assert {
        "model_rmse",
        "precision_at_k",
        "feature_drift_score",
        "prediction_drift_score",
        "recommendation_clicks_total",
        "api_errors_total",
        "process_resident_memory_bytes",
        "http_request_duration_seconds_bucket",
        "training_loss",
        # read from the database at the scrape (families declared before any data)
        "recommendation_accuracy",
        "user_satisfaction_score",
        "served_catalog_coverage",
        "served_long_tail_share",
        "films_being_rated",
        "web_session_length_seconds",
        "db_query_duration_seconds_bucket",
    } <= names


@pytest.mark.slow
def test_every_queried_metric_is_exposed(web_metrics, torchserve_metrics, triton_metrics):
    exposed = {
        "web": exposed_names(web_metrics),
        "torchserve": exposed_names(torchserve_metrics),
        "triton": exposed_names(triton_metrics),
    }
    written_offline = PIPELINE | TUNING
    everything = (
        set().union(*exposed.values()) | PROMETHEUS_OWN | GPU_ONLY | written_offline
    ) | recorded_names()
    missing = {
        name: sorted(where) for name, where in queried_metrics().items() if name not in everything
    }
    assert not missing, f"queried but exposed by nobody: {missing}"
    assert TORCHSERVE_GPU <= exposed["torchserve"]
    assert {"nv_inference_request_success", "nv_inference_count"} <= exposed["triton"]
    # TorchServe declares its workers' model metrics up front, sent or not: a panel on one our
    # handlers never send (HandlerTime) would stay empty. After an inference, each has samples.
    queried_model_metrics = set(queried_metrics()) & torchserve_model_metrics()
    assert PREDICTION_METRIC in queried_model_metrics
    assert queried_model_metrics <= sampled_names(torchserve_metrics), queried_model_metrics
    # The GPU allowance hides nothing: without CUDA none of those names is exposed.
    assert not (GPU_ONLY & set().union(*exposed.values())) or _has_cuda()


def torchserve_metrics_config() -> dict:
    import ts

    return yaml.safe_load((Path(ts.__file__).parent / "configs" / "metrics.yaml").read_text())


def torchserve_model_metrics() -> set[str]:
    """What TorchServe's workers report per inference (its metrics config's model_metrics)."""
    sections = torchserve_metrics_config()["model_metrics"].values()
    return {metric["name"] for section in sections for metric in section}


def test_torchserve_gpu_metrics_are_torchserve_names():
    """The TorchServe GPU names the rules use are declared by TorchServe's metrics config."""
    sections = torchserve_metrics_config()["ts_metrics"].values()
    assert TORCHSERVE_GPU <= {metric["name"] for section in sections for metric in section}


def test_queries_cover_the_seed_names():
    assert {
        "prediction_latency_seconds_bucket",
        "predictions_total",
        "model_rmse",
        "precision_at_k",
        "feature_drift_score",
        "prediction_drift_score",
        "model_arm:recommendation_click_through:ratio_1h",
        "api_errors_total",
    } <= set(queried_metrics())


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()
