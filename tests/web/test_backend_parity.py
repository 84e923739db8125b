"""One ranking path: TorchServe, Triton (the bundled server) and the in-process backend give the
same top-10 for the same users, with the same fields, for every served model.

TorchServe and the in-process backend run the same int8 serving form, so their lists are equal.
Triton's CPU configs serve onnxruntime's own int8 twin, whose scores move a little (export
bounds it): a list may differ from the others only where two films' scores are that close.
"""

from __future__ import annotations

import pytest

from handlers import recommendation as rec
from web.backends.base import RecommendRequest
from web.backends.inprocess import InProcessBackend
from web.backends.torchserve import TorchServeBackend
from web.backends.triton import TritonBackend

pytestmark = pytest.mark.slow

USERS = 100
K = 10
MODELS = (rec.SAE, rec.RBM, rec.HYBRID)
# How far onnxruntime's int8 graphs may move a served ranking value from the torch int8 form's,
# relative to the value (the SAE's ranking is a probability over 1,682 films, ~1e-3 each).
RELATIVE_TOLERANCE = 0.05
ABSOLUTE_TOLERANCE = 0.01  # the RBM's probabilities and the hybrid's [0, 1] mix
TIMEOUT_S = 30.0
MIN_MEAN_OVERLAP = 0.9  # share of Triton's top-10 films also in TorchServe's, mean over users


@pytest.fixture(scope="module")
def backends(torchserve, triton_server, torchserve_model_store, onnx_repo):
    found = {
        "torchserve": TorchServeBackend(torchserve.inference_url, TIMEOUT_S),
        "triton": TritonBackend(triton_server.grpc_url, TIMEOUT_S, onnx_repo),
        "inprocess": InProcessBackend(torchserve_model_store),
    }
    yield found
    for backend in found.values():
        backend.close()


@pytest.fixture(scope="module")
def queries(prepared) -> list[RecommendRequest]:
    """The first USERS test users, each with their training ratings."""
    users = (prepared.test > 0).any(dim=1).nonzero().squeeze(1)[:USERS]
    item_ids = prepared.metadata["item_ids"]
    found = []
    for user in users.tolist():
        row = prepared.train[user]
        ratings = {str(item_ids[c]): float(row[c]) for c in row.nonzero().squeeze(1).tolist()}
        found.append(RecommendRequest(ratings=ratings, k=K))
    return found


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= max(ABSOLUTE_TOLERANCE * (a <= 1.0), RELATIVE_TOLERANCE * max(a, b))


def assert_same_list(reference, other, label: str) -> None:
    """Same films in the same order, but where the reference scores the two films it would
    swap within the int8 tolerance."""
    ref_ids = [item.movie_id for item in reference.recommendations]
    ids = [item.movie_id for item in other.recommendations]
    if ids == ref_ids:
        return
    score = {item.movie_id: item.score for item in reference.recommendations}
    cut = reference.recommendations[-1].score
    for position, (expected, got) in enumerate(zip(ref_ids, ids, strict=True)):
        if expected != got:
            # A film the reference left out must have scored next to its 10th.
            got_score = score.get(got, cut)
            assert _close(score[expected], got_score), (
                f"{label}: rank {position + 1} is {got}, reference {expected} "
                f"(reference scores {score[expected]:.6g} vs {got_score:.6g})"
            )


@pytest.mark.parametrize("model", MODELS)
def test_every_backend_serves_the_same_top_10(backends, queries, model):
    overlaps = []
    for index, query in enumerate(queries):
        answers = {
            name: backend.recommend(model, query, f"parity-{model}-{index}")
            for name, backend in backends.items()
        }
        reference = answers["inprocess"]
        assert len(reference.recommendations) == K
        # The same serving form: the same lists exactly.
        torchserve_ids = [item.movie_id for item in answers["torchserve"].recommendations]
        assert torchserve_ids == [item.movie_id for item in reference.recommendations]
        assert_same_list(reference, answers["triton"], f"{model} user {index}")
        triton_ids = {item.movie_id for item in answers["triton"].recommendations}
        overlaps.append(len(triton_ids & set(torchserve_ids)) / K)
        # Every backend fills the same fields; predicted ratings where the model has them.
        shapes = {
            name: [sorted(item.to_dict()) for item in answer.recommendations]
            for name, answer in answers.items()
        }
        assert shapes["triton"] == shapes["torchserve"] == shapes["inprocess"]
        for name, answer in answers.items():
            has_ratings = [item.predicted_rating is not None for item in answer.recommendations]
            assert all(has_ratings) == (model != rec.RBM), f"{name} {model}"
        # The same item vectors explain the same list the same way.
        reasons = {
            name: [item.because for item in answers[name].recommendations]
            for name in ("torchserve", "inprocess")
        }
        assert reasons["torchserve"] == reasons["inprocess"]
    # int8 differences reorder near-ties; they rarely change which films make the list.
    assert sum(overlaps) / len(overlaps) >= MIN_MEAN_OVERLAP, overlaps
