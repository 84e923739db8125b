"""The JSON API: token issuing and checking, the response contract, the bad-input table, rate
limiting, gzip and body limits."""

from __future__ import annotations

import gzip
import json
import time

import jwt
import pytest

from tests.fixtures.web import TEST_API_KEY, TEST_SECRET
from web.auth import issue_token

RATINGS = {"50": 5, "181": 5, "172": 4, "1": 4, "118": 2}


@pytest.fixture
def token() -> str:
    return issue_token(TEST_SECRET, "tests", 600)


@pytest.fixture
def auth(token) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_token_from_an_api_key_works_on_the_api(web_client):
    response = web_client.post("/api/v1/token", json={"api_key": TEST_API_KEY})
    assert response.status_code == 200
    body = response.json
    assert body["token_type"] == "bearer" and body["expires_in"] > 0
    answer = web_client.post(
        "/api/v1/recommend/sae", json={"ratings": RATINGS, "k": 3},
        headers={"Authorization": f"Bearer {body['access_token']}"},
    )  # fmt: skip
    assert answer.status_code == 200
    assert web_client.post("/api/v1/token", json={"api_key": "nope"}).status_code == 401


def test_token_from_the_flask_cli(web_app, web_client):
    result = web_app.test_cli_runner().invoke(args=["token", "create", "--subject", "ci"])
    assert result.exit_code == 0, result.output
    claims = jwt.decode(result.output.strip(), TEST_SECRET, algorithms=["HS256"],
                        audience="movierec-api")  # fmt: skip
    assert claims["sub"] == "ci"
    headers = {"Authorization": f"Bearer {result.output.strip()}"}
    assert (
        web_client.post("/api/v1/compare", json={"ratings": {}}, headers=headers).status_code == 200
    )


@pytest.mark.parametrize("model", ["sae", "rbm", "hybrid"])
def test_recommend_contract(web_client, auth, model):
    response = web_client.post(
        f"/api/v1/recommend/{model}", json={"ratings": RATINGS, "k": 5}, headers=auth
    )
    assert response.status_code == 200
    body = response.json
    assert body["model"] == model and body["version"] and body["fallback"] is None
    assert response.headers["X-Request-ID"] == body["request_id"]
    items = body["recommendations"]
    assert len(items) == 5
    assert not {str(item["movie_id"]) for item in items} & set(RATINGS)
    for item in items:
        assert set(item) == {"movie_id", "title", "score", "predicted_rating", "because"}
        assert set(map(str, item["because"])) <= set(RATINGS)
    assert (items[0]["predicted_rating"] is not None) == (model in ("sae", "hybrid"))
    scores = [item["score"] for item in items]
    assert scores == sorted(scores, reverse=True)


def test_request_id_is_kept(web_client, auth):
    response = web_client.post(
        "/api/v1/recommend/rbm", json={"ratings": RATINGS},
        headers={**auth, "X-Request-ID": "trace-42"},
    )  # fmt: skip
    assert response.json["request_id"] == "trace-42"
    assert response.headers["X-Request-ID"] == "trace-42"


def test_hybrid_weights_change_the_answer(web_client, auth):
    def top(weights):
        body = {"ratings": RATINGS, "k": 10, "weights": weights}
        response = web_client.post("/api/v1/recommend/hybrid", json=body, headers=auth)
        return [item["movie_id"] for item in response.json["recommendations"]]

    assert top({"sae": 1.0, "rbm": 0.0}) != top({"sae": 0.0, "rbm": 1.0})


def test_batch_compare_feedback_and_health(web_client, auth):
    batch = web_client.post(
        "/api/v1/recommend/batch",
        json={"model": "sae", "users": [{"ratings": RATINGS, "k": 2, "user_id": "u1"},
                                        {"ratings": {}, "k": 3}]},
        headers=auth,
    )  # fmt: skip
    assert batch.status_code == 200
    first, second = batch.json["results"]
    assert len(first["recommendations"]) == 2 and first["arm"] in ("sae", "rbm")
    assert second["fallback"] == "popularity" and second["arm"] is None
    compare = web_client.post("/api/v1/compare", json={"ratings": RATINGS, "k": 4}, headers=auth)
    assert set(compare.json["results"]) == {"sae", "rbm", "hybrid"}
    stored = web_client.post(
        "/api/v1/feedback",
        json={"user_id": "u1", "movie_id": 98, "model": "sae", "kind": "watched"},
        headers=auth,
    )  # fmt: skip
    assert stored.status_code == 201 and stored.json["stored"] is True
    health = web_client.get("/api/v1/health?models=1")
    assert health.status_code == 200
    assert health.json["database"] == "ok"
    assert health.json["models"] == {"sae": "ready", "rbm": "ready", "hybrid": "ready"}


def _forged() -> str:
    return issue_token("another-secret-0123456789-0123456789", "mallory", 600)


def _expired() -> str:
    return issue_token(TEST_SECRET, "tests", 60, now=time.time() - 3600)


VALID = {"ratings": RATINGS}


@pytest.mark.parametrize(
    ("case", "path", "body", "headers", "status", "message"),
    [
        ("no token", "/api/v1/recommend/sae", VALID, {}, 401, "missing Authorization"),
        ("not bearer", "/api/v1/recommend/sae", VALID, {"Authorization": "Basic abc"}, 401,
         "Bearer <token>"),
        ("garbage token", "/api/v1/recommend/sae", VALID, {"Authorization": "Bearer abc"}, 401,
         "invalid token"),
        ("forged token", "/api/v1/recommend/sae", VALID, "forged", 401, "signature"),
        ("expired token", "/api/v1/recommend/sae", VALID, "expired", 401, "expired"),
        ("malformed JSON", "/api/v1/recommend/sae", b'{"ratings": ', None, 400, "malformed JSON"),
        ("not JSON content", "/api/v1/recommend/sae", "text", None, 415, "application/json"),
        ("body not an object", "/api/v1/recommend/sae", [1, 2], None, 422, "JSON object"),
        ("unknown movie", "/api/v1/recommend/sae", {"ratings": {"999999": 4}}, None, 422,
         "unknown movie id(s): 999999"),
        ("movie id not a number", "/api/v1/recommend/sae", {"ratings": {"abc": 4}}, None, 422,
         "not a positive integer"),
        ("rating above 5", "/api/v1/recommend/sae", {"ratings": {"50": 6}}, None, 422,
         "less than or equal to 5"),
        ("rating below 1", "/api/v1/recommend/sae", {"ratings": {"50": 0}}, None, 422,
         "greater than or equal to 1"),
        ("rating not a number", "/api/v1/recommend/sae", {"ratings": {"50": "five"}}, None, 422,
         "ratings.50"),
        ("half star", "/api/v1/recommend/sae", {"ratings": {"50": 3.5}}, None, 422,
         "whole number"),
        ("k zero", "/api/v1/recommend/sae", {"ratings": {}, "k": 0}, None, 422, "k"),
        ("k huge", "/api/v1/recommend/sae", {"ratings": {}, "k": 10**6}, None, 422, "100"),
        ("unknown field", "/api/v1/recommend/sae", {"ratings": {}, "kk": 3}, None, 422,
         "kk: unknown field"),
        ("unknown model", "/api/v1/recommend/knn", VALID, None, 422, "unknown model"),
        ("weights on sae", "/api/v1/recommend/sae", {"ratings": {}, "weights": {"sae": 1,
         "rbm": 0}}, None, 422, "only the hybrid"),
        ("zero weights", "/api/v1/recommend/hybrid", {"ratings": {}, "weights": {"sae": 0,
         "rbm": 0}}, None, 422, "both be zero"),
        ("empty batch", "/api/v1/recommend/batch", {"model": "sae", "users": []}, None, 422,
         "users"),
        ("batch bad movie", "/api/v1/recommend/batch",
         {"model": "sae", "users": [{"ratings": {"999999": 3}}]}, None, 422, "users.0.ratings"),
        ("feedback kind", "/api/v1/feedback",
         {"user_id": "u", "movie_id": 50, "model": "sae", "kind": "love"}, None, 422, "kind"),
        ("feedback movie", "/api/v1/feedback",
         {"user_id": "u", "movie_id": 999999, "model": "sae", "kind": "up"}, None, 422,
         "unknown movie"),
        ("feedback missing", "/api/v1/feedback", {"movie_id": 50}, None, 422,
         "required field missing"),
        ("token no key", "/api/v1/token", {}, None, 422, "api_key"),
    ],
)  # fmt: skip
def test_bad_api_input_table(web_client, auth, case, path, body, headers, status, message):
    if headers is None:
        headers = auth
    elif headers == "forged":
        headers = {"Authorization": f"Bearer {_forged()}"}
    elif headers == "expired":
        headers = {"Authorization": f"Bearer {_expired()}"}
    if isinstance(body, bytes):
        response = web_client.post(path, data=body, headers=headers,
                                   content_type="application/json")  # fmt: skip
    elif isinstance(body, str):
        response = web_client.post(path, data=body, headers=headers, content_type="text/plain")
    else:
        response = web_client.post(path, json=body, headers=headers)
    assert response.status_code == status, (case, response.text)
    assert response.is_json, case
    assert message in response.json["error"], (case, response.json)


def test_oversize_body_is_413(web_client, auth):
    huge = {"ratings": {str(movie): 3 for movie in range(1, 1683)}, "pad": "x" * 70_000}
    response = web_client.post("/api/v1/recommend/sae", json=huge, headers=auth)
    assert response.status_code == 413
    assert "too large" in response.json["error"]


def test_rate_limit_answers_429(web_app_factory, auth):
    client = web_app_factory(rate_limit="3 per minute").test_client()
    answers = [
        client.post("/api/v1/recommend/rbm", json={"ratings": {}, "k": 1}, headers=auth)
        for _ in range(4)
    ]
    assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
    assert "rate limit exceeded" in answers[-1].json["error"]
    assert client.get("/api/v1/health").status_code == 200  # probes are never limited


def test_large_responses_are_gzipped(web_client, auth):
    body = {"ratings": RATINGS, "k": 100}
    response = web_client.post(
        "/api/v1/recommend/sae", json=body, headers={**auth, "Accept-Encoding": "gzip"}
    )
    assert response.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in response.headers["Vary"]
    payload = json.loads(gzip.decompress(response.data))
    assert len(payload["recommendations"]) == 100
    small = web_client.get("/api/v1/health", headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in small.headers
    plain = web_client.post("/api/v1/recommend/sae", json=body, headers=auth)
    assert "Content-Encoding" not in plain.headers and plain.json["recommendations"]
