"""The TorchServe archives served inside the web process: a real backend for development without
a model server (and for tests that need model answers without one).

It reads ``model_store/<model>.mar`` as TorchServe does: the TorchScript serving forms and the
serving artifact (catalogue, popularity, item vectors), so its answers are TorchServe's."""

from __future__ import annotations

import io
import threading
import zipfile
from pathlib import Path

import torch

from handlers import contract
from handlers import recommendation as rec
from handlers.serving_artifact import ARTIFACT_FILE, ServingArtifact
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

    def __init__(self, model_store: Path) -> None:
        self.model_store = Path(model_store)
        self._lock = threading.Lock()
        self._loaded = False

    def _load(self) -> None:
        """Loaded on first use, so the app starts (and its other pages work) without models."""
        with self._lock:
            if self._loaded:
                return
            archives = {name: self.model_store / f"{name}.mar" for name in contract.SERVED_MODELS}
            try:
                artifacts, self.models = {}, {}
                for name, archive in archives.items():
                    with zipfile.ZipFile(archive) as mar:
                        where = f"{archive}:{ARTIFACT_FILE}"
                        artifacts[name] = ServingArtifact.from_bytes(mar.read(ARTIFACT_FILE), where)
                        if name in ranking.HYBRID_PARTS:
                            scripted = io.BytesIO(mar.read(f"{name}.pt"))
                            self.models[name] = torch.jit.load(scripted, map_location="cpu").eval()
            except (FileNotFoundError, KeyError, ValueError, zipfile.BadZipFile) as exc:
                raise BackendUnavailable(f"in-process models could not be loaded: {exc}") from exc
            self.catalogue = rec.Catalogue.from_artifact(artifacts[rec.SAE])
            self.vectors = {name: artifact.vectors for name, artifact in artifacts.items()}
            self.versions = {name: ranking.file_version(path) for name, path in archives.items()}
            self._loaded = True

    def recommend(
        self, model: str, query: RecommendRequest, request_id: str, version: str | None = None
    ) -> RecommendationResult:
        # One archive per model in process: no versions to choose from.
        self._load()
        user = ranking.parse(query, self.catalogue, model)
        ranked = predicted = mask = None
        if user.ratings:
            inputs = rec.ratings_matrix([user], self.catalogue.n_items)
            mask = rec.candidate_mask([user], self.catalogue.n_items, inputs)
            parts = ranking.HYBRID_PARTS if model == rec.HYBRID else (model,)
            scores, rankings = {}, {}
            with torch.inference_mode():
                for part in parts:
                    scores[part], rankings[part] = self.models[part](inputs)
            rows, predicted_rows = rec.served_ranking(model, [user], rankings, scores, mask)
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
            mask,
        )

    def health(self) -> dict[str, str]:
        return probe_models(self)
