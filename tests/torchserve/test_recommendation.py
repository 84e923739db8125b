"""The handlers' domain logic, without a server: parsing, errors, ranking, explanations."""

from __future__ import annotations

import json

import pytest
import torch

from handlers import recommendation as rec

ITEM_IDS = [10, 20, 30, 40, 50]
POPULARITY = [5.0, 50.0, 1.0, 50.0, 7.0]


@pytest.fixture
def catalogue() -> rec.Catalogue:
    movies = {i: {"movie_id": i, "title": f"Movie {i}", "year": 1990 + i // 10, "genres": ["Drama"]}
              for i in ITEM_IDS}  # fmt: skip
    return rec.Catalogue(ITEM_IDS, movies, torch.tensor(POPULARITY))


def error_of(call) -> rec.RequestError:
    with pytest.raises(rec.RequestError) as caught:
        call()
    return caught.value


# -- decoding and parsing -----------------------------------------------------------------------
def test_decode_body_accepts_json_bytes_and_charset_suffix():
    assert rec.decode_body(b'{"ratings": {}}', "application/json; charset=utf-8") == {"ratings": {}}
    assert rec.decode_body(b'{"ratings": {}}', None) == {"ratings": {}}  # gRPC: no content type


@pytest.mark.parametrize(
    ("body", "content_type", "code", "status"),
    [
        (b"{}", "text/plain", "unsupported_media_type", 415),
        (b"{not json", "application/json", "invalid_json", 400),
        (b"\xff\xfe", "application/json", "invalid_json", 400),
        (b" " * (rec.MAX_BODY_BYTES + 1), "application/json", "body_too_large", 413),
    ],
)
def test_decode_body_errors(body, content_type, code, status):
    error = error_of(lambda: rec.decode_body(body, content_type))
    assert (error.code, error.status) == (code, status)
    assert error.to_dict() == {"code": status, "type": code, "message": error.message}


def test_parse_single_user_maps_movie_ids_to_columns(catalogue):
    parsed = rec.parse_request({"ratings": {"30": 4, "10": 2.5}, "k": 3}, catalogue)
    assert not parsed.is_batch
    (user,) = parsed.users
    assert user.ratings == {2: 4.0, 0: 2.5}
    assert (user.k, user.exclude_rated, user.explain, user.weights) == (3, True, True, None)


def test_parse_batch_applies_shared_defaults_and_per_user_overrides(catalogue):
    body = {"users": [{"ratings": {"10": 5}}, {"ratings": {}, "k": 2}], "k": 4, "explain": False}
    parsed = rec.parse_request(body, catalogue)
    assert parsed.is_batch
    assert [(u.k, u.explain) for u in parsed.users] == [(4, False), (2, False)]


@pytest.mark.parametrize(
    ("body", "code", "needle"),
    [
        ([1, 2], "invalid_body", "JSON object"),
        ({}, "missing_field", "ratings is required"),
        ({"ratings": {}, "users": []}, "missing_field", "either"),
        ({"ratings": [1, 2]}, "invalid_ratings", "not a list"),
        ({"ratings": {"99": 4, "abc": 3, "10": 4}}, "unknown_movie_ids", "99, abc"),
        ({"ratings": {"10": 6}}, "invalid_rating", "10=6"),
        ({"ratings": {"10": 0}}, "invalid_rating", "10=0"),
        ({"ratings": {"10": "five"}}, "invalid_rating", '10="five"'),
        ({"ratings": {"10": True}}, "invalid_rating", "10=true"),
        ({"ratings": {}, "k": 0}, "invalid_k", "got 0"),
        ({"ratings": {}, "k": -3}, "invalid_k", "got -3"),
        ({"ratings": {}, "k": rec.MAX_K + 1}, "invalid_k", str(rec.MAX_K + 1)),
        ({"ratings": {}, "k": 2.5}, "invalid_k", "2.5"),
        ({"ratings": {}, "k": "10"}, "invalid_k", "'10'"),
        ({"ratings": {}, "explain": "yes"}, "invalid_flag", "explain"),
        ({"ratings": {}, "colour": 1, "size": 2}, "unknown_fields", "colour, size"),
        ({"ratings": {}, "weights": {"sae": 1}}, "unknown_fields", "weights"),
        ({"users": {"a": 1}}, "invalid_body", "users must be a list"),
        ({"users": [3]}, "invalid_body", "users[0]"),
        ({"users": [{"ratings": {}, "oops": 1}]}, "unknown_fields", "users[0]: oops"),
        ({"users": [{"ratings": {}}] * (rec.MAX_USERS + 1)}, "too_many_users", "limit"),
    ],
)
def test_parse_errors_name_the_problem(catalogue, body, code, needle):
    error = error_of(lambda: rec.parse_request(body, catalogue))
    assert error.code == code
    assert error.status == rec.ERRORS[code][0]
    assert needle in error.message


def test_every_error_code_has_a_4xx_or_500_status():
    assert all(400 <= status < 500 or status == 500 for status, _ in rec.ERRORS.values())


def test_weights_are_normalised_and_validated(catalogue):
    names = ("sae", "rbm")
    parse = lambda w: rec.parse_request({"ratings": {}, "weights": w}, catalogue, names)  # noqa: E731
    assert parse({"sae": 3, "rbm": 1}).users[0].weights == {"sae": 0.75, "rbm": 0.25}
    assert parse({"rbm": 2}).users[0].weights == {"sae": 0.0, "rbm": 1.0}
    assert parse(None).users[0].weights == {"sae": 0.5, "rbm": 0.5}
    for bad in ({"knn": 1}, {"sae": -1}, {"sae": 0, "rbm": 0}, [0.5, 0.5], {"sae": "x"}):
        assert error_of(lambda bad=bad: parse(bad)).code == "invalid_weights"


# -- ranking ------------------------------------------------------------------------------------
def test_ratings_matrix_and_candidate_mask(catalogue):
    users = [rec.UserQuery({0: 5.0, 3: 2.0}), rec.UserQuery({1: 4.0}, exclude_rated=False)]
    matrix = rec.ratings_matrix(users, catalogue.n_items)
    assert matrix.tolist() == [[5, 0, 0, 2, 0], [0, 4, 0, 0, 0]]
    mask = rec.candidate_mask(users, catalogue.n_items)
    assert mask.tolist() == [[False, True, True, False, True], [True] * 5]


def test_top_k_excludes_masked_and_breaks_ties_by_column():
    scores = torch.tensor([5.0, 5.0, 1.0, 5.0, 3.0])
    mask = torch.tensor([True, True, True, False, True])
    assert rec.top_k(scores, mask, 3) == [0, 1, 4]
    assert rec.top_k(scores, mask, 10) == [0, 1, 4, 2]  # k beyond the candidates: all of them


def test_minmax_over_candidates_ignores_excluded_columns():
    scores = torch.tensor([[100.0, 2.0, 4.0, 3.0]])
    mask = torch.tensor([[False, True, True, True]])
    scaled = rec.minmax_over_candidates(scores, mask)
    assert scaled[0, 1:].tolist() == pytest.approx([0.0, 1.0, 0.5])


def test_hybrid_mix_follows_the_weights():
    mask = torch.ones(2, 3, dtype=torch.bool)
    scores = {
        "sae": torch.tensor([[1.0, 5.0, 3.0]] * 2),
        "rbm": torch.tensor([[0.9, 0.1, 0.5]] * 2),
    }
    mixed = rec.hybrid_scores(scores, mask, [{"sae": 1.0, "rbm": 0.0}, {"sae": 0.0, "rbm": 1.0}])
    assert rec.top_k(mixed[0], mask[0], 3) == [1, 2, 0]
    assert rec.top_k(mixed[1], mask[1], 3) == [0, 2, 1]


def test_because_names_the_most_similar_liked_movies():
    vectors = torch.nn.functional.normalize(
        torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1], [0.1, 1.0]])
    )
    user = rec.UserQuery({0: 5.0, 1: 4.0, 3: 2.0})  # column 3 is not liked (< 4)
    assert rec.because(vectors, [2], user) == [[0, 1]]
    assert rec.because(vectors, [2], rec.UserQuery({3: 3.0})) == [[]]


def test_popularity_fallback_is_labelled(catalogue):
    answer = rec.popular_answer(catalogue, rec.UserQuery({}, k=3))
    assert answer["strategy"] == rec.STRATEGY_POPULARITY
    assert [item["movie_id"] for item in answer["recommendations"]] == [20, 40, 50]


def test_model_answer_and_envelope(catalogue):
    user = rec.UserQuery({0: 5.0}, k=2)
    scores = torch.tensor([5.0, 4.5, 1.0, 2.0, 3.0])
    answer = rec.model_answer(catalogue, user, [1, 4], scores, scores, [[0], []])
    request = rec.ParsedRequest([user], is_batch=False)
    body = json.loads(rec.to_json(rec.envelope("sae", "1.0", request, [answer])))
    assert body["model"] == "sae" and body["strategy"] == rec.STRATEGY_MODEL
    first = body["recommendations"][0]
    assert first["movie_id"] == 20 and first["because"] == [10]
    assert first["predicted_rating"] == pytest.approx(4.5)
    batch = rec.envelope("sae", "1.0", rec.ParsedRequest([user], True), [answer])
    assert len(batch["users"]) == 1
