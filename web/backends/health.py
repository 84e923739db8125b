"""A backend's health is whether each model answers a real (tiny) query."""

from __future__ import annotations

import uuid

from web.backends.base import BackendError, ModelBackend, RecommendRequest
from web.config import MODEL_NAMES

PROBE = RecommendRequest(ratings={}, k=1, explain=False)


def probe_models(backend: ModelBackend) -> dict[str, str]:
    states = {}
    for model in MODEL_NAMES:
        try:
            backend.recommend(model, PROBE, f"health-{uuid.uuid4().hex[:8]}")
            states[model] = "ready"
        except BackendError as exc:
            states[model] = str(exc)
    return states
