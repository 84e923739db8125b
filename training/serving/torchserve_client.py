"""Small clients for TorchServe: HTTP (inference, management, metrics) and gRPC inference.

The one place that builds TorchServe HTTP requests: the web app's backend
(``web/backends/torchserve.py``), the server helpers, the tests and the benchmarks use it. Every
call has a timeout and goes over pooled keep-alive connections; a non-2xx answer raises
``TorchServeError`` carrying the status and TorchServe's (or our handler's) JSON message, and no
answer at all raises it with ``status`` None (``timed_out`` says whether the timeout ran out).
With token authorization on (prod config), pass the keys from ``read_key_file``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from training.config import get_logger

log = get_logger("serving")

DEFAULT_TIMEOUT_S = 10.0
MANAGEMENT_TIMEOUT_S = 120.0  # synchronous register/scale waits for workers to start
JSON_HEADERS = {"Content-Type": "application/json"}
# TorchServe 0.12 answers a wrong or expired key with HTTP 400 (not 401) and this error type.
REJECTED_KEY = "InvalidKeyException"
REJECTED_KEY_STATUSES = (400, 401)
KEY_FILE_POLL_S = 0.05
# A refused key is refreshed and the request sent again this many times: workers of one app that
# renew at once replace each other's keys, and the last one written wins.
KEY_REFRESHES = 3
GRPC_BODY_KEY = "body"  # the input name the handlers read the JSON body from
POOL_CONNECTIONS = 32  # keep-alive connections per host (the web app's threads share them)


class TorchServeError(RuntimeError):
    """TorchServe answered with an error (or not at all: ``status`` None)."""

    def __init__(
        self, message: str, status: int | None = None, body: Any = None, timed_out: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = body
        self.timed_out = timed_out


def read_key_file(path: Path | str) -> dict[str, str]:
    """``key_file.json`` (token auth) -> {"inference", "management", "api"} keys.

    The inference and management keys expire (``token_expiration_min``, 60 by default); the API
    key never does and renews them: ``POST <management>/token?type=inference`` with it rewrites
    the file (``TorchServeClient.renew_key``).
    """
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"{path}: no key file; is TorchServe running with token auth?"
        ) from exc
    return {name.lower(): raw[name]["key"] for name in ("inference", "management", "API")}


def key_rejected(response: requests.Response) -> bool:
    """TorchServe refused the request's key (wrong or expired: ``token_expiration_min``)."""
    return response.status_code in REJECTED_KEY_STATUSES and REJECTED_KEY in response.text


class InferenceKey:
    """The inference key a client sends, kept fresh: TorchServe's keys expire
    (``token_expiration_min``, 60 in the production config), so when TorchServe refuses the key
    ``refresh`` takes the key file's current one (renewed by whoever holds the API key: another
    worker, the compose stack's key renewer) or, given the management URL, renews it with the API
    key itself. A fixed ``key`` and no file: nothing to refresh (the request fails as before)."""

    def __init__(
        self,
        key: str | None = None,
        key_file: Path | str | None = None,
        management_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.key_file = Path(key_file) if key_file else None
        self.management_url = (management_url or "").rstrip("/")
        self.timeout = timeout
        self._lock = threading.Lock()
        if key is None and self.key_file is not None:
            key = read_key_file(self.key_file)["inference"]
        self._key = key

    @property
    def current(self) -> str | None:
        return self._key

    def refresh(self, refused: str | None) -> bool:
        """After TorchServe refused ``refused``: True when a different key is now current."""
        with self._lock:
            if self._key != refused:  # another thread refreshed it meanwhile
                return True
            if self.key_file is None:
                return False
            try:
                keys = self._read_keys()
                if keys["inference"] == refused and self.management_url:
                    # Renewing talks to the management API only: no inference URL needed.
                    renewer = TorchServeClient("", self.management_url, timeout=self.timeout)
                    try:
                        renewer.renew_key(keys["api"], "inference")
                    finally:
                        renewer.close()
                    # TorchServe rewrites the file after it answers: wait for the new key.
                    keys = self._read_keys(until_not=refused)
            except (OSError, ValueError, KeyError, TorchServeError) as exc:
                # The caller answers with the refusal, which names the key file.
                log.warning("could not refresh TorchServe's inference key: %s", exc)
                return False
            self._key = keys["inference"]
            return self._key != refused

    def _read_keys(self, until_not: str | None = None) -> dict[str, str]:
        """The key file's keys, read again while it is half written (TorchServe rewrites it in
        place) or, given ``until_not``, still holds that inference key; up to ``timeout``."""
        assert self.key_file is not None
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                keys = read_key_file(self.key_file)
                if until_not is None or keys["inference"] != until_not:
                    return keys
            except (ValueError, KeyError):
                if time.monotonic() >= deadline:
                    raise
            if time.monotonic() >= deadline:
                return keys
            time.sleep(KEY_FILE_POLL_S)


def _bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


class TorchServeClient:
    def __init__(
        self,
        inference_url: str,
        management_url: str | None = None,
        metrics_url: str | None = None,
        inference_token: str | InferenceKey | None = None,
        management_token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        pool_connections: int = POOL_CONNECTIONS,
    ) -> None:
        self.inference_url = inference_url.rstrip("/")
        self.management_url = (management_url or "").rstrip("/")
        self.metrics_url = (metrics_url or "").rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=pool_connections, pool_maxsize=pool_connections)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self._inference_key = (
            inference_token
            if isinstance(inference_token, InferenceKey)
            else InferenceKey(inference_token)
        )
        self._management_auth = _bearer(management_token)

    # -- inference -------------------------------------------------------------------------------
    def recommend(self, model: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST /predictions/<model> with a JSON body; the parsed answer or TorchServeError."""
        return self._json(self.post_json(model, body))

    def post_json(
        self, model: str, body: Any, headers: Mapping[str, str] | None = None
    ) -> requests.Response:
        """POST a JSON body; the raw response (any status), TorchServeError only for no answer."""
        data = json.dumps(body).encode("utf-8")
        return self.post_raw(model, data, headers=headers)

    def post_raw(
        self,
        model: str,
        data: bytes,
        content_type: str | None = JSON_HEADERS["Content-Type"],
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """The raw response (any status): for callers that inspect errors themselves.
        ``headers`` are sent besides the content type and the token (e.g. X-Request-ID). A
        refused (expired) key is refreshed and the request sent again (``KEY_REFRESHES``)."""
        sent = {**(headers or {})}
        if content_type is not None:
            sent["Content-Type"] = content_type
        url = f"{self.inference_url}/predictions/{model}"
        key = self._inference_key.current
        response = self._request("POST", url, data=data, headers={**sent, **_bearer(key)})
        for _ in range(KEY_REFRESHES):
            if not (key_rejected(response) and self._inference_key.refresh(key)):
                break
            key = self._inference_key.current
            response = self._request("POST", url, data=data, headers={**sent, **_bearer(key)})
        return response

    def ping(self) -> dict[str, Any]:
        return self._json(self._request("GET", f"{self.inference_url}/ping"))

    # -- management ------------------------------------------------------------------------------
    def describe(self, model: str) -> list[dict[str, Any]]:
        return self._json(self._manage("GET", f"/models/{model}"))

    def list_models(self) -> dict[str, Any]:
        return self._json(self._manage("GET", "/models"))

    def register(self, url: str, name: str, workers: int = 1, **options: Any) -> dict[str, Any]:
        """Register an archive (a file name in the model store) and start its workers."""
        params = {"url": url, "model_name": name, "initial_workers": workers,
                  "synchronous": "true", **options}  # fmt: skip
        return self._json(self._manage("POST", "/models", params=params))

    def scale(self, model: str, workers: int) -> dict[str, Any]:
        params = {"min_worker": workers, "max_worker": workers, "synchronous": "true"}
        return self._json(self._manage("PUT", f"/models/{model}", params=params))

    def unregister(self, model: str) -> dict[str, Any]:
        return self._json(self._manage("DELETE", f"/models/{model}"))

    def renew_key(self, api_key: str, kind: str = "inference") -> None:
        """Ask TorchServe for a new inference/management key (written to key_file.json)."""
        response = self._request("POST", f"{self.management_url}/token", params={"type": kind},
                                 headers=_bearer(api_key))  # fmt: skip
        self._raise_for(response)

    def metrics(self) -> str:
        """Prometheus text from the metrics endpoint."""
        response = self._request("GET", f"{self.metrics_url}/metrics")
        self._raise_for(response)
        return response.text

    # -- plumbing --------------------------------------------------------------------------------
    def _manage(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        if not self.management_url:
            raise TorchServeError("no management URL given to the client")
        return self._request(method, f"{self.management_url}{path}", headers=self._management_auth,
                             timeout=MANAGEMENT_TIMEOUT_S, **kwargs)  # fmt: skip

    def _request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        try:
            return self.session.request(method, url, **kwargs)
        except requests.Timeout as exc:
            raise TorchServeError(
                f"{method} {url}: TorchServe did not answer within {kwargs['timeout']:g}s",
                timed_out=True,
            ) from exc
        except requests.RequestException as exc:
            raise TorchServeError(f"{method} {url}: TorchServe unreachable ({exc})") from exc

    @staticmethod
    def _raise_for(response: requests.Response) -> None:
        if response.ok:
            return
        try:
            body = response.json()
            message = body.get("message", response.text) if isinstance(body, dict) else body
        except ValueError:
            body, message = response.text, response.text
        raise TorchServeError(
            f"{response.request.method} {response.url}: HTTP {response.status_code}: {message}",
            response.status_code,
            body,
        )

    def _json(self, response: requests.Response) -> Any:
        self._raise_for(response)
        return response.json()

    def close(self) -> None:
        self.session.close()


class TorchServeGrpcClient:
    """Inference over gRPC (stubs generated from the protos inside TorchServe's jar)."""

    def __init__(self, target: str, token: str | None = None, timeout: float = DEFAULT_TIMEOUT_S):
        import grpc

        from training.serving.torchserve_grpc import load_stubs

        self.stubs = load_stubs()
        self.channel = grpc.insecure_channel(target)
        self.stub = self.stubs.inference_pb2_grpc.InferenceAPIsServiceStub(self.channel)
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.timeout = timeout

    def recommend(self, model: str, body: dict[str, Any]) -> dict[str, Any]:
        import grpc

        request = self.stubs.inference_pb2.PredictionsRequest(
            model_name=model, input={GRPC_BODY_KEY: json.dumps(body).encode("utf-8")}
        )
        try:
            reply = self.stub.Predictions(request, timeout=self.timeout, metadata=self.metadata)
        except grpc.RpcError as exc:
            raise TorchServeError(f"gRPC Predictions({model}): {exc.code().name}: {exc.details()}",
                                  body=exc.details()) from exc  # fmt: skip
        answer = json.loads(reply.prediction)
        # gRPC replies carry no HTTP status: the handlers' error bodies are recognised by shape.
        if isinstance(answer, dict) and isinstance(answer.get("code"), int) and "type" in answer:
            raise TorchServeError(
                f"gRPC Predictions({model}): {answer['code']} {answer['type']}: "
                f"{answer.get('message')}",
                answer["code"],
                answer,
            )
        return answer

    def ping(self) -> str:
        from google.protobuf import empty_pb2

        return self.stub.Ping(empty_pb2.Empty(), timeout=self.timeout).health

    def close(self) -> None:
        self.channel.close()
