"""The default backend against a real TorchServe: same answers as the in-process models."""

from __future__ import annotations

import pytest

from web.backends import RecommendRequest
from web.backends.inprocess import InProcessBackend
from web.backends.torchserve import TorchServeBackend
from web.config import MODEL_NAMES

pytestmark = pytest.mark.slow

RATINGS = {50: 5, 181: 5, 172: 4, 1: 4, 118: 2}


@pytest.fixture(scope="module")
def torchserve_backend(torchserve):
    backend = TorchServeBackend(torchserve.inference_url, timeout_s=10.0)
    yield backend
    backend.close()


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_torchserve_and_inprocess_agree(torchserve_backend, torchserve_model_store, model):
    local = InProcessBackend(torchserve_model_store)
    weights = {"sae": 0.5, "rbm": 0.5} if model == "hybrid" else None
    query = RecommendRequest(ratings=RATINGS, k=10, weights=weights)
    served = torchserve_backend.recommend(model, query, "parity-test")
    expected = local.recommend(model, query, "parity-test")
    assert served.model == model and served.version
    assert [item.movie_id for item in served.recommendations] == [
        item.movie_id for item in expected.recommendations
    ]
    assert [item.because for item in served.recommendations] == [
        item.because for item in expected.recommendations
    ]


def test_popularity_fallback_is_labelled(torchserve_backend):
    result = torchserve_backend.recommend("sae", RecommendRequest(ratings={}, k=5), "fallback")
    assert result.fallback == "popularity" and len(result.recommendations) == 5


def test_health_probes_every_model(torchserve_backend):
    assert torchserve_backend.health() == {model: "ready" for model in MODEL_NAMES}


def test_the_app_on_torchserve(web_app_factory, torchserve):
    app = web_app_factory(model_backend="torchserve", torchserve_url=torchserve.inference_url)
    client = app.test_client()
    for movie, stars in RATINGS.items():
        client.post("/ratings", data={"movie_id": movie, "rating": stars})
    page = client.get("/compare")
    assert page.text.count('class="rec"') == 30 and "because you rated" in page.text
    assert "not answering" not in page.text
