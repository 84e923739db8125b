"""Top-k and explanations for backends that get rankings (in-process, Triton).

The rules are ``handlers/recommendation.py``'s (the TorchServe handlers' domain module) and the
catalogue and item vectors come from the serving artifacts export wrote, so every backend ranks,
explains and falls back to popularity the same way.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from handlers import recommendation as rec
from web.backends.base import BackendRejected, RecommendationResult, RecommendRequest

# The hybrid mixes these scorers; explanations use each part's own item vectors.
HYBRID_PARTS = rec.HYBRID_PARTS
VERSION_DIGEST_CHARS = 12


def file_version(path: Path) -> str:
    """An archive's content digest: a re-exported model gets a new version (and cache keys)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:VERSION_DIGEST_CHARS]


def parse(query: RecommendRequest, catalogue: rec.Catalogue, model: str) -> rec.UserQuery:
    names = HYBRID_PARTS if model == rec.HYBRID else ()
    body = query.to_json()
    if model != rec.HYBRID:
        body.pop("weights", None)
    try:
        return rec.parse_request(json.loads(json.dumps(body)), catalogue, names).users[0]
    except rec.RequestError as exc:
        raise BackendRejected(exc.message, exc.status) from exc


def answer(
    model: str,
    version: str,
    catalogue: rec.Catalogue,
    vectors: torch.Tensor | None,
    user: rec.UserQuery,
    ranking: torch.Tensor | None,
    predicted: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> RecommendationResult:
    """One user's answer from what the model ranks by (a row [n_items]), by the handlers'
    ranking path (``rec.ranked_answers``); no ratings -> the popularity fallback.

    ``vectors`` None (no item vectors at hand) leaves the explanations out; ``mask`` is the
    user's candidate mask [1, n_items] when the caller has it.
    """
    if not user.ratings or ranking is None:
        found = rec.popular_answer(catalogue, user)
    else:
        rows = None if predicted is None else predicted.unsqueeze(0)
        (found,) = rec.ranked_answers(catalogue, [user], ranking.unsqueeze(0), rows, vectors, mask)
    return RecommendationResult.from_dict({"model": model, "version": version, **found})
