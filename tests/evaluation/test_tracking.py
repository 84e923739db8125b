"""MLflow wiring: where runs go (DagsHub through dagshub.init, offline against a loopback stand-in
of its API) and what a training run logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.evaluation.dagshub_api import DagshubStandIn
from training.config import ConfigError, Paths
from training.tracking import resolve_tracking, tracking_kind

REPO_ROOT = Path(__file__).resolve().parents[2]
TRACKED_EPOCHS = 3  # below the early-stopping patience, so the run logs exactly this many steps


def test_mlflow_tracking_uri_wins(tmp_path):
    target = resolve_tracking(
        Paths(tmp_path),
        {
            "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000",
            "DAGSHUB_REPO_OWNER": "alice",
            "DAGSHUB_REPO_NAME": "movierec",
        },
    )
    assert (target.kind, target.tracking_uri, target.artifact_location) == (
        "env",
        "http://127.0.0.1:5000",
        None,
    )


def test_dagshub_variables_select_dagshub_unless_a_uri_is_set():
    dagshub = {"DAGSHUB_REPO_OWNER": "alice", "DAGSHUB_REPO_NAME": "movierec"}
    assert tracking_kind(dagshub) == "dagshub"
    assert tracking_kind({**dagshub, "MLFLOW_TRACKING_URI": "http://127.0.0.1:5001"}) == "env"
    assert tracking_kind({"DAGSHUB_REPO_OWNER": "alice"}) == "local"


def test_dagshub_without_a_token_fails_clearly_before_any_request(monkeypatch):
    monkeypatch.setenv("DAGSHUB_REPO_OWNER", "alice")
    monkeypatch.setenv("DAGSHUB_REPO_NAME", "movierec")
    monkeypatch.delenv("DAGSHUB_USER_TOKEN", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(ConfigError, match="DAGSHUB_USER_TOKEN is not set"):
        resolve_tracking()


def test_half_the_dagshub_variables_fall_back_to_the_local_store(tmp_path):
    target = resolve_tracking(Paths(tmp_path), {"DAGSHUB_REPO_OWNER": "alice"})
    assert target.kind == "local"


def test_local_default_is_sqlite_plus_artifact_folder_under_the_root(tmp_path):
    target = resolve_tracking(Paths(tmp_path), {})
    assert target.kind == "local"
    assert target.tracking_uri == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert target.artifact_location == (tmp_path.resolve() / "mlruns").as_uri()


def test_configure_mlflow_creates_the_embedded_store(tmp_path, mlflow_isolated):
    import mlflow

    from training.tracking import configure_mlflow

    root = tmp_path / "root"
    target = configure_mlflow("movierec-test", Paths(root))
    assert mlflow.get_tracking_uri() == target.tracking_uri
    assert (root / "mlflow.db").is_file() and (root / "mlruns").is_dir()
    experiment = mlflow.get_experiment_by_name("movierec-test")
    assert experiment.artifact_location == (root.resolve() / "mlruns").as_uri()


def test_importing_the_training_modules_neither_imports_dagshub_nor_calls_it():
    code = (
        "import sys, training.tracking, training.train, training.evaluate, training.tune; "
        "sys.exit('dagshub' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT).returncode == 0


OFFLINE_RESOLVE = """
import json, os, socket, sys

def loopback_only(event, args):
    # dagshub's own code runs for real; any attempt to leave the machine fails the test.
    if event == "socket.getaddrinfo" and args[0] not in ("127.0.0.1", "localhost"):
        raise RuntimeError(f"network access attempted: {args[0]}")
    if event == "socket.connect" and isinstance(args[1], tuple) and args[1][0] != "127.0.0.1":
        raise RuntimeError(f"network access attempted: {args[1]}")

sys.addaudithook(loopback_only)
from training.tracking import resolve_tracking
target = resolve_tracking()
print(json.dumps({"kind": target.kind, "uri": target.tracking_uri,
                  "user": os.environ["MLFLOW_TRACKING_USERNAME"],
                  "password": os.environ["MLFLOW_TRACKING_PASSWORD"]}))
"""


def test_dagshub_init_sets_the_mlflow_uri_and_credentials_offline(tmp_path):
    """The real ``dagshub.init`` against a loopback stand-in of DagsHub's API (its host is
    dagshub's own DAGSHUB_CLIENT_HOST): the URI and credentials MLflow gets, and the requests
    DagsHub saw (the token checked, the repository looked up)."""
    with DagshubStandIn(owner="alice", repo="movierec", login="alice-bot", token="t0ken") as api:
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),  # dagshub's token cache and config stay in tmp
            "DAGSHUB_CLIENT_TOKENS_CACHE": str(tmp_path / "tokens"),
            "DAGSHUB_CLIENT_HOST": api.url,
            "DAGSHUB_REPO_OWNER": "alice",
            "DAGSHUB_REPO_NAME": "movierec",
            "DAGSHUB_USER_TOKEN": "t0ken",
            "MOVIEREC_LOG_FILES": "0",
        }
        done = subprocess.run(
            [sys.executable, "-c", OFFLINE_RESOLVE],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {
        "kind": "dagshub",
        "uri": f"{api.url}/alice/movierec.mlflow",
        "user": "alice-bot",
        "password": "t0ken",
    }
    assert ("/api/v1/user", "Bearer t0ken") in api.requests
    assert any(path == "/api/v1/repos/alice/movierec" for path, _ in api.requests)


@pytest.mark.slow
def test_tracked_training_run_logs_everything(private_home, mlflow_store, tmp_path):
    import mlflow

    from training.config import load_params
    from training.models import load_checkpoint
    from training.train import train_model

    params = load_params(REPO_ROOT / "params.yaml")
    result = train_model(
        "sae",
        params,
        Paths(private_home),
        track=True,
        progress=False,
        epochs=TRACKED_EPOCHS,
        checkpoint=tmp_path / "sae.pt",
    )
    client = mlflow.MlflowClient()
    run = client.get_run(result.run_id)
    assert run.info.run_name == "train-sae"
    assert run.data.params["sae.lr"] == str(params.sae.lr)
    assert run.data.params["epochs"] == str(TRACKED_EPOCHS)
    assert run.data.tags["dataset"] == "ml-100k"
    assert len(client.get_metric_history(result.run_id, "train_loss")) == TRACKED_EPOCHS
    assert len(client.get_metric_history(result.run_id, "val_rmse")) == TRACKED_EPOCHS
    assert run.data.metrics["test_rmse"] == pytest.approx(result.test_metrics["test_rmse"])
    assert "test_ndcg_at_10" in run.data.metrics
    plots = {a.path for a in client.list_artifacts(result.run_id, "plots")}
    assert "plots/sae_loss_curve.png" in plots
    champion = client.get_model_version_by_alias("movierec-sae", params.mlflow.best_alias)
    assert champion.run_id == result.run_id
    assert load_checkpoint(tmp_path / "sae.pt").extra["mlflow_run_id"] == result.run_id
