"""Top-k and explanations for backends that get raw scores (in-process, Triton).

The rules are ``handlers/recommendation.py``'s (the TorchServe handlers' domain module), so every
backend ranks, explains and falls back to popularity the same way.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from handlers import recommendation as rec
from web.backends.base import BackendRejected, RecommendationResult, RecommendRequest

# The hybrid mixes these scorers; explanations use each part's own item vectors.
HYBRID_PARTS = ("sae", "rbm")
VERSION_DIGEST_CHARS = 12


def catalogue_from_prepared(folder: Path) -> rec.Catalogue:
    """The handlers' catalogue built from a prepared dataset folder (what the .mar carries)."""
    from training.data.preprocess import load_prepared

    prepared = load_prepared(folder)
    return rec.Catalogue(
        item_ids=[int(item) for item in prepared.metadata["item_ids"]],
        movies={int(movie["movie_id"]): movie for movie in prepared.movies},
        popularity=(prepared.train > 0).sum(dim=0).to(torch.float32),
    )


def file_version(path: Path) -> str:
    """A checkpoint's content digest: a retrained model gets a new version (and cache keys)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:VERSION_DIGEST_CHARS]


def parse(query: RecommendRequest, catalogue: rec.Catalogue, model: str) -> rec.UserQuery:
    names = HYBRID_PARTS if model == "hybrid" else ()
    body = query.to_json()
    if model != "hybrid":
        body.pop("weights", None)
    try:
        return rec.parse_request(json.loads(json.dumps(body)), catalogue, names).users[0]
    except rec.RequestError as exc:
        raise BackendRejected(exc.message, exc.status) from exc


def mixed_scores(
    model: str, user: rec.UserQuery, catalogue: rec.Catalogue, parts: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(ranking scores, predicted ratings or None) from per-part score rows, as the handlers."""
    if model != "hybrid":
        return parts[model], parts[model] if model == "sae" else None
    mask = rec.candidate_mask([user], catalogue.n_items)
    mixed = rec.hybrid_scores(
        {part: parts[part].unsqueeze(0) for part in HYBRID_PARTS}, mask, [user.weights]
    )[0]
    return mixed, parts["sae"]


def rank(
    model: str,
    version: str,
    catalogue: rec.Catalogue,
    vectors: torch.Tensor | None,
    user: rec.UserQuery,
    scores: torch.Tensor | None,
    predicted: torch.Tensor | None = None,
) -> RecommendationResult:
    """One user's answer from the model's score row [n_items], as the handlers build it.

    ``vectors`` None (no item vectors at hand) leaves the explanations out.
    """
    if not user.ratings or scores is None:
        answer = rec.popular_answer(catalogue, user)
    else:
        mask = rec.candidate_mask([user], catalogue.n_items)[0]
        columns = rec.top_k(scores, mask, user.k)
        explain = user.explain and vectors is not None
        reasons = rec.because(vectors, columns, user) if explain else None
        answer = rec.model_answer(catalogue, user, columns, scores, predicted, reasons)
    return RecommendationResult.from_dict({"model": model, "version": version, **answer})


def explanation_vectors(states: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Per served model, unit item vectors (the hybrid concatenates its parts', as its handler)."""
    vectors = {name: rec.item_vectors(name, state) for name, state in states.items()}
    vectors["hybrid"] = rec.normalise_rows(torch.cat([vectors[p] for p in HYBRID_PARTS], dim=1))
    return vectors
