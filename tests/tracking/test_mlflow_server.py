"""A real `mlflow server` (started by the CLI): a training run, the evaluation and a study logged to
it over HTTP, read back through MlflowClient (run, metrics, artifacts, registry alias)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.mlflow_server import TRACKED_EPOCHS, TUNE_TRIALS

pytestmark = pytest.mark.slow
REPO_ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def client(tracked_home):
    from mlflow import MlflowClient

    return MlflowClient(tracked_home.tracking_uri)


def test_training_run_is_on_the_server_with_its_figures(tracked_home, mlflow_server, client):
    from training.config import load_params

    params = load_params(REPO_ROOT / "params.yaml")
    run = client.get_run(tracked_home.sae_run_id)
    assert (run.info.run_name, run.info.status) == ("train-sae", "FINISHED")
    assert run.data.params["sae.lr"] == str(params.sae.lr)
    assert run.data.tags["dataset"] == "ml-100k"
    history = client.get_metric_history(run.info.run_id, "train_loss")
    assert [m.step for m in history] == list(range(1, TRACKED_EPOCHS + 1))
    assert 0.5 < run.data.metrics["test_rmse"] < 2.0
    # The server gave the experiment a location under its local artifact root, which a run
    # on the embedded store (no server) could write to as well.
    assert run.info.artifact_uri.startswith((mlflow_server.root / "mlruns").as_uri())


def test_run_holds_architecture_and_curves(tracked_home, client, tmp_path):
    run_id = tracked_home.sae_run_id
    plots = {a.path for a in client.list_artifacts(run_id, "plots")}
    assert {"plots/sae_loss_curve.png", "plots/sae_architecture.png", "plots/sae_curves.png"} <= (
        plots
    )
    for name in ("sae_architecture.png", "sae_curves.png"):
        local = Path(client.download_artifacts(run_id, f"plots/{name}", str(tmp_path)))
        assert local.read_bytes()[:8] == PNG_MAGIC and local.stat().st_size > 5_000
    text = Path(client.download_artifacts(run_id, "model/architecture.txt", str(tmp_path)))
    summary = text.read_text(encoding="utf-8")
    assert "SAENet" in summary and "members.0.0" in summary
    assert "total parameters:" in summary
    assert {a.path for a in client.list_artifacts(run_id, "checkpoint")} == {"checkpoint/sae.pt"}


def test_registry_alias_points_at_the_run(tracked_home, client):
    from training.config import load_params
    from training.registry import registered_name

    params = load_params(REPO_ROOT / "params.yaml")
    champion = client.get_model_version_by_alias(
        registered_name(params, "sae"), params.mlflow.best_alias
    )
    assert champion.run_id == tracked_home.sae_run_id


def test_evaluation_and_study_runs_link_to_training(tracked_home, client):
    evaluation = client.get_run(tracked_home.evaluate_run_id)
    assert evaluation.data.tags["train_run.sae"] == tracked_home.sae_run_id
    assert "train_run.rbm" not in evaluation.data.tags  # the RBM checkpoint was not tracked
    assert "hybrid.ndcg_at_10" in evaluation.data.metrics
    trials = client.search_runs(
        [evaluation.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{tracked_home.tune_run_id}'",
    )
    assert sorted(r.data.tags["optuna.trial"] for r in trials) == [
        str(n) for n in range(TUNE_TRIALS)
    ]


def test_server_runs_from_the_cli_with_its_pid_recorded(mlflow_server):
    """`movierec serve mlflow` (what `make up` runs) left a live server named in .run/mlflow.pid
    (the fixture's teardown stops it as `movierec serve stop` does, and checks it exited)."""
    import requests

    from training.serving.processes import read_pid

    assert read_pid("mlflow", mlflow_server.root) == mlflow_server.pid
    assert requests.get(f"{mlflow_server.url}/health", timeout=10).text == "OK"
    assert (mlflow_server.root / "mlflow.db").is_file()
