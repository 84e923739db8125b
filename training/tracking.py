"""MLflow wiring: one place decides where runs go.

Order: ``MLFLOW_TRACKING_URI`` if set; DagsHub's MLflow when ``DAGSHUB_REPO_OWNER`` and
``DAGSHUB_REPO_NAME`` are set (credentials from ``DAGSHUB_USER_TOKEN``); otherwise an embedded
SQLite store with a local artifact folder. Nothing here touches the network at import.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from training.config import Paths

DAGSHUB_URI = "https://dagshub.com/{owner}/{name}.mlflow"
# pip requirements for the logged MLflow model (training.registry), given explicitly so MLflow
# does not freeze the env.
MLFLOW_MODEL_REQUIREMENTS = ["torch==2.13.0", "numpy<2"]


@dataclass(frozen=True)
class TrackingTarget:
    tracking_uri: str
    artifact_location: str | None  # only for the embedded store
    kind: str  # "env", "dagshub" or "local"


def resolve_tracking(paths: Paths | None = None, environ: dict | None = None) -> TrackingTarget:
    env = os.environ if environ is None else environ
    paths = paths or Paths()
    if env.get("MLFLOW_TRACKING_URI"):
        return TrackingTarget(env["MLFLOW_TRACKING_URI"], None, "env")
    owner, name = env.get("DAGSHUB_REPO_OWNER"), env.get("DAGSHUB_REPO_NAME")
    if owner and name:
        return TrackingTarget(DAGSHUB_URI.format(owner=owner, name=name), None, "dagshub")
    return TrackingTarget(f"sqlite:///{paths.root / 'mlflow.db'}", (paths.mlruns).as_uri(), "local")


def configure_mlflow(experiment_name: str, paths: Paths | None = None) -> TrackingTarget:
    """Point MLflow at the resolved store and select (creating if needed) the experiment."""
    import mlflow

    target = resolve_tracking(paths)
    if target.kind == "dagshub":
        # DagsHub's MLflow takes basic auth: user name and token, both from the environment.
        token = os.environ.get("DAGSHUB_USER_TOKEN", "")
        os.environ.setdefault("MLFLOW_TRACKING_USERNAME", os.environ.get("DAGSHUB_REPO_OWNER", ""))
        os.environ.setdefault("MLFLOW_TRACKING_PASSWORD", token)
    mlflow.set_tracking_uri(target.tracking_uri)
    if target.artifact_location and mlflow.get_experiment_by_name(experiment_name) is None:
        Path(target.artifact_location.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
        mlflow.create_experiment(experiment_name, artifact_location=target.artifact_location)
    mlflow.set_experiment(experiment_name)
    return target
