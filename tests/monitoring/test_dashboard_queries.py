"""Every dashboard panel shows data: a bounded Locust run against the real TorchServe, Triton and
web app (people who search, rate, open recommendations, rate what they were shown and give
feedback), scraped by a real Prometheus; then every panel query of every dashboard is evaluated
through Prometheus' HTTP API and must return at least one series. The GPU panels (the
generator's ``GPU_PANELS``, the one list) need only be valid PromQL. Every alert and recording
rule must evaluate without error in the same run."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from werkzeug.serving import make_server

from tests.fixtures.scripts import load_script
from tests.fixtures.torchserve import TEST_BATCH_SIZE
from tests.fixtures.web import TEST_API_KEY
from tests.monitoring.prometheus_process import instant_query, running_prometheus
from tests.monitoring.promql import (
    DASHBOARD_DIR,
    dashboard_expressions,
    rule_expressions,
    without_grafana_variables,
)
from tests.monitoring.web_app import monitored_web_app
from training.config import Paths
from training.serving.processes import LOOPBACK, free_ports

pytestmark = pytest.mark.slow

GENERATOR = DASHBOARD_DIR.parent / "generate_dashboards.py"
REPO_ROOT = DASHBOARD_DIR.parents[2]
LOAD_S = 20
# Locust users per target: people on the site, and clients calling the model servers directly
# with a pause between calls (a CPU-bound stress run is the benchmarks' job, not this test's).
WEB_USERS, MODEL_SERVER_USERS, MODEL_SERVER_THINK_MS = 4, 2, 50
# Series appear as Prometheus scrapes (every second) and evaluates the rules: empty answers are
# asked again until this many seconds have passed since the load ended.
SETTLE_S = 30
POLL_S = 1.0
# A real study for the hyperparameter panels: enough complete trials for importances, tiny ones.
TUNE_TRIALS, TUNE_TRIAL_EPOCHS = 3, 2
# The stage whose work the fixture really runs (the evaluation report the web app reads).
TIMED_STAGE = "evaluate"


def dashboard_titles() -> set[str]:
    return {
        panel["title"]
        for path in DASHBOARD_DIR.glob("*.json")
        for panel in json.loads(path.read_text(encoding="utf-8"))["panels"]
    }


def panel_title(where: str) -> str:
    """``"<file>: <title> [<refId>]"`` (promql.dashboard_expressions' keys) -> the title."""
    return where.split(": ", 1)[1].rsplit(" [", 1)[0]


@pytest.fixture(scope="module")
def loaded_prometheus(
    torchserve, triton_server, checkpoints, prepared, project_home, tmp_path_factory
) -> Iterator[str]:
    """Prometheus scraping TorchServe, Triton and the web app (TorchServe backend) after a
    bounded Locust run against all three; yields Prometheus' URL."""
    from benchmarks.load_locust import LocustRun
    from benchmarks.load_targets import SCENARIOS
    from benchmarks.profiles import write_profiles
    from training.monitoring.pipeline_metrics import PIPELINE_TEXTFILE, STAGE_ENV, stage_timer
    from web import create_app
    from web.config import WebSettings

    home = tmp_path_factory.mktemp("dashboard-home")
    paths = Paths(project_home)
    # The offline figures the web app exposes come from a real evaluation of the session's
    # checkpoints, timed as DVC would time its stage (data/metrics/pipeline.prom).
    pipeline_textfile = home / "data" / "metrics" / PIPELINE_TEXTFILE
    with stage_timer(pipeline_textfile, environ={STAGE_ENV: TIMED_STAGE}):
        report = offline_report(checkpoints, prepared)
    (home / "evaluation.json").write_text(json.dumps(report))
    tune_tiny_study(Paths(home), paths)

    def make_app(**overrides):
        settings = WebSettings.from_env(
            environ={},
            database_url=f"sqlite:///{home / 'web.sqlite3'}",
            model_backend="torchserve",
            torchserve_url=torchserve.inference_url,
            movies_path=paths.prepared("ml-100k") / "movies.json",
            evaluation_report=home / "evaluation.json",
            api_keys=(TEST_API_KEY,),
            testing=True,
            **overrides,
        )
        return create_app(settings)

    with pytest.MonkeyPatch.context() as monkeypatch:
        app = monitored_web_app(make_app, checkpoints, prepared, home, monkeypatch)
        (port,) = free_ports(1)
        server = make_server(LOOPBACK, port, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        web_url = f"http://{LOOPBACK}:{port}"
        targets = {
            "web": f"{web_url}/metrics",
            "torchserve": f"{torchserve.metrics_url}/metrics",
            "triton": triton_server.metrics_url,
        }
        try:
            with running_prometheus(home / "prometheus", targets) as prometheus:
                (home / "locust").mkdir()
                profiles = write_profiles(paths.prepared("ml-100k"), home / "profiles.json")
                options = {"profiles": profiles, "think_ms": MODEL_SERVER_THINK_MS}
                runs = [
                    LocustRun(SCENARIOS[name], host, users, LOAD_S, home / "locust", options)
                    for name, host, users in (
                        ("web", web_url, WEB_USERS),
                        ("torchserve_http", torchserve.inference_url, MODEL_SERVER_USERS),
                        ("triton_grpc", triton_server.grpc_url, MODEL_SERVER_USERS),
                    )
                ]
                try:
                    points = [run.finish() for run in runs]
                finally:
                    for run in runs:
                        run.stop()
                for point in points:
                    assert point.total.requests > 0, point.scenario
                    assert not point.failures, (point.scenario, point.failures)
                yield prometheus
        finally:
            server.shutdown()
            server.server_close()
            thread.join()
            app.extensions["movierec"].backend.close()
            app.extensions["movierec"].engine.dispose()


def tune_tiny_study(home: Paths, project: Paths) -> None:
    """A real Optuna study of a few two-epoch RBM trials in ``home`` (data/metrics/tuning.prom,
    which the web app re-exposes), over the session's prepared data."""
    from training.config import load_params
    from training.tune import run_study

    home.preprocessed.mkdir(parents=True, exist_ok=True)
    home.prepared("ml-100k").symlink_to(project.prepared("ml-100k"))
    params = load_params(REPO_ROOT / "params.yaml")
    tiny = params.model_copy(
        update={"tune": params.tune.model_copy(update={"trial_epochs": TUNE_TRIAL_EPOCHS})}
    )
    result = run_study("rbm", tiny, home, n_trials=TUNE_TRIALS, track=False)
    assert result.states.get("complete", 0) >= 2, result.states  # importances need two


def offline_report(checkpoints: dict[str, Path], prepared) -> dict:
    """The evaluation report's figures for the SAE, the RBM and the hybrid, by the evaluation's
    own functions (``movierec evaluate`` adds the tuned hybrid and the baselines)."""
    from handlers import recommendation as rec
    from training.config import load_params
    from training.evaluate import HYBRID, evaluate_model, evaluate_scores, hybrid_ranking
    from training.models import load_checkpoint

    params = load_params(REPO_ROOT / "params.yaml")
    settings = {
        "k_values": params.evaluate.k_values,
        "threshold": float(params.evaluate.relevance_threshold),
        "item_genres": [movie["genres"] for movie in prepared.movies],
    }
    recommenders = {name: load_checkpoint(path) for name, path in checkpoints.items()}
    models = {
        name: evaluate_model(model, prepared.train, prepared.test, **settings)
        for name, model in recommenders.items()
    }
    rankings = {name: recommenders[name].rank_scores(prepared.train) for name in rec.HYBRID_PARTS}
    weights = rec.parse_weights(None, rec.HYBRID_PARTS)
    mixed = hybrid_ranking(rankings, prepared.train > 0, weights)
    models[HYBRID] = evaluate_scores(mixed, prepared.train, prepared.test, **settings)
    return {"models": models}


def series_of(prometheus: str, expr: str, deadline: float) -> dict:
    """The answer to ``expr``; asked again while it is empty and the deadline is ahead."""
    while True:
        answer = instant_query(prometheus, expr)
        if answer["status"] != "success" or answer["data"]["result"]:
            return answer
        if time.monotonic() >= deadline:
            return answer
        time.sleep(POLL_S)


def test_every_panel_shows_data_under_load(loaded_prometheus):
    gpu_panels = set(load_script(GENERATOR).GPU_PANELS)
    assert gpu_panels <= dashboard_titles(), "GPU_PANELS names a panel no dashboard has"
    expressions = dashboard_expressions()
    assert expressions
    deadline = time.monotonic() + SETTLE_S
    invalid, empty = {}, []
    for where, expr in expressions.items():
        gpu = panel_title(where) in gpu_panels
        answer = (
            instant_query(loaded_prometheus, without_grafana_variables(expr))
            if gpu
            else series_of(loaded_prometheus, without_grafana_variables(expr), deadline)
        )
        if answer["status"] != "success":
            invalid[where] = answer.get("error")
        elif not gpu and not answer["data"]["result"]:
            empty.append(where)
    assert not invalid, f"panel queries Prometheus rejects: {invalid}"
    assert not empty, f"panels without any series after the load: {empty}"


# The figures the load produced, within what their definitions allow (docs/operations.md).
RANGES = {
    "recommendation_accuracy": (0.0, 1.0),
    "user_satisfaction_score": (1.0, 5.0),
    "served_catalog_coverage": (0.0, 1.0),
    "served_long_tail_share": (0.0, 1.0),
    # Requests per forward pass / per execution: at least one, at most the batch size.
    "sum by (ModelName) (model_batch_size_sum) / sum by (ModelName) (model_batch_size_count)": (
        1.0,
        float(TEST_BATCH_SIZE),
    ),
    # An ensemble executes nothing itself: the models with executions only.
    "sum by (model) (nv_inference_request_success)"
    " / (sum by (model) (nv_inference_exec_count) > 0)": (1.0, float("inf")),
    "model_memory_usage_bytes": (1.0, float("inf")),
    "db_query_duration_seconds_count": (1.0, float("inf")),
}


def test_the_figures_lie_in_their_ranges(loaded_prometheus):
    outside = {}
    for expr, (low, high) in RANGES.items():
        result = instant_query(loaded_prometheus, expr)["data"]["result"]
        assert result, expr
        values = [float(series["value"][1]) for series in result]
        if not all(low <= v <= high for v in values):
            outside[expr] = values
    assert not outside, outside


def test_every_alert_and_recording_rule_evaluates(loaded_prometheus):
    failed = {}
    for name, expr in rule_expressions().items():
        answer = instant_query(loaded_prometheus, expr)
        if answer["status"] != "success":
            failed[name] = answer.get("error")
    assert not failed, f"rule expressions Prometheus cannot evaluate: {failed}"
    rules = instant_rules(loaded_prometheus)
    assert {rule["name"] for rule in rules} == set(rule_expressions())
    assert all(rule["health"] == "ok" for rule in rules), [
        (rule["name"], rule.get("lastError")) for rule in rules if rule["health"] != "ok"
    ]


def instant_rules(prometheus: str) -> list[dict]:
    answer = requests.get(f"{prometheus}/api/v1/rules", timeout=10).json()
    return [rule for group in answer["data"]["groups"] for rule in group["rules"]]


def test_the_docs_list_every_panel():
    docs = (REPO_ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    missing = sorted(title for title in dashboard_titles() if title not in docs)
    assert not missing, f"docs/operations.md does not list: {missing}"
