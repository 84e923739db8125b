"""Against a real TorchServe (session fixture ``torchserve``): inference, parity with the
in-process models, batching, the bad-input table, management, metrics, gRPC and recovery."""

from __future__ import annotations

import json
import os
import signal
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
import torch
from prometheus_client.parser import text_string_to_metric_families

from handlers import recommendation as rec
from tests.fixtures.polling import poll
from tests.fixtures.torchserve import models_reporting
from training.serving.torchserve_client import TorchServeError, TorchServeGrpcClient

pytestmark = pytest.mark.slow

MODELS = ("sae", "rbm", "hybrid")
K = 10
PARITY_USERS = (0, 1, 2)
BATCHED_MODEL = "sae_batched"
# Long enough that requests fired together land in one batch even on a loaded 2-core machine.
BATCH_DELAY_MS = 1500
BATCH_SIZE = 32
RECOVERY_TIMEOUT_S = 120
WORKERS_TIMEOUT_S = 120
POLL_S = 0.5


@pytest.fixture(scope="module")
def client(torchserve):
    client = torchserve.client()
    yield client
    client.close()


@pytest.fixture(scope="module")
def item_ids(prepared) -> list[int]:
    return list(prepared.metadata["item_ids"])


def user_body(prepared, item_ids, row: int, **extra) -> dict:
    ratings = prepared.train[row]
    rated = ratings.nonzero().squeeze(1).tolist()
    return {"ratings": {str(item_ids[c]): float(ratings[c]) for c in rated}, "k": K, **extra}


def ids(answer: dict) -> list[int]:
    return [item["movie_id"] for item in answer["recommendations"]]


@pytest.fixture(scope="module")
def batched_model(client):
    """The SAE archive registered again with a long batch delay, so batches are observable."""
    reply = client.register(
        "sae.mar", BATCHED_MODEL, workers=1, batch_size=BATCH_SIZE, max_batch_delay=BATCH_DELAY_MS
    )
    assert BATCHED_MODEL in reply["status"]
    yield BATCHED_MODEL
    client.unregister(BATCHED_MODEL)


# -- inference -----------------------------------------------------------------------------------
@pytest.mark.parametrize("model", MODELS)
def test_each_model_recommends_unrated_movies_with_explanations(client, prepared, item_ids, model):
    body = user_body(prepared, item_ids, 0)
    answer = client.recommend(model, body)
    assert (answer["model"], answer["version"], answer["strategy"]) == (model, "1.0", "model")
    recommended = ids(answer)
    assert len(recommended) == K and len(set(recommended)) == K
    assert not set(recommended) & {int(i) for i in body["ratings"]}
    liked = {int(i) for i, r in body["ratings"].items() if r >= rec.LIKED_RATING}
    for item in answer["recommendations"]:
        assert item["title"] and set(item["because"]) <= liked
        assert ("predicted_rating" in item) == (model != "rbm")
    assert any(item["because"] for item in answer["recommendations"])
    scores = [item["score"] for item in answer["recommendations"]]
    assert scores == sorted(scores, reverse=True)


def test_new_user_gets_the_labelled_popularity_fallback(client, prepared):
    answer = client.recommend("sae", {"ratings": {}, "k": 5})
    assert answer["strategy"] == "popularity" and "not personalised" in answer["note"]
    counts = (prepared.train > 0).sum(dim=0)
    top = counts.argsort(descending=True, stable=True)[:5].tolist()
    assert ids(answer) == [prepared.metadata["item_ids"][c] for c in top]


def test_a_users_body_gets_one_answer_per_user(client, prepared, item_ids):
    first, third = (user_body(prepared, item_ids, row)["ratings"] for row in (3, 4))
    users = [{"ratings": first}, {"ratings": {}}, {"ratings": third, "k": 2}]
    answer = client.recommend("rbm", {"users": users, "k": 3, "explain": False})
    assert [u["strategy"] for u in answer["users"]] == ["model", "popularity", "model"]
    assert [len(u["recommendations"]) for u in answer["users"]] == [3, 3, 2]
    assert "because" not in answer["users"][0]["recommendations"][0]


def expected_top_k(scores: np.ndarray, rated: list[int], item_ids: list[int]) -> list[int]:
    """Top-k by score among unrated movies, ties to the lower column (the API's contract)."""
    candidates = np.setdiff1d(np.arange(scores.shape[0]), rated)
    order = np.lexsort((candidates, -scores[candidates]))[:K]
    return [item_ids[c] for c in candidates[order]]


def minmax(scores: np.ndarray, rated: list[int]) -> np.ndarray:
    candidates = np.setdiff1d(np.arange(scores.shape[0]), rated)
    low, high = scores[candidates].min(), scores[candidates].max()
    return (scores - low) / max(high - low, np.finfo(np.float32).eps)


def test_server_top_k_equals_the_in_process_models(client, checkpoints, prepared, item_ids):
    """The archives serve the checkpoints' serving forms (int8 output layers): the same
    form in this process gives the same lists."""
    from training.models import load_checkpoint
    from training.models.serving import serving_module

    rows = prepared.train[list(PARITY_USERS)]
    local = {}
    for name, path in checkpoints.items():
        with torch.inference_mode():
            local[name] = serving_module(load_checkpoint(path).model)(rows)[1].numpy()
    weights = {"sae": 0.3, "rbm": 0.7}
    for i, row in enumerate(PARITY_USERS):
        rated = rows[i].nonzero().squeeze(1).tolist()
        body = user_body(prepared, item_ids, row, explain=False)
        for name in ("sae", "rbm"):
            assert ids(client.recommend(name, body)) == expected_top_k(
                local[name][i], rated, item_ids
            )
        mixed = sum(w * minmax(local[name][i], rated) for name, w in weights.items())
        served = client.recommend("hybrid", {**body, "weights": weights})
        assert ids(served) == expected_top_k(mixed.astype(np.float32), rated, item_ids)
        assert served["weights"] == pytest.approx(weights)


def test_hybrid_with_one_weight_ranks_like_that_model(client, prepared, item_ids):
    body = user_body(prepared, item_ids, 5, explain=False)
    for name in ("sae", "rbm"):
        alone = client.recommend("hybrid", {**body, "weights": {name: 1}})
        assert ids(alone) == ids(client.recommend(name, body))


# -- batching and bad input ----------------------------------------------------------------------
def post(torchserve, model: str, data: bytes, content_type: str | None = "application/json"):
    headers = {"Content-Type": content_type} if content_type else {}
    return requests.post(
        f"{torchserve.inference_url}/predictions/{model}", data=data, headers=headers, timeout=60
    )


def fire_together(torchserve, model: str, requests_: list[tuple[bytes, str | None]]):
    with ThreadPoolExecutor(len(requests_)) as pool:
        futures = [pool.submit(post, torchserve, model, d, c) for d, c in requests_]
        return [future.result() for future in futures]


def test_concurrent_requests_share_a_forward_pass_and_get_their_own_answers(
    torchserve, client, batched_model, prepared, item_ids
):
    bodies = [user_body(prepared, item_ids, row, explain=False) for row in range(8)]
    expected = [ids(client.recommend("sae", body)) for body in bodies]
    replies = fire_together(
        torchserve, batched_model, [(json.dumps(b).encode(), None) for b in bodies]
    )
    assert [r.status_code for r in replies] == [200] * len(bodies)
    assert [ids(r.json()) for r in replies] == expected
    assert max(int(r.headers["X-Batch-Size"]) for r in replies) > 1


def _json(value) -> bytes:
    return json.dumps(value).encode()


OK_BODY = _json({"ratings": {"1": 5, "50": 4}, "k": 3})
# (case, body, content type, HTTP status, error type, text the message must contain)
BAD_INPUT = [
    ("not JSON", b'{"ratings": {"1": 5', "application/json", 400, "invalid_json", "not valid JSON"),
    ("wrong content type", OK_BODY, "text/plain", 415, "unsupported_media_type", "text/plain"),
    ("ratings not an object", _json({"ratings": [1, 5]}), "application/json", 400,
     "invalid_ratings", "not a list"),
    ("unknown movie ids", _json({"ratings": {"1": 5, "999999": 4}}), "application/json", 422,
     "unknown_movie_ids", "999999"),
    ("rating above 5", _json({"ratings": {"1": 7}}), "application/json", 422, "invalid_rating",
     "1=7"),
    ("rating below 1", _json({"ratings": {"1": 0.5}}), "application/json", 422,
     "invalid_rating", "1=0.5"),
    ("rating not a number", _json({"ratings": {"1": "five"}}), "application/json", 422,
     "invalid_rating", '1="five"'),
    ("k zero", _json({"ratings": {}, "k": 0}), "application/json", 422, "invalid_k", "got 0"),
    ("k negative", _json({"ratings": {}, "k": -1}), "application/json", 422, "invalid_k", "-1"),
    ("k absurd", _json({"ratings": {}, "k": 10**9}), "application/json", 422, "invalid_k",
     "1000000000"),
    ("too many users", _json({"users": [{"ratings": {}}] * (rec.MAX_USERS + 1)}),
     "application/json", 422, "too_many_users", str(rec.MAX_USERS + 1)),
    ("oversized body", _json({"ratings": {}, "pad": "x" * (rec.MAX_BODY_BYTES + 1)}),
     "application/json", 413, "body_too_large", str(rec.MAX_BODY_BYTES)),
    ("unknown fields", _json({"ratings": {}, "colour": "red", "topk": 3}), "application/json",
     400, "unknown_fields", "colour, topk"),
    ("body not an object", _json([1, 2, 3]), "application/json", 400, "invalid_body", "a list"),
    ("missing ratings", _json({"k": 3}), "application/json", 400, "missing_field", "ratings"),
    ("flag not boolean", _json({"ratings": {}, "exclude_rated": "no"}), "application/json", 400,
     "invalid_flag", "exclude_rated"),
]  # fmt: skip


def test_bad_input_table_errors_each_request_alone_in_a_shared_batch(torchserve, batched_model):
    cases = [(body, ctype) for _, body, ctype, *_ in BAD_INPUT]
    good = [(OK_BODY, "application/json")] * 2
    replies = fire_together(torchserve, batched_model, cases + good)
    for (name, _, _, status, kind, needle), reply in zip(BAD_INPUT, replies, strict=False):
        error = reply.json()
        assert (name, reply.status_code, error["type"]) == (name, status, kind)
        assert error["code"] == status and needle in error["message"], (name, error)
    for reply in replies[len(cases) :]:
        assert reply.status_code == 200 and len(reply.json()["recommendations"]) == 3
        assert int(reply.headers["X-Batch-Size"]) > 1  # answered in a batch with bad requests


def test_hybrid_rejects_bad_weights(torchserve):
    reply = post(torchserve, "hybrid", _json({"ratings": {"1": 5}, "weights": {"knn": 1}}))
    assert reply.status_code == 422 and "knn" in reply.json()["message"]


def test_a_body_over_the_frontend_limit_is_refused_and_the_server_goes_on(torchserve, client):
    huge = b'{"ratings": {}, "pad": "' + b"x" * (3 << 20) + b'"}'
    assert post(torchserve, "sae", huge).status_code == 413
    assert client.recommend("sae", {"ratings": {}})["strategy"] == "popularity"


# -- management, metrics, gRPC -------------------------------------------------------------------
def wait_for_ready_workers(client, name: str, count: int) -> int:
    """READY workers of ``name`` once there are ``count`` (a loaded machine starts them slowly)."""

    def ready_of_all() -> tuple[int, int]:
        workers = client.describe(name)[0]["workers"]
        return sum(w["status"] == "READY" for w in workers), len(workers)

    ready, _ = poll(ready_of_all, lambda seen: seen == (count, count), WORKERS_TIMEOUT_S, POLL_S)
    return ready


def test_management_api_registers_scales_describes_and_unregisters(client):
    name = "sae_managed"
    client.register("sae.mar", name, workers=1, batch_size=4, max_batch_delay=7)
    (described,) = client.describe(name)
    assert (described["batchSize"], described["maxBatchDelay"]) == (4, 7)
    assert [w["status"] for w in described["workers"]] == ["READY"]
    client.scale(name, 2)
    assert wait_for_ready_workers(client, name, 2) == 2
    assert client.recommend(name, {"ratings": {"1": 5}, "k": 2})["model"] == "sae"
    assert name in {m["modelName"] for m in client.list_models()["models"]}
    client.unregister(name)
    with pytest.raises(TorchServeError) as missing:
        client.describe(name)
    assert missing.value.status == 404


def test_metrics_endpoint_serves_prometheus_text(client):
    client.recommend("rbm", {"ratings": {"1": 5}, "k": 2})
    families = {f.name: f for f in text_string_to_metric_families(client.metrics())}
    requests_family = (
        families.get("ts_inference_requests") or families["ts_inference_requests_total"]
    )
    by_model = {s.labels["model_name"]: s.value for s in requests_family.samples}
    assert by_model["rbm"] >= 1
    assert "ts_queue_latency_microseconds" in families


def test_workers_write_no_log_line_per_request_and_still_send_metrics(torchserve, client):
    for _ in range(3):
        client.recommend("sae", {"ratings": {"1": 5}, "k": 2})
    model_log = (torchserve.server.log_dir / "model_log.log").read_text(encoding="utf-8")
    assert " ready: " in model_log  # the handler's own INFO lines still arrive
    assert "Backend received inference" not in model_log
    metrics = torchserve.metrics_once_reported("PredictionTime", "sae")
    assert "sae" in models_reporting(metrics, "PredictionTime")


def test_grpc_inference_matches_http(torchserve, client, prepared, item_ids):
    grpc_client = TorchServeGrpcClient(torchserve.grpc_target)
    try:
        assert "Healthy" in grpc_client.ping()
        body = user_body(prepared, item_ids, 6)
        assert ids(grpc_client.recommend("hybrid", body)) == ids(client.recommend("hybrid", body))
        with pytest.raises(TorchServeError) as bad:
            grpc_client.recommend("sae", {"ratings": {"999999": 5}})
        assert bad.value.status == 422 and "999999" in str(bad.value)
    finally:
        grpc_client.close()


# -- recovery (last: it restarts a worker of the shared server) -----------------------------------
def test_a_killed_worker_is_restarted_and_requests_succeed_again(client):
    (before,) = client.describe("rbm")
    killed = int(before["workers"][0]["pid"])
    os.kill(killed, signal.SIGKILL)

    def answer_or_none() -> dict | None:
        try:
            return client.recommend("rbm", {"ratings": {"1": 5}, "k": 2})
        except TorchServeError:
            return None

    answer = poll(answer_or_none, lambda seen: seen is not None, RECOVERY_TIMEOUT_S, POLL_S)
    assert answer is not None and answer["model"] == "rbm"
    workers = client.describe("rbm")[0]["workers"]
    assert killed not in {int(w["pid"]) for w in workers if w.get("pid")}
