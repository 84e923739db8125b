"""TorchServe's keys expire (``token_expiration_min``; 60 minutes in the production config): a
real TorchServe with the production config and keys that expire after 6 seconds. The web app
(gunicorn, 2 workers) keeps answering across several expiries, renewing the key itself; a backend
that may only read the key file (the compose stack's web app) picks up the key the compose
renewer wrote, without a restart."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests

from tests.fixtures.web import TEST_API_KEY
from training.serving.torchserve_client import read_key_file
from training.serving.torchserve_keys import renew_inference_key
from training.serving.torchserve_server import Ports, TorchServe, start_torchserve

pytestmark = pytest.mark.slow

EXPIRY_MIN = 0.1  # 6 s
EXPIRY_S = EXPIRY_MIN * 60
MODEL = "sae"
ROUNDS = 3  # requests, each after the previous key expired
TIMEOUT_S = 30
RATINGS = {"1": 5, "50": 4, "181": 5}
UNASKED_MOVIE = 200  # and the next few: one more rating per request


@pytest.fixture(scope="module")
def short_key_torchserve(torchserve_model_store, tmp_path_factory) -> Iterator[TorchServe]:
    server = start_torchserve(
        torchserve_model_store,
        tmp_path_factory.mktemp("torchserve-keys"),
        config="prod",
        ports=Ports.free(),
        models=(MODEL,),
        overrides={"token_expiration_min": str(EXPIRY_MIN)},
    )
    try:
        yield server
    finally:
        server.stop()


def expire(server: TorchServe) -> None:
    """Wait until the key file's inference key has expired."""
    time.sleep(EXPIRY_S + 1)
    keys = read_key_file(server.key_file)
    answer = requests.post(
        f"{server.inference_url}/predictions/{MODEL}", json={"ratings": RATINGS, "k": 3},
        headers={"Authorization": f"Bearer {keys['inference']}"}, timeout=TIMEOUT_S,
    )  # fmt: skip
    assert answer.status_code == 400 and "InvalidKeyException" in answer.text, answer.text


def test_the_web_app_renews_an_expired_key_itself(short_key_torchserve, gunicorn_web_factory):
    server = short_key_torchserve
    base = gunicorn_web_factory(
        MODEL_BACKEND="torchserve",
        TORCHSERVE_URL=server.inference_url,
        TORCHSERVE_KEY_FILE=str(server.key_file),
        TORCHSERVE_MANAGEMENT_URL=server.management_url,
        MODEL_TIMEOUT_S="10",
    )
    token = requests.post(f"{base}/api/v1/token", json={"api_key": TEST_API_KEY},
                          timeout=TIMEOUT_S).json()["access_token"]  # fmt: skip
    keys_seen = set()
    for round_ in range(ROUNDS):
        expire(server)
        keys_seen.add(read_key_file(server.key_file)["inference"])
        # New connections: either worker answers, each with the key it read before. Ratings
        # never asked before: a cached answer would not reach TorchServe.
        for request in range(2):
            ratings = {**RATINGS, str(UNASKED_MOVIE + 2 * round_ + request): 3}
            answer = requests.post(
                f"{base}/api/v1/recommend/{MODEL}", json={"ratings": ratings, "k": 5},
                headers={"Authorization": f"Bearer {token}", "Connection": "close"},
                timeout=TIMEOUT_S,
            )  # fmt: skip
            assert answer.status_code == 200, f"round {round_}: {answer.text}"
            assert len(answer.json()["recommendations"]) == 5
    keys_seen.add(read_key_file(server.key_file)["inference"])
    assert len(keys_seen) > ROUNDS  # a new key after every expiry: the app renewed them


def test_a_backend_reading_the_key_file_picks_up_a_renewed_key(short_key_torchserve):
    """The compose stack's web app cannot reach the management API; the renewer can."""
    from web.backends import BackendUnavailable, RecommendRequest
    from web.backends.torchserve import TorchServeBackend

    server = short_key_torchserve
    backend = TorchServeBackend(server.inference_url, 10.0, key_file=server.key_file)
    query = RecommendRequest(ratings={1: 5, 50: 4}, k=3)
    try:
        expire(server)
        with pytest.raises(BackendUnavailable, match="refused the inference key"):
            backend.recommend(MODEL, query, "key-renewal")  # nobody renewed: 503, not a hang
        renew_inference_key(server.key_file, server.management_url)  # the compose renewer
        answer = backend.recommend(MODEL, query, "key-renewal")
        assert len(answer.recommendations) == 3
    finally:
        backend.close()
