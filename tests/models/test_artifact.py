"""The serving artifact: item vectors from the trained weights, one file per served model that
round-trips with weights_only loading and refuses what is not an artifact."""

from __future__ import annotations

import pytest
import torch

from handlers import contract
from handlers.serving_artifact import ARTIFACT_FILE, ServingArtifact
from training.config import RBMParams, SAEParams
from training.export.artifact import build_artifacts, item_vectors
from training.models.rbm import RBMEnsemble, RBMRecommender
from training.models.sae import SAENet, SAERecommender

N_ITEMS = 7


def test_sae_item_vectors_cover_ensembles_and_implicit_input():
    params = SAEParams(hidden_layers=[4, 2], n_members=2, implicit_input=True)
    vectors = item_vectors(SAENet(N_ITEMS, params))
    # per member: 2 input blocks x 4 hidden + 4 decoder inputs
    assert vectors.shape == (N_ITEMS, 2 * (2 * 4 + 4))
    assert torch.allclose(vectors.norm(dim=1), torch.ones(N_ITEMS), atol=1e-5)


def test_rbm_item_vectors_are_each_films_weights():
    rbm = RBMEnsemble(N_ITEMS, RBMParams(n_hidden=3, n_members=1))
    vectors = item_vectors(rbm)
    weight = rbm.members[0].weight.detach()
    expected = torch.nn.functional.cosine_similarity(weight[:, 0], weight[:, 1], dim=0)
    assert float(vectors[0] @ vectors[1]) == pytest.approx(float(expected), abs=1e-5)
    two = item_vectors(RBMEnsemble(N_ITEMS, RBMParams(n_hidden=3, n_members=2)))
    assert two.shape == (N_ITEMS, 6)


def test_item_vectors_refuse_other_modules():
    with pytest.raises(TypeError, match="Linear"):
        item_vectors(torch.nn.Linear(2, 2))


class _Prepared:
    """What build_artifacts reads of a prepared dataset."""

    def __init__(self, item_ids: list[int]) -> None:
        self.metadata = {"item_ids": item_ids}
        self.movies = [
            {"movie_id": i, "title": f"film {i}", "year": 1990, "genres": []} for i in item_ids
        ]
        self.train = torch.zeros(3, len(item_ids))
        self.train[0, :2] = 4.0
        self.train[1, 0] = 5.0


def _recommenders(item_ids, tmp_path):
    found, checkpoints = {}, {}
    for name, recommender in (
        ("sae", SAERecommender(SAEParams(hidden_layers=[4]), N_ITEMS)),
        ("rbm", RBMRecommender(RBMParams(n_hidden=3, n_members=2), N_ITEMS)),
    ):
        recommender.extra = {"item_ids": item_ids, "dataset": "ml-100k", "test_metrics": {}}
        checkpoints[name] = recommender.save_model(tmp_path / f"{name}.pt")
        found[name] = recommender
    return found, checkpoints


def test_every_served_model_gets_an_artifact_that_round_trips(tmp_path):
    item_ids = list(range(10, 10 + N_ITEMS))
    recommenders, checkpoints = _recommenders(item_ids, tmp_path)
    artifacts = build_artifacts(recommenders, checkpoints, _Prepared(item_ids), "2.0")
    assert set(artifacts) == set(contract.SERVED_MODELS)
    hybrid = artifacts[contract.HYBRID]
    assert hybrid.popularity.tolist() == [2.0, 1.0, 0, 0, 0, 0, 0]
    # The hybrid explains with both parts' vectors side by side: its cosines are the mean of
    # the parts' (compacted to at most n_items dimensions, dot products kept).
    parts = [artifacts[p].vectors for p in contract.HYBRID_PARTS]
    mean_cosines = sum(v @ v.t() for v in parts) / len(parts)
    assert hybrid.vectors.shape[0] == N_ITEMS and hybrid.vectors.shape[1] <= N_ITEMS
    assert torch.allclose(hybrid.vectors @ hybrid.vectors.t(), mean_cosines, atol=1e-5)
    assert set(hybrid.metadata["parts"]) == set(contract.HYBRID_PARTS)
    path = hybrid.save(tmp_path / "hybrid" / ARTIFACT_FILE)
    loaded = ServingArtifact.load(path)
    assert loaded.version == "2.0" and loaded.item_ids == item_ids
    assert torch.equal(loaded.vectors, hybrid.vectors)
    assert loaded.movies == hybrid.movies and loaded.metadata == hybrid.metadata


def test_models_of_another_catalogue_are_refused(tmp_path):
    recommenders, checkpoints = _recommenders(list(range(N_ITEMS)), tmp_path)
    with pytest.raises(ValueError, match="item ids differ"):
        build_artifacts(recommenders, checkpoints, _Prepared(list(range(1, N_ITEMS + 1))), "1")


def test_a_file_that_is_not_an_artifact_is_refused(tmp_path):
    path = tmp_path / ARTIFACT_FILE
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="not a serving artifact"):
        ServingArtifact.load(path)
    with pytest.raises(FileNotFoundError, match="export the models"):
        ServingArtifact.load(tmp_path / "missing.pt")


def test_compacting_keeps_every_dot_product():
    from training.export.artifact import compact

    generator = torch.Generator().manual_seed(0)
    wide = torch.nn.functional.normalize(torch.randn(6, 40, generator=generator), dim=1)
    small = compact(wide)
    assert small.shape == (6, 6)
    assert torch.allclose(small @ small.t(), wide @ wide.t(), atol=1e-5)
    narrow = wide[:, :4]
    assert compact(narrow) is narrow  # already at most n_items wide
