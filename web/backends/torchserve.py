"""TorchServe over HTTP (the default backend): the issue-4 JSON contract, pooled connections."""

from __future__ import annotations

import requests
from requests.adapters import HTTPAdapter

from web.backends.base import (
    BackendRejected,
    BackendUnavailable,
    ModelBackend,
    RecommendationResult,
    RecommendRequest,
)
from web.backends.health import probe_models

POOL_CONNECTIONS = 32
CLIENT_ERROR = range(400, 500)


class TorchServeBackend(ModelBackend):
    name = "torchserve"

    def __init__(self, base_url: str, timeout_s: float, token: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._session = requests.Session()
        adapter = HTTPAdapter(pool_connections=POOL_CONNECTIONS, pool_maxsize=POOL_CONNECTIONS)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers["Content-Type"] = "application/json"
        if token:
            self._session.headers["Authorization"] = f"Bearer {token}"

    def _post(self, model: str, body: dict, request_id: str) -> dict | list:
        url = f"{self.base_url}/predictions/{model}"
        try:
            response = self._session.post(
                url, json=body, timeout=self.timeout_s, headers={"X-Request-ID": request_id}
            )
        except requests.Timeout as exc:
            raise BackendUnavailable(
                f"TorchServe at {self.base_url} did not answer within {self.timeout_s:g}s"
            ) from exc
        except requests.RequestException as exc:
            raise BackendUnavailable(
                f"TorchServe at {self.base_url} is unreachable ({type(exc).__name__})"
            ) from exc
        if response.status_code in CLIENT_ERROR and response.status_code != 404:
            raise BackendRejected(_error_message(response), response.status_code)
        if response.status_code != 200:
            raise BackendUnavailable(
                f"TorchServe model {model!r} answered HTTP {response.status_code}: "
                f"{_error_message(response)}"
            )
        return response.json()

    def recommend(
        self, model: str, query: RecommendRequest, request_id: str
    ) -> RecommendationResult:
        return RecommendationResult.from_dict(self._post(model, query.to_json(), request_id))

    def recommend_batch(
        self, model: str, queries: list[RecommendRequest], request_id: str
    ) -> list[RecommendationResult]:
        # One call per user: TorchServe batches concurrent requests server-side.
        return [self.recommend(model, query, request_id) for query in queries]

    def health(self) -> dict[str, str]:
        return probe_models(self)

    def close(self) -> None:
        self._session.close()


def _error_message(response: requests.Response) -> str:
    try:
        payload = response.json()
    except ValueError:
        return response.text[:300] or response.reason
    if isinstance(payload, dict):
        return str(payload.get("message") or payload.get("error") or payload)[:300]
    return str(payload)[:300]
