"""The RBM: encodings, CD-k moving the free energy the right way, scores, export, checkpoints."""

from __future__ import annotations

import pytest
import torch

from training.config import EarlyStoppingParams, RBMParams
from training.models.rbm import RBMNet, RBMRecommender

N_USERS, N_ITEMS = 64, 12
ENCODINGS = ("implicit", "liked")


def _taste_groups(seed: int = 0) -> torch.Tensor:
    """Two groups of users, each rating (mostly highly) its own half of the catalogue."""
    generator = torch.Generator().manual_seed(seed)
    ratings = torch.zeros(N_USERS, N_ITEMS)
    half = N_ITEMS // 2
    for user in range(N_USERS):
        start = 0 if user % 2 == 0 else half
        rated = start + torch.randperm(half, generator=generator)[: half - 1]
        ratings[user, rated] = torch.randint(3, 6, (half - 1,), generator=generator).float()
    ratings[0, half] = 1.0  # one disliked item, so the "liked" encoding sees a 0
    return ratings


def _recommender(encoding: str, **overrides) -> RBMRecommender:
    params = RBMParams(
        n_hidden=16, encoding=encoding, lr=0.1, momentum=0.5, batch_size=16, **overrides
    )
    recommender = RBMRecommender(params, N_ITEMS, threshold=3)
    recommender.fit_setup(torch.zeros(1, N_ITEMS), torch.Generator().manual_seed(0))
    return recommender


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_scores_are_probabilities_of_the_input_shape(encoding):
    torch.manual_seed(0)
    net = RBMNet(N_ITEMS, RBMParams(n_hidden=8, encoding=encoding))
    scores = net(_taste_groups())
    assert scores.shape == (N_USERS, N_ITEMS)
    assert scores.dtype == torch.float32
    assert torch.all((scores > 0) & (scores < 1))


def test_the_two_encodings_read_ratings_differently():
    ratings = torch.tensor([[0.0, 1.0, 2.0, 3.0, 5.0]])
    implicit = RBMNet(5, RBMParams(n_hidden=2, encoding="implicit")).encode(ratings)
    liked = RBMNet(5, RBMParams(n_hidden=2, encoding="liked"), threshold=3).encode(ratings)
    assert implicit.tolist() == [[0.0, 1.0, 1.0, 1.0, 1.0]]
    assert liked.tolist() == [[-1.0, 0.0, 0.0, 1.0, 1.0]]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_cd_steps_lower_the_free_energy_of_data_relative_to_noise(encoding):
    torch.manual_seed(0)
    recommender = _recommender(encoding)
    net = recommender.model
    data = _taste_groups()
    encoded = net.encode(data)
    visible = encoded.clamp(min=0.0)
    if encoding == "implicit":
        # The same number of items per user, scattered at random: unlike either taste group.
        noise = visible[:, torch.randperm(N_ITEMS)]
    else:
        # The same items rated, liked or not at random: unlike these users, who like what they see.
        coin_flips = torch.Generator().manual_seed(2)
        coin = torch.bernoulli(torch.full_like(visible, 0.5), generator=coin_flips)
        noise = coin * (encoded >= 0)

    @torch.no_grad()
    def gap() -> float:
        return float(net.free_energy(visible).mean() - net.free_energy(noise).mean())

    before = gap()
    generator = torch.Generator().manual_seed(1)
    errors = [recommender.cd_step(data, generator) for _ in range(100)]
    assert gap() < before - 1.0
    assert sum(errors[-10:]) < sum(errors[:10])  # reconstruction error drops


def test_liked_encoding_holds_unknown_items_fixed():
    """An item nobody rated gets no gradient: its visible bias and weights stay where they were."""
    torch.manual_seed(0)
    recommender = _recommender("liked")
    net = recommender.model
    data = _taste_groups()
    data[:, -1] = 0.0
    weight_before, bias_before = net.weight[:, -1].clone(), net.visible_bias[-1].clone()
    generator = torch.Generator().manual_seed(1)
    for _ in range(5):
        recommender.cd_step(data, generator)
    assert torch.equal(net.visible_bias[-1], bias_before)
    assert torch.equal(net.weight[:, -1], weight_before)
    assert not torch.equal(net.visible_bias[:-1], torch.zeros(N_ITEMS - 1))


def test_training_recommends_the_users_own_taste_group():
    torch.manual_seed(0)
    params = RBMParams(n_hidden=16, lr=0.1, momentum=0.5, batch_size=16)
    recommender = RBMRecommender(params, N_ITEMS)
    data = _taste_groups()
    recommender.train(data, data, 30, EarlyStoppingParams(patience=30), progress=False)
    scores = recommender.predict(data)
    half = N_ITEMS // 2
    first, second = scores[:, :half].mean(dim=1), scores[:, half:].mean(dim=1)
    in_first_group = torch.arange(N_USERS) % 2 == 0
    own = torch.where(in_first_group, first, second)
    other = torch.where(in_first_group, second, first)
    assert torch.all(own > other)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_torchscript_export_gives_identical_scores(encoding, tmp_path):
    torch.manual_seed(0)
    net = RBMNet(N_ITEMS, RBMParams(n_hidden=8, encoding=encoding)).eval()
    ratings = _taste_groups()
    traced = torch.jit.trace(net, ratings[:2])
    traced.save(tmp_path / "rbm.ts")
    loaded = torch.jit.load(tmp_path / "rbm.ts")
    assert torch.equal(loaded(ratings), net(ratings))  # any batch size, not just the traced one


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_checkpoint_round_trip_gives_identical_scores(encoding, tmp_path):
    recommender = _recommender(encoding)
    recommender.cd_step(_taste_groups(), torch.Generator().manual_seed(0))
    path = recommender.save_model(tmp_path / "rbm.pt")
    loaded = RBMRecommender.load_model(path)
    ratings = _taste_groups(seed=3)
    assert loaded.model.encoding == encoding
    assert torch.equal(loaded.predict(ratings), recommender.predict(ratings))
