"""TorchServe over HTTP (the default backend): the issue-4 JSON contract, pooled connections.

The requests are ``training.serving.torchserve_client.TorchServeClient``'s (the project's one
TorchServe HTTP client); this maps its answers onto the backend errors: no answer, a timeout or
a 5xx (and 404, a model TorchServe does not serve) is BackendUnavailable, any other 4xx is
BackendRejected with the server's message. An expired inference key is refreshed from
TorchServe's key file (or renewed) and the request sent once more (``InferenceKey``).
"""

from __future__ import annotations

from pathlib import Path

import requests

from training.monitoring.logging_config import REQUEST_ID_HEADER
from training.serving.torchserve_client import (
    InferenceKey,
    TorchServeClient,
    TorchServeError,
    key_rejected,
)
from web.backends.base import (
    BackendRejected,
    BackendUnavailable,
    ModelBackend,
    RecommendationResult,
    RecommendRequest,
)
from web.backends.health import probe_models

CLIENT_ERROR = range(400, 500)
NOT_FOUND = 404


class TorchServeBackend(ModelBackend):
    name = "torchserve"

    def __init__(
        self,
        base_url: str,
        timeout_s: float,
        token: str | None = None,
        key_file: Path | None = None,
        management_url: str | None = None,
    ) -> None:
        """``token`` is a fixed inference key; ``key_file`` (TorchServe's key_file.json) is read
        again whenever TorchServe refuses the key (they expire), and with ``management_url`` an
        expired key is renewed with the file's API key (InferenceKey)."""
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        key = InferenceKey(token, key_file, management_url, timeout_s)
        self._client = TorchServeClient(self.base_url, inference_token=key, timeout=timeout_s)

    def _post(self, model: str, body: dict, request_id: str, version: str | None = None) -> dict:
        path = model if version is None else f"{model}/{version}"
        try:
            response = self._client.post_json(path, body, headers={REQUEST_ID_HEADER: request_id})
            if version is not None and response.status_code == NOT_FOUND:
                # That version went (its canary ended) between the page and this call.
                return self._post(model, body, request_id)
        except TorchServeError as exc:
            if exc.timed_out:
                raise BackendUnavailable(
                    f"TorchServe at {self.base_url} did not answer within {self.timeout_s:g}s"
                ) from exc
            cause = type(exc.__cause__ or exc).__name__
            raise BackendUnavailable(
                f"TorchServe at {self.base_url} is unreachable ({cause})"
            ) from exc
        if key_rejected(response):  # refreshed and still refused: the deployment's keys are wrong
            raise BackendUnavailable(
                f"TorchServe at {self.base_url} refused the inference key (expired or wrong; "
                "TORCHSERVE_KEY_FILE is read again on every refusal)"
            )
        if response.status_code in CLIENT_ERROR and response.status_code != 404:
            raise BackendRejected(_error_message(response), response.status_code)
        if response.status_code != 200:
            raise BackendUnavailable(
                f"TorchServe model {model!r} answered HTTP {response.status_code}: "
                f"{_error_message(response)}"
            )
        answer = response.json()
        if not isinstance(answer, dict):  # the contract's answer is one JSON object
            raise BackendUnavailable(
                f"TorchServe model {model!r} answered {type(answer).__name__}, not an object"
            )
        return answer

    def recommend(
        self, model: str, query: RecommendRequest, request_id: str, version: str | None = None
    ) -> RecommendationResult:
        return RecommendationResult.from_dict(
            self._post(model, query.to_json(), request_id, version)
        )

    def recommend_batch(
        self, model: str, queries: list[RecommendRequest], request_id: str
    ) -> list[RecommendationResult]:
        # One call per user: TorchServe batches concurrent requests server-side.
        return [self.recommend(model, query, request_id) for query in queries]

    def health(self) -> dict[str, str]:
        return probe_models(self)

    def close(self) -> None:
        self._client.close()


def _error_message(response: requests.Response) -> str:
    try:
        payload = response.json()
    except ValueError:
        return response.text[:300] or response.reason
    if isinstance(payload, dict):
        return str(payload.get("message") or payload.get("error") or payload)[:300]
    return str(payload)[:300]
