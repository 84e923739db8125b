"""The training-time reference drift is measured against: the request features' distributions
on the training data and, per model, of the scores it serves; built, saved and loaded here."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from training.config import ConfigError, Paths, get_logger
from training.monitoring.drift.statistics import (
    REFERENCE_SAMPLE_SIZE,
    REFERENCE_SEED,
    Distribution,
)

if TYPE_CHECKING:
    import torch

    from training.data.preprocess import PreparedData
    from training.models.base import BaseRecommender

log = get_logger("monitoring")

REFERENCE_FILE = "drift_reference.json"
REFERENCE_FORMAT = 1
FEATURES = ("rating_value", "item_popularity", "profile_size")
# Rating values are few and discrete: one bin each. The others get quantile bins.
DISCRETE_FEATURES = ("rating_value",)
# How many recommendations a request shows (the served scores the web app logs).
REFERENCE_TOP_K = 10


def served_scores(
    recommender: BaseRecommender, train: torch.Tensor, k: int = REFERENCE_TOP_K
) -> np.ndarray:
    """The top-k unseen scores of every training user: what the served model returns."""
    import torch

    from training.metrics.ranking import top_k

    with torch.no_grad():
        scores = recommender.predict(train).float().cpu()
    rated = train.cpu() > 0
    indices = top_k(scores, rated, k)
    return scores.gather(1, indices).flatten().numpy()


def build_reference(
    prepared: PreparedData,
    scores: Mapping[str, Sequence[float] | np.ndarray] | None = None,
    sample_size: int = REFERENCE_SAMPLE_SIZE,
    seed: int = REFERENCE_SEED,
) -> dict[str, Any]:
    """Reference distributions of the training data (``PreparedData``) and, per model name, of
    the served scores (see ``served_scores``)."""
    train = prepared.train.cpu()
    rated = train > 0
    popularity = rated.sum(dim=0).numpy()
    rows, cols = rated.nonzero(as_tuple=True)
    if rows.numel() == 0:
        raise ValueError("the training matrix holds no ratings")
    item_ids = prepared.metadata["item_ids"]
    profile_sizes = rated.sum(dim=1).numpy()
    values = {
        "rating_value": train[rows, cols].numpy(),
        "item_popularity": popularity[cols.numpy()],
        "profile_size": profile_sizes[profile_sizes > 0],
    }
    features = {
        name: asdict(
            Distribution.from_values(values[name], name in DISCRETE_FEATURES, sample_size, seed)
        )
        for name in FEATURES
    }
    served = {
        model: asdict(Distribution.from_values(np.asarray(sample, float), False, sample_size, seed))
        for model, sample in (scores or {}).items()
    }
    return {
        "format": REFERENCE_FORMAT,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "dataset": prepared.metadata.get("dataset"),
        "split": prepared.metadata.get("split"),
        "top_k": REFERENCE_TOP_K,
        "item_popularity": {str(i): int(p) for i, p in zip(item_ids, popularity, strict=True)},
        "features": features,
        "scores": served,
    }


def reference_for_checkpoints(
    paths: Paths, dataset: str, models: Sequence[str] = ("sae", "rbm")
) -> dict[str, Any]:
    """The reference for a prepared dataset and whichever of the models' checkpoints exist."""
    from training.data.preprocess import load_prepared
    from training.models import load_checkpoint

    prepared = load_prepared(paths.prepared(dataset))
    scores = {}
    for name in models:
        checkpoint = paths.checkpoints / f"{name}.pt"
        if checkpoint.is_file():
            scores[name] = served_scores(load_checkpoint(checkpoint), prepared.train)
        else:
            log.warning(
                "no %s checkpoint at %s: its predictions get no drift reference", name, checkpoint
            )
    return build_reference(prepared, scores)


def save_reference(reference: Mapping[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(reference) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


@dataclass(frozen=True)
class Reference:
    features: dict[str, Distribution]
    scores: dict[str, Distribution]
    item_popularity: dict[int, int]

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Reference:
        return cls(
            features={name: Distribution.from_dict(d) for name, d in raw["features"].items()},
            scores={name: Distribution.from_dict(d) for name, d in raw.get("scores", {}).items()},
            item_popularity={int(k): int(v) for k, v in raw["item_popularity"].items()},
        )


def load_reference(path: Path) -> Reference:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no drift reference; build it with `movierec monitor reference` after training"
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if raw.get("format") != REFERENCE_FORMAT:
            raise ValueError(f"format {raw.get('format')!r}, expected {REFERENCE_FORMAT}")
        return Reference.from_dict(raw)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{path}: not a drift reference: {exc}") from exc
