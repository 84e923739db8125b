"""Top-K ranking metrics, vectorised over users.

Protocol (one for every model): candidates are the items a user did not rate in the input
(train) matrix; relevant items are the user's held-out ratings >= threshold; only users with at
least one relevant item count. Gains are binary.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from handlers.recommendation import top_k_columns

# The K of the headline figures (the report's table, the cold-start buckets, the DVC metrics,
# the served graphs' figures); the nearest configured K when 10 is not among the k_values.
HEADLINE_K = 10


def headline_k(k_values: Sequence[int]) -> int:
    return min(k_values, key=lambda k: (abs(k - HEADLINE_K), k))


def top_k(scores: torch.Tensor, seen: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k best-scored unseen items per row, with the served tie rule (the lower
    column first): the lists scored here are the lists served."""
    return top_k_columns(scores, ~seen, k)


def _discounts(k: int, device: torch.device) -> torch.Tensor:
    return 1.0 / torch.log2(torch.arange(2, k + 2, device=device, dtype=torch.float32))


def ranking_metrics(
    scores: torch.Tensor,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    ks: list[int] | tuple[int, ...],
    threshold: float = 4.0,
) -> dict[str, float]:
    """precision@k, recall@k, ndcg@k and map@k for every k, averaged over evaluable users."""
    relevant = targets >= threshold
    users = relevant.any(dim=1)
    if not users.any():
        return {f"{name}@{k}": 0.0 for k in ks for name in ("precision", "recall", "ndcg", "map")}
    relevant, scores, seen = relevant[users], scores[users], inputs[users] > 0
    max_k = max(ks)
    hits = relevant.gather(1, top_k(scores, seen, max_k)).float()
    n_relevant = relevant.sum(dim=1).float()
    discounts = _discounts(max_k, scores.device)
    result: dict[str, float] = {}
    for k in ks:
        h = hits[:, :k]
        ideal_hits = torch.clamp(n_relevant, max=k)
        positions = torch.arange(1, k + 1, device=scores.device, dtype=torch.float32)
        ideal = (positions.unsqueeze(0) <= ideal_hits.unsqueeze(1)).float()
        dcg = (h * discounts[:k]).sum(dim=1)
        idcg = (ideal * discounts[:k]).sum(dim=1)
        precision_at_i = h.cumsum(dim=1) / positions
        result[f"precision@{k}"] = float((h.sum(dim=1) / k).mean())
        result[f"recall@{k}"] = float((h.sum(dim=1) / n_relevant).mean())
        result[f"ndcg@{k}"] = float((dcg / idcg).mean())
        result[f"map@{k}"] = float(((precision_at_i * h).sum(dim=1) / ideal_hits).mean())
    result["n_users"] = int(users.sum())
    return result


def rating_metrics(predicted: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """RMSE, MAE and R² over the observed (non-zero) target ratings."""
    mask = targets > 0
    if not mask.any():
        return {"rmse": float("nan"), "mae": float("nan"), "r2": float("nan")}
    error = predicted[mask] - targets[mask]
    observed = targets[mask]
    total = ((observed - observed.mean()) ** 2).sum()
    return {
        "rmse": float(error.pow(2).mean().sqrt()),
        "mae": float(error.abs().mean()),
        "r2": float(1.0 - error.pow(2).sum() / total) if total > 0 else float("nan"),
    }
