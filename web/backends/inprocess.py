"""The checkpoints served inside the web process: a real backend for development without a
model server (and for tests that need model answers without one)."""

from __future__ import annotations

import threading
from pathlib import Path

import torch

from handlers import recommendation as rec
from training.models import load_checkpoint
from training.models.serving import serving_module
from web.backends import ranking
from web.backends.base import (
    BackendUnavailable,
    ModelBackend,
    RecommendationResult,
    RecommendRequest,
)
from web.backends.health import probe_models


class InProcessBackend(ModelBackend):
    name = "inprocess"

    def __init__(self, checkpoints_dir: Path, prepared_dir: Path) -> None:
        self.checkpoints_dir = Path(checkpoints_dir)
        self.prepared_dir = Path(prepared_dir)
        self._lock = threading.Lock()
        self._loaded = False

    def _load(self) -> None:
        """Loaded on first use, so the app starts (and its other pages work) without models."""
        with self._lock:
            if self._loaded:
                return
            try:
                self.catalogue = ranking.catalogue_from_prepared(self.prepared_dir)
                paths = {name: self.checkpoints_dir / f"{name}.pt" for name in ranking.HYBRID_PARTS}
                # The form TorchServe serves (members fused, sparse input): same answers.
                self.models = {
                    name: serving_module(load_checkpoint(path).model)
                    for name, path in paths.items()
                }
            except (FileNotFoundError, ValueError) as exc:
                raise BackendUnavailable(f"in-process models could not be loaded: {exc}") from exc
            part_versions = {name: ranking.file_version(path) for name, path in paths.items()}
            self.versions = {
                **part_versions,
                "hybrid": "+".join(part_versions[name] for name in ranking.HYBRID_PARTS),
            }
            self.vectors = ranking.explanation_vectors(
                {name: dict(model.state_dict()) for name, model in self.models.items()}
            )
            self._loaded = True

    def recommend(
        self, model: str, query: RecommendRequest, request_id: str
    ) -> RecommendationResult:
        self._load()
        user = ranking.parse(query, self.catalogue, model)
        ranked = predicted = None
        if user.ratings:
            inputs = rec.ratings_matrix([user], self.catalogue.n_items)
            parts = ranking.HYBRID_PARTS if model == rec.HYBRID else (model,)
            scores, rankings = {}, {}
            with torch.inference_mode():
                for part in parts:
                    scores[part], rankings[part] = self.models[part](inputs)
            rows, predicted_rows = rec.served_ranking(model, [user], rankings, scores, inputs)
            ranked = rows[0]
            predicted = None if predicted_rows is None else predicted_rows[0]
        return ranking.answer(
            model,
            self.versions[model],
            self.catalogue,
            self.vectors[model],
            user,
            ranked,
            predicted,
        )

    def health(self) -> dict[str, str]:
        return probe_models(self)
