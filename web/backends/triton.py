"""Triton over gRPC: the served ranking (and predicted ratings) for a rating vector; top-k,
explanations and the popularity fallback go the handlers' one ranking path
(``web.backends.ranking``)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch

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

TRITON_VERSION = f"triton-{tn.MODEL_VERSION}"


class TritonBackend(ModelBackend):
    name = "triton"

    def __init__(self, grpc_url: str, timeout_s: float, triton_repo: Path) -> None:
        self.grpc_url = grpc_url
        self.timeout_s = timeout_s
        self.client = TritonClient(grpc_url, timeout_s)
        self.triton_repo = Path(triton_repo)
        self._lock = threading.Lock()
        self._catalogue: rec.Catalogue | None = None
        self._vectors: dict[str, torch.Tensor] = {}

    def _ensure_catalogue(self) -> rec.Catalogue:
        """The serving artifacts export wrote beside the graphs: catalogue and item vectors."""
        with self._lock:
            if self._catalogue is None:
                try:
                    artifacts = {
                        model: ServingArtifact.load(
                            self.triton_repo / model / tn.MODEL_VERSION / ARTIFACT_FILE
                        )
                        for model in tn.SERVED_MODELS
                    }
                except (FileNotFoundError, ValueError) as exc:
                    raise BackendUnavailable(f"Triton backend: {exc}") from exc
                self._vectors = {model: a.vectors for model, a in artifacts.items()}
                self._catalogue = rec.Catalogue.from_artifact(artifacts[tn.SAE])
            return self._catalogue

    def recommend(
        self, model: str, query: RecommendRequest, request_id: str, version: str | None = None
    ) -> RecommendationResult:
        # Triton serves the latest version of each model (its version policy): no canary there.
        catalogue = self._ensure_catalogue()
        user = ranking.parse(query, catalogue, model)
        ranked = predicted = None
        if user.ratings:
            inputs = rec.ratings_matrix([user], catalogue.n_items).numpy()
            weights = None
            if model == tn.HYBRID:
                # parse() gives a hybrid query its weights (equal ones when the body has none).
                parts = user.weights or rec.parse_weights(None, rec.HYBRID_PARTS)
                weights = hybrid_weights(parts["sae"], parts["rbm"], 1)
            try:
                prediction = self.client.infer(model, inputs, weights, ranked_outputs(model))
            except TritonInvalidInputError as exc:
                raise BackendRejected(str(exc)) from exc
            except TritonUnavailableError as exc:
                self._reconnect()
                raise BackendUnavailable(f"Triton at {self.grpc_url}: {exc}") from exc
            except TritonClientError as exc:
                raise BackendUnavailable(f"Triton at {self.grpc_url}: {exc}") from exc
            rows, predicted_rows = prediction.served(model)
            ranked = _row(rows)
            predicted = None if predicted_rows is None else _row(predicted_rows)
        vectors = self._vectors[model]
        return ranking.answer(model, TRITON_VERSION, catalogue, vectors, user, ranked, predicted)

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


def _row(batch: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(batch[0], dtype=np.float32))
