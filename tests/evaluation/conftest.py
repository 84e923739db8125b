"""Fixtures of the evaluation tests: a throwaway MLflow store (private_home: tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

EXPERIMENT = "movierec"  # params.yaml's mlflow.experiment_name


@pytest.fixture
def mlflow_isolated(tmp_path, monkeypatch) -> None:
    """MLflow's process-wide tracking/registry URIs and experiment are restored after the test;
    no MLflow or DagsHub variables leak in from the environment."""
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    for name in (
        "MLFLOW_TRACKING_URI",
        "MLFLOW_REGISTRY_URI",
        "DAGSHUB_REPO_OWNER",
        "DAGSHUB_REPO_NAME",
        "DAGSHUB_USER_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(tracking_utils, "_tracking_uri", None)
    monkeypatch.setattr(registry_utils, "_registry_uri", None)
    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)
    monkeypatch.chdir(tmp_path)  # MLflow's relative defaults (./mlruns) land in tmp, if anywhere
    yield
    while mlflow.active_run() is not None:
        mlflow.end_run()


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch, mlflow_isolated) -> Path:
    """MLFLOW_TRACKING_URI -> a SQLite file under tmp, with the experiment's artifacts beside it."""
    import mlflow

    store = tmp_path / "mlflow"
    store.mkdir()
    uri = f"sqlite:///{store / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.create_experiment(EXPERIMENT, artifact_location=(store / "artifacts").as_uri())
    return store
