"""Model backends: TorchServe (default), Triton gRPC, or the archives in-process (dev)."""

from __future__ import annotations

from web.backends.base import (
    BackendError,
    BackendRejected,
    BackendUnavailable,
    ModelBackend,
    Recommendation,
    RecommendationResult,
    RecommendRequest,
)
from web.config import WebSettings

__all__ = [
    "BackendError",
    "BackendRejected",
    "BackendUnavailable",
    "ModelBackend",
    "Recommendation",
    "RecommendRequest",
    "RecommendationResult",
    "make_backend",
]


def make_backend(settings: WebSettings) -> ModelBackend:
    """The backend ``MODEL_BACKEND`` names; each import is deferred so unused ones cost nothing."""
    if settings.model_backend == "torchserve":
        from web.backends.torchserve import TorchServeBackend

        return TorchServeBackend(
            settings.torchserve_url,
            settings.model_timeout_s,
            settings.torchserve_token,
            settings.torchserve_key_file,
            settings.torchserve_management_url,
        )
    if settings.model_backend == "triton":
        from web.backends.triton import TritonBackend

        return TritonBackend(
            settings.triton_grpc_url, settings.model_timeout_s, settings.triton_repo
        )
    from web.backends.inprocess import InProcessBackend

    return InProcessBackend(settings.model_store)
