"""Export from the MLflow registry: the checkpoints of the ``champion`` alias (or of pinned
versions), downloaded with a reference to their registry name, version and run, which export
writes into every archive's and graph's metadata.

Without ``--from-registry`` export reads ``data/checkpoints/`` as the DVC stages do, offline.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from training.config import Params, load_params
from training.registry import (
    REGISTRY_KEY,
    download_checkpoint,
    registered_name,
    registry_errors,
    resolve_version,
)


def parse_versions(text: str | None, models: tuple[str, ...]) -> dict[str, int]:
    """``--version``: "N" when one model is exported, else "sae=N,rbm=M" (models left out
    follow the alias)."""
    if not text:
        return {}
    pinned: dict[str, int] = {}
    for part in text.split(","):
        model, _, number = part.strip().rpartition("=")
        if not model:
            if len(models) != 1:
                raise ValueError(f"--version {text!r}: say which model, e.g. sae={number}")
            model = models[0]
        if model not in models:
            raise ValueError(f"--version {text!r}: {model!r} is not exported here ({models})")
        if not number.isdigit() or int(number) < 1:
            raise ValueError(f"--version {text!r}: {number!r} is not a registry version number")
        pinned[model] = int(number)
    return pinned


def download_checkpoints(
    params: Params, models: tuple[str, ...], folder: Path, pinned: dict[str, int] | None = None
) -> dict[str, Path]:
    """``folder/<model>.pt`` for each model: the pinned version, else the champion."""
    import mlflow

    from training.tracking import configure_mlflow

    alias = params.mlflow.best_alias
    pinned = pinned or {}
    found = {}
    with registry_errors():
        configure_mlflow(params.mlflow.experiment_name)
        client = mlflow.MlflowClient()
        for model in models:
            name = registered_name(params, model)
            version = resolve_version(client, name, alias, pinned.get(model))
            by_alias = alias if model not in pinned else None
            found[model] = download_checkpoint(client, version, model, folder, by_alias)
    return found


@contextmanager
def checkpoint_folder(
    from_registry: bool,
    pinned: dict[str, int],
    params_file: Path,
    default: Path,
    models: tuple[str, ...],
) -> Iterator[Path]:
    """The folder export reads ``<model>.pt`` from: ``default`` (the DVC stages' checkpoints),
    or a temporary one holding the registry's (``pinned`` versions, else the champion's)."""
    if not from_registry:
        yield default
        return
    with tempfile.TemporaryDirectory(prefix="movierec-registry-") as tmp:
        download_checkpoints(load_params(params_file), models, Path(tmp), pinned)
        yield Path(tmp)


def registry_metadata(extra: dict) -> dict[str, str]:
    """The registry reference of a checkpoint as flat strings (ONNX metadata_props); empty for
    a checkpoint that did not come from the registry."""
    reference = extra.get(REGISTRY_KEY) or {}
    return {f"registry_{key}": str(value) for key, value in reference.items() if value is not None}


def archive_version(parts: tuple[str, ...], extras: dict[str, dict]) -> str | None:
    """A served model's version from its parts' registry versions: "3" for the SAE's version 3,
    "3.2" for the hybrid of SAE 3 and RBM 2; None unless every part came from the registry."""
    references = [extras[part].get(REGISTRY_KEY) for part in parts]
    if not all(references):
        return None
    return ".".join(str(reference["version"]) for reference in references if reference)
