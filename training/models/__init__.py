"""The recommenders, by name, and loading any checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch

from training.models.base import BaseRecommender
from training.models.rbm import RBMRecommender
from training.models.sae import SAERecommender

RECOMMENDERS: dict[str, type[BaseRecommender]] = {
    SAERecommender.name: SAERecommender,
    RBMRecommender.name: RBMRecommender,
}


def load_checkpoint(path: Path | str, device: str = "cpu") -> BaseRecommender:
    """Load any model's checkpoint; the file says which model it holds."""
    name = torch.load(Path(path), map_location="cpu", weights_only=False).get("model")
    if name not in RECOMMENDERS:
        raise ValueError(f"{path}: unknown model {name!r}")
    return RECOMMENDERS[name].load_model(path, device)
