"""MLflow model registry: log the inference module with a signature, register it as
``<prefix>-<model>``, and read versions back (the champion's checkpoint for export and the gate).

Registering never moves the champion alias, except for a model's first version (a registry with
no champion has nothing to serve): ``movierec retrain``'s gate (training/gate.py) moves it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from training.config import Params, get_logger
from training.data.ingest import DataUnavailableError
from training.models.base import BaseRecommender
from training.tracking import MLFLOW_MODEL_REQUIREMENTS

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

log = get_logger("training")
SIGNATURE_EXAMPLE_USERS = 2
# Where a training run logs its checkpoint (training.train), and the key of a checkpoint's
# ``extra`` that says which registry version it was downloaded as.
CHECKPOINT_ARTIFACTS = "checkpoint"
REGISTRY_KEY = "registry"


class RegistryError(DataUnavailableError):
    """The registry holds no such version or alias (the CLI's "unavailable" exit code)."""


class RegisteredModel(torch.nn.Module):
    """The inference module as MLflow's pytorch flavour serves it: one output tensor
    [batch, 2, n_items] holding (scores, ranking), since its pyfunc takes a single tensor."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, ratings: torch.Tensor) -> torch.Tensor:
        return torch.stack(self.model(ratings), dim=1)


def registered_name(params: Params, model: str) -> str:
    return f"{params.mlflow.registered_model_prefix}-{model}"


def register_model(
    recommender: BaseRecommender, params: Params, test_metrics: dict[str, float]
) -> str:
    """Log and register the active run's model; returns the new version. Only a model's first
    version becomes the champion here."""
    import mlflow
    from mlflow.models import infer_signature

    example = torch.zeros(SIGNATURE_EXAMPLE_USERS, recommender.n_items)
    example[0, :5] = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0])
    registered = RegisteredModel(recommender.model.cpu()).eval()
    with torch.no_grad():
        output = registered(example)
    name = registered_name(params, recommender.name)
    logged: dict[str, Any] = {
        "name": "model",
        "signature": infer_signature(example.numpy(), output.numpy()),
        "input_example": example.numpy(),
        "pip_requirements": MLFLOW_MODEL_REQUIREMENTS,
        "registered_model_name": name,
    }
    try:
        info = mlflow.pytorch.log_model(registered, **logged)
    except RuntimeError as exc:
        # MLflow's default format is torch.export's, which cannot trace data-dependent control
        # flow (a solver loop, say); the pickled module still records the model and its weights.
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning("%s: torch.export failed (%s); logging the module pickled", name, reason)
        info = mlflow.pytorch.log_model(registered, serialization_format="pickle", **logged)
    recommender.model.to(recommender.device)
    version = str(info.registered_model_version)
    client = mlflow.MlflowClient()
    if champion_version(client, name, params.mlflow.best_alias) is None:
        set_champion(client, name, params.mlflow.best_alias, version)
        log.info("%s version %s is the first %s", name, version, params.mlflow.best_alias)
    return version


@contextmanager
def registry_errors() -> Iterator[None]:
    """MLflow failures (a tracking server down, a store it cannot read) as RegistryError: the
    CLI's "unavailable" exit code and one line naming the store, not a traceback."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RegistryError(f"MLflow at {mlflow.get_tracking_uri()}: {reason}") from exc


def champion_version(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version the alias points at; None when the model or the alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def set_champion(client: MlflowClient, name: str, alias: str, version: str) -> None:
    client.set_registered_model_alias(name, alias, version)


def version_of_run(client: MlflowClient, name: str, run_id: str) -> ModelVersion:
    """The registered version a training run produced."""
    found = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    if not found:
        raise RegistryError(f"run {run_id} registered no version of {name}")
    return max(found, key=lambda version: int(version.version))


def resolve_version(
    client: MlflowClient, name: str, alias: str, version: int | None = None
) -> ModelVersion:
    """Version ``version`` of ``name``, or the one ``alias`` points at; a clear error otherwise."""
    from mlflow.exceptions import MlflowException

    if version is not None:
        try:
            return client.get_model_version(name, str(version))
        except MlflowException:
            raise RegistryError(f"{name} has no version {version} in the MLflow registry") from None
    found = champion_version(client, name, alias)
    if found is None:
        raise RegistryError(
            f"{name} has no {alias!r} alias in the MLflow registry ({client.tracking_uri}); "
            "train and register a model first (`movierec train` or `movierec retrain`)"
        )
    return found


def registry_reference(version: ModelVersion, alias: str | None = None) -> dict[str, str | None]:
    """What export writes into a served model's metadata about where it came from."""
    return {
        "name": version.name,
        "version": str(version.version),
        "run_id": version.run_id,
        "alias": alias,
    }


def download_checkpoint(
    client: MlflowClient, version: ModelVersion, model: str, folder: Path, alias: str | None = None
) -> Path:
    """The checkpoint a version's training run logged (``checkpoint/<model>.pt``), copied into
    ``folder`` with the registry reference in its ``extra`` (export's metadata reads it)."""
    if not version.run_id:
        raise RegistryError(f"{version.name} version {version.version} has no training run")
    folder.mkdir(parents=True, exist_ok=True)
    path = Path(
        client.download_artifacts(version.run_id, f"{CHECKPOINT_ARTIFACTS}/{model}.pt", str(folder))
    )
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    extra = checkpoint.setdefault("extra", {})
    extra["mlflow_run_id"] = version.run_id
    extra[REGISTRY_KEY] = registry_reference(version, alias)
    torch.save(checkpoint, path)
    return path


def register_checkpoint(checkpoint: Path, params: Params, run_name: str) -> tuple[str, str]:
    """Register a checkpoint trained elsewhere as a new version, through a run holding its test
    figures and the checkpoint itself (what the gate and export download); returns (run id,
    version). The active experiment must be set (``training.tracking.configure_mlflow``)."""
    import mlflow

    from training.models import load_checkpoint

    recommender = load_checkpoint(checkpoint)
    test_metrics = dict(recommender.extra.get("test_metrics") or {})
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.set_tags({"model": recommender.name, "dataset": recommender.extra.get("dataset")})
        mlflow.log_metrics(test_metrics)
        mlflow.log_artifact(str(checkpoint), artifact_path=CHECKPOINT_ARTIFACTS)
        version = register_model(recommender, params, test_metrics)
    return run.info.run_id, version
