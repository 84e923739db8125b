"""TorchServe's management API by model version: what a rollout needs beyond ``TorchServeClient``.

Several versions of one model name can be registered side by side; a prediction for
``<model>`` goes to the default one and one for ``<model>/<version>`` to that version. These calls
register an archive as another version, describe each version (its workers and queue), move
the default and unregister one version; they reuse the client's pooled session, timeouts,
token and errors (``TorchServeError``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from training.serving.torchserve_client import TorchServeClient

READY = "READY"


@dataclass(frozen=True)
class VersionState:
    """One registered version of a model, as ``GET /models/<model>/<version>`` describes it."""

    model: str
    version: str
    archive: str  # the modelUrl it was registered from (a file name in the model store)
    workers: tuple[str, ...]  # each worker's status
    pending: int  # requests queued for it, not yet taken by a worker

    @property
    def ready(self) -> bool:
        return bool(self.workers) and all(status == READY for status in self.workers)

    @classmethod
    def from_description(cls, described: dict[str, Any]) -> VersionState:
        queue = described.get("jobQueueStatus") or {}
        return cls(
            model=str(described["modelName"]),
            version=str(described["modelVersion"]),
            archive=str(described.get("modelUrl", "")),
            workers=tuple(str(w.get("status")) for w in described.get("workers", [])),
            pending=int(queue.get("pendingRequests", 0)),
        )


class TorchServeManagement(TorchServeClient):
    """A TorchServe client with the per-version management calls."""

    def default_version(self, model: str) -> VersionState:
        """The version a prediction that names no version gets."""
        (described,) = self.describe(model)[:1]
        return VersionState.from_description(described)

    def versions(self, model: str) -> list[VersionState]:
        """Every registered version of ``model``."""
        described = self._json(self._manage("GET", f"/models/{model}/all"))
        return [VersionState.from_description(item) for item in described]

    def version(self, model: str, version: str) -> VersionState:
        (described,) = self._json(self._manage("GET", f"/models/{model}/{version}"))[:1]
        return VersionState.from_description(described)

    def register_version(
        self, archive: str, model: str, workers: int, batch_size: int, max_batch_delay_ms: int,
        response_timeout_s: int,
    ) -> dict[str, Any]:  # fmt: skip
        """Register ``archive`` (a file in the model store) beside the versions already there;
        its version is the one in its manifest. Returns once its workers have started."""
        return self.register(
            archive,
            model,
            workers,
            batch_size=batch_size,
            max_batch_delay=max_batch_delay_ms,
            response_timeout=response_timeout_s,
        )

    def set_default(self, model: str, version: str) -> dict[str, Any]:
        return self._json(self._manage("PUT", f"/models/{model}/{version}/set-default"))

    def unregister_version(self, model: str, version: str) -> dict[str, Any]:
        return self._json(self._manage("DELETE", f"/models/{model}/{version}"))

    def recommend_version(self, model: str, version: str, body: dict[str, Any]) -> dict[str, Any]:
        """A prediction from that version alone (the client builds the route)."""
        return self._json(self.post_json(f"{model}/{version}", body))
