"""Container healthcheck: healthy once every registered model has a READY worker.

``/ping`` answers before a model can serve, so Docker would route traffic too early. This asks the
management API (loopback only, token-protected) instead, with the management key from the
``key_file.json`` that TorchServe writes into its working directory. Keys expire
(``token_expiration_min``); when TorchServe rejects the key (HTTP 400 with an
``InvalidKeyException`` in 0.12, not a 401) the check asks for a fresh management key with the
API key, which never expires, so a long-running container does not turn unhealthy on its own.
Exit 0 healthy, 1 not (the Docker HEALTHCHECK convention).
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

MANAGEMENT_URL = os.environ.get("TS_MANAGEMENT_URL", "http://127.0.0.1:8081")
KEY_FILE = Path(os.environ.get("TS_KEY_FILE", "/home/model-server/keys/key_file.json"))
TIMEOUT_S = 4.0
REJECTED_KEY = "InvalidKeyException"


def _request(path: str, key: str | None) -> bytes:
    request = urllib.request.Request(MANAGEMENT_URL + path)
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        return response.read()


def _get(path: str, key: str | None) -> Any:
    return json.loads(_request(path, key))


def _keys() -> dict:
    # Absent when the deployment disabled token authorization.
    return json.loads(KEY_FILE.read_text()) if KEY_FILE.is_file() else {}


def _get_renewing(path: str) -> Any:
    keys = _keys()
    try:
        return _get(path, keys.get("management", {}).get("key"))
    except urllib.error.HTTPError as exc:
        if REJECTED_KEY not in exc.read().decode(errors="replace") or "API" not in keys:
            raise
    # Answers with an empty body and rewrites the key file with the new management key.
    _request("/token?type=management", keys["API"]["key"])
    return _get(path, _keys()["management"]["key"])


def unready_models() -> list[str]:
    """Names of registered models without a READY worker; raises if none is registered."""
    models = [entry["modelName"] for entry in _get_renewing("/models")["models"]]
    if not models:
        raise RuntimeError("no model registered")
    unready = []
    for name in models:
        versions = _get_renewing(f"/models/{name}")
        workers = [w for version in versions for w in version.get("workers", [])]
        if not any(worker.get("status") == "READY" for worker in workers):
            unready.append(name)
    return unready


def main() -> int:
    try:
        unready = unready_models()
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        print(f"unhealthy: {exc}")
        return 1
    if unready:
        print(f"unhealthy: no READY worker for {', '.join(unready)}")
        return 1
    print("healthy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
