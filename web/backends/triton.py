"""Triton over gRPC: the served ranking (and predicted ratings) for a rating vector; top-k,
explanations and the popularity fallback go the handlers' one ranking path
(``web.backends.ranking``)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from handlers import recommendation as rec
from handlers.serving_artifact import ARTIFACT_FILE, ServingArtifact
from training.serving import triton_names as tn
from training.serving.triton_client import (
    TritonClient,
    TritonClientError,
    TritonInvalidInputError,
    TritonUnavailableError,
    hybrid_weights,
    ranked_outputs,
)
from web.backends import ranking
from web.backends.base import (
    BackendRejected,
    BackendUnavailable,
    ModelBackend,
    RecommendationResult,
    RecommendRequest,
)

T = TypeVar("T")

LABEL_PREFIX = "triton-"


def label(model: str, versions: dict[str, str]) -> str:
    """What an answer names: ``triton-<version>``; the hybrid adds its parts' versions, as in
    ``triton-1 (sae 2, rbm 1)``."""
    named = f"{LABEL_PREFIX}{versions[model]}"
    if model != tn.HYBRID:
        return named
    return f"{named} ({', '.join(f'{part} {versions[part]}' for part in tn.SCORING_MODELS)})"


def newest_folder(repo: Path, model: str) -> str:
    """The newest numbered version folder: what Triton's ``latest`` policy serves, our guess
    until Triton has said which version answered."""
    folder = repo / model
    numbers = [int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit()]
    if not numbers:
        raise BackendUnavailable(f"Triton backend: {folder} has no version folder")
    return str(max(numbers))


class TritonBackend(ModelBackend):
    """Answers name the version Triton reports, and catalogue and explanation vectors come from
    that version's folder (read again when the served version changes), so a release
    (``movierec release triton``) needs no restart here."""

    name = "triton"

    def __init__(self, grpc_url: str, timeout_s: float, triton_repo: Path) -> None:
        self.grpc_url = grpc_url
        self.timeout_s = timeout_s
        self.client = TritonClient(grpc_url, timeout_s)
        self.triton_repo = Path(triton_repo)
        self._lock = threading.Lock()
        # model -> (version, its artifact): the version last seen answering, read once per change
        self._artifacts: dict[str, tuple[str, ServingArtifact]] = {}
        self._catalogue: tuple[str, rec.Catalogue] | None = None  # of that SAE version
        self._hybrid_vectors: tuple[tuple[str, ...], torch.Tensor] | None = None
        self._last_versions: dict[str, dict[str, str]] = {}  # model -> what it last named

    def _artifact(self, model: str, version: str) -> ServingArtifact:
        with self._lock:
            cached = self._artifacts.get(model)
            if cached is not None and cached[0] == version:
                return cached[1]
            try:
                artifact = ServingArtifact.load(self.triton_repo / model / version / ARTIFACT_FILE)
            except (FileNotFoundError, ValueError) as exc:
                raise BackendUnavailable(f"Triton backend: {exc}") from exc
            self._artifacts[model] = (version, artifact)
            return artifact

    def _known_version(self, model: str) -> str:
        with self._lock:
            cached = self._artifacts.get(model)
        return cached[0] if cached is not None else newest_folder(self.triton_repo, model)

    def _catalogue_of(self, sae_version: str) -> rec.Catalogue:
        """The catalogue the SAE's serving artifact carries (a release keeps the catalogue:
        the graphs' input width is fixed)."""
        artifact = self._artifact(tn.SAE, sae_version)
        with self._lock:
            if self._catalogue is None or self._catalogue[0] != sae_version:
                self._catalogue = (sae_version, rec.Catalogue.from_artifact(artifact))
            return self._catalogue[1]

    def _vectors(self, model: str, versions: dict[str, str]) -> torch.Tensor:
        """Explanation vectors of the versions that answered. The hybrid's own artifact holds
        its parts' vectors side by side; once a part has a new version, they are joined again
        from the parts' artifacts the same way (unit rows, so every cosine is the mean)."""
        own = self._artifact(model, versions[model])
        if model != tn.HYBRID:
            return own.vectors
        parts = {part: self._artifact(part, versions[part]) for part in tn.SCORING_MODELS}
        if all(_checkpoint(own, part) == _checkpoint(a, part) for part, a in parts.items()):
            return own.vectors
        key = tuple(versions[name] for name in (model, *tn.SCORING_MODELS))
        with self._lock:
            if self._hybrid_vectors is None or self._hybrid_vectors[0] != key:
                joined = torch.cat([a.vectors for a in parts.values()], dim=1)
                self._hybrid_vectors = (key, F.normalize(joined, dim=1))
            return self._hybrid_vectors[1]

    def _call(self, method: Callable[[], T]) -> T:
        try:
            return method()
        except TritonInvalidInputError as exc:
            raise BackendRejected(str(exc)) from exc
        except TritonUnavailableError as exc:
            self._reconnect()
            raise BackendUnavailable(f"Triton at {self.grpc_url}: {exc}") from exc
        except TritonClientError as exc:
            raise BackendUnavailable(f"Triton at {self.grpc_url}: {exc}") from exc

    def _answering_versions(self, model: str, answered: str) -> dict[str, str]:
        """``model``'s version as Triton reported it; for the ensemble also the SAE and RBM
        versions it reached, which its answer does not carry: asked of Triton's repository
        index (one more call; a release between the two calls can name the part's next
        version)."""
        versions = {model: answered}
        if model == tn.HYBRID:
            served = self._call(self.client.served_versions)
            for part in tn.SCORING_MODELS:
                if part not in served:
                    raise BackendUnavailable(f"Triton at {self.grpc_url}: {part} is not ready")
                versions[part] = served[part]
        return versions

    def recommend(
        self, model: str, query: RecommendRequest, request_id: str, version: str | None = None
    ) -> RecommendationResult:
        # Triton serves the latest version of each model (its version policy): no canary there.
        catalogue = self._catalogue_of(self._known_version(tn.SAE))
        user = ranking.parse(query, catalogue, model)
        ranked = predicted = None
        if user.ratings:
            inputs = rec.ratings_matrix([user], catalogue.n_items).numpy()
            weights = None
            if model == tn.HYBRID:
                # parse() gives a hybrid query its weights (equal ones when the body has none).
                parts = user.weights or rec.parse_weights(None, rec.HYBRID_PARTS)
                weights = hybrid_weights(parts["sae"], parts["rbm"], 1)
            prediction = self._call(
                lambda: self.client.infer(model, inputs, weights, ranked_outputs(model))
            )
            versions = self._answering_versions(model, prediction.model_version)
            if tn.SAE in versions:
                catalogue = self._catalogue_of(versions[tn.SAE])
            rows, predicted_rows = prediction.served(model)
            ranked = _row(rows)
            predicted = None if predicted_rows is None else _row(predicted_rows)
            with self._lock:
                self._last_versions[model] = versions
        else:
            # The popularity fallback asks no model: it names the versions last seen.
            with self._lock:
                versions = self._last_versions.get(model, {})
            names = (model, *tn.SCORING_MODELS) if model == tn.HYBRID else (model,)
            versions = {name: versions.get(name) or self._known_version(name) for name in names}
        vectors = self._vectors(model, versions)
        return ranking.answer(
            model, label(model, versions), catalogue, vectors, user, ranked, predicted
        )

    def _reconnect(self) -> None:
        """A fresh channel for the next call. A gRPC channel whose server went away waits out
        its reconnect backoff (growing to 120 s) before it tries again, so a restarted Triton
        would stay unused for minutes. The old client is left to the garbage collector: other
        threads may still be in a call on it."""
        with self._lock:
            self.client = TritonClient(self.grpc_url, self.timeout_s)

    def health(self) -> dict[str, str]:
        state = self.client.health()
        if "error" in state:
            self._reconnect()
            return {model: str(state["error"]) for model in tn.SERVED_MODELS}
        return {
            model: "ready" if ready else "not ready" for model, ready in state["models"].items()
        }

    def close(self) -> None:
        self.client.close()


def _checkpoint(artifact: ServingArtifact, part: str) -> object:
    return artifact.metadata.get("parts", {}).get(part, {}).get("checkpoint_sha256")


def _row(batch: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(batch[0], dtype=np.float32))
