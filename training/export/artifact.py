"""Build the serving artifacts (``handlers.serving_artifact``) from trained models and the
prepared dataset: one per served model, the same for TorchServe's archives and Triton's graphs.

The item vectors explanations compare are computed here, from the trained modules' own weights,
so serving code never reads a checkpoint or a state dict to explain an answer.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from handlers import contract
from handlers.serving_artifact import ARTIFACT_FILE, ServingArtifact
from training.data.preprocess import PreparedData
from training.metrics.beyond_accuracy import item_popularity
from training.models.base import BaseRecommender
from training.models.rbm import RBMEnsemble
from training.models.sae import SAENet
from training.registry import REGISTRY_KEY

# served model -> the trained models it is made of
PARTS = {
    contract.SAE: (contract.SAE,),
    contract.RBM: (contract.RBM,),
    contract.HYBRID: contract.HYBRID_PARTS,
}


def _unit(matrix: torch.Tensor) -> torch.Tensor:
    return F.normalize(matrix.detach().float(), dim=1)


def item_vectors(model: nn.Module) -> torch.Tensor:
    """Unit item embeddings [n_items, d] from a trained model's learned weights.

    SAE: per rating member, an item's input-layer columns (one block per input of the item:
    its residual, and whether it was rated when the input carries that) beside its output-layer
    row. RBM: each member's weights of the item, side by side.
    """
    if isinstance(model, SAENet):
        parts = []
        for member in model.autoencoders():
            linears = [layer for layer in member if isinstance(layer, nn.Linear)]
            decoder = linears[-1].weight  # [n_items, hidden]
            n_items = decoder.shape[0]
            by_input = linears[0].weight.t()  # [n_inputs, hidden]
            per_item = torch.cat(by_input.split(n_items), dim=1)
            parts += [_unit(per_item), _unit(decoder)]
        return _unit(torch.cat(parts, dim=1))
    if isinstance(model, RBMEnsemble):
        return _unit(torch.cat([member.weight.t() for member in model.rbms()], dim=1))
    raise TypeError(f"no item vectors are defined for {type(model).__name__}")


def compact(vectors: torch.Tensor) -> torch.Tensor:
    """The same rows' dot products in at most n_items dimensions.

    With V = U S Wᵀ (thin SVD), V Vᵀ = (U S)(U S)ᵀ: every cosine an explanation compares is kept
    (to float32 rounding) while a five-member SAE's 4,500 dimensions become at most 1,682.
    """
    n_items, width = vectors.shape
    if width <= n_items:
        return vectors
    left, singular, _ = torch.linalg.svd(vectors.double(), full_matrices=False)
    return (left * singular).float()


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def build_artifacts(
    recommenders: dict[str, BaseRecommender],
    checkpoints: dict[str, Path],
    prepared: PreparedData,
    version: str,
    quality: dict[str, dict] | None = None,
    served: tuple[str, ...] = contract.SERVED_MODELS,
) -> dict[str, ServingArtifact]:
    """The artifact of each served model; the trained models must share the catalogue."""
    item_ids = [int(i) for i in prepared.metadata["item_ids"]]
    for name, recommender in recommenders.items():
        if [int(i) for i in recommender.extra.get("item_ids") or []] != item_ids:
            raise ValueError(f"{checkpoints[name]}: its item ids differ from the prepared data's")
    vectors = {name: item_vectors(r.model) for name, r in recommenders.items()}
    popularity = item_popularity(prepared.train).to(torch.float32)
    exported_at = datetime.now(UTC).isoformat(timespec="seconds")
    artifacts = {}
    for model in served:
        parts = PARTS[model]
        first = recommenders[parts[0]].extra
        metadata: dict[str, Any] = {
            "model": model,
            "version": version,
            "exported_at": exported_at,
            "dataset": first.get("dataset"),
            "subset": first.get("subset"),
            "split": first.get("split"),
            "mlflow_run_id": first.get("mlflow_run_id") if len(parts) == 1 else None,
            # registry name, version and run when exported --from-registry (else None)
            "registry": first.get(REGISTRY_KEY) if len(parts) == 1 else None,
            "parts": {
                part: {
                    "mlflow_run_id": recommenders[part].extra.get("mlflow_run_id"),
                    "registry": recommenders[part].extra.get(REGISTRY_KEY),
                    "test_metrics": recommenders[part].extra.get("test_metrics", {}),
                    "checkpoint_sha256": sha256_of(checkpoints[part]),
                    "best_epoch": recommenders[part].history.best_epoch,
                    "served_quality": (quality or {}).get(part),
                }
                for part in parts
            },
        }
        # The hybrid explains with both parts' vectors side by side: the mean of the cosines.
        joined = (
            vectors[parts[0]]
            if len(parts) == 1
            else _unit(torch.cat([vectors[part] for part in parts], dim=1))
        )
        artifacts[model] = ServingArtifact(
            model=model,
            version=version,
            item_ids=item_ids,
            movies=list(prepared.movies),
            popularity=popularity,
            vectors=compact(joined),
            metadata=metadata,
        )
    return artifacts


def artifact_path(folder: Path) -> Path:
    return Path(folder) / ARTIFACT_FILE
