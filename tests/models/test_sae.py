"""The SAE: shapes, masking, learning, weight averaging, export and checkpoints."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from training.config import EarlyStoppingParams, SAEParams
from training.models.sae import MAX_RATING, MIN_RATING, SAENet, SAERecommender, masked_mse

N_USERS, N_ITEMS, RANK = 48, 30, 3
# A small model with every option on, to check they work together.
TUNED = SAEParams(
    hidden_layers=[16],
    dropout=0.2,
    input_corruption=0.2,
    optimizer="adam",
    lr=0.01,
    weight_decay=1e-4,
    implicit_input=True,
    ema_decay=0.9,
    lr_decay=0.99,
    n_members=2,
    batch_size=8,
)


def _low_rank_ratings(seed: int = 0, density: float = 0.5) -> torch.Tensor:
    """1-5 ratings from a rank-3 taste model, half of them observed: learnable structure."""
    generator = torch.Generator().manual_seed(seed)
    users = torch.randn(N_USERS, RANK, generator=generator)
    items = torch.randn(N_ITEMS, RANK, generator=generator)
    ratings = (3.0 + users @ items.t()).round().clamp(1, 5)
    observed = torch.rand(N_USERS, N_ITEMS, generator=generator) < density
    return ratings * observed


def _trained(params: SAEParams, epochs: int = 5) -> SAERecommender:
    torch.manual_seed(0)
    recommender = SAERecommender(params, N_ITEMS)
    data = _low_rank_ratings()
    recommender.train(data, data, epochs, EarlyStoppingParams(patience=epochs), progress=False)
    return recommender


def test_default_params_build_the_seed_architecture():
    params = SAEParams()
    net = SAENet(N_ITEMS, params)
    (member,) = net.members
    linear = [layer for layer in member if isinstance(layer, nn.Linear)]
    assert [(layer.in_features, layer.out_features) for layer in linear] == [
        (N_ITEMS, 20),
        (20, 10),
        (10, 20),
        (20, N_ITEMS),
    ]
    assert sum(isinstance(layer, nn.Sigmoid) for layer in member) == 3
    assert (params.optimizer, params.lr) == ("rmsprop", 0.01)


def test_implicit_input_doubles_the_first_layer():
    net = SAENet(N_ITEMS, SAEParams(hidden_layers=[8], implicit_input=True))
    assert net.members[0][0].in_features == 2 * N_ITEMS


@pytest.mark.parametrize("params", [SAEParams(), TUNED], ids=["seed", "tuned"])
def test_scores_are_ratings_of_the_input_shape(params):
    net = SAENet(N_ITEMS, params).eval()
    with torch.no_grad():
        net.members[0][-1].bias.fill_(100.0)  # even a wild network stays on the rating scale
        extremes = torch.stack([torch.zeros(N_ITEMS), torch.full((N_ITEMS,), 5.0)])
        scores = net(torch.cat([_low_rank_ratings(), extremes]))
    assert scores.shape == (N_USERS + 2, N_ITEMS)
    assert scores.dtype == torch.float32
    assert torch.all((scores >= MIN_RATING) & (scores <= MAX_RATING))


def test_masked_mse_ignores_unrated_entries():
    targets = torch.tensor([[4.0, 0.0, 2.0], [0.0, 5.0, 0.0]])
    predicted = torch.tensor([[3.0, 9.0, 2.0], [-7.0, 4.0, 100.0]], requires_grad=True)
    loss = masked_mse(predicted, targets)
    assert loss.item() == pytest.approx((1.0 + 0.0 + 1.0) / 3)
    loss.backward()
    unrated = targets == 0
    assert torch.all(predicted.grad[unrated] == 0)
    assert torch.all(predicted.grad[~unrated & (predicted != targets)] != 0)


def test_predictions_depend_on_the_users_own_ratings():
    """User-based: a new user is served by folding in their vector, so different vectors differ."""
    recommender = _trained(SAEParams(hidden_layers=[16], optimizer="adam"), epochs=3)
    data = _low_rank_ratings()
    scores = recommender.predict(data[:2])
    assert not torch.allclose(scores[0], scores[1])
    assert torch.allclose(recommender.predict(data[:1]), scores[:1], atol=1e-6)  # rows independent


@pytest.mark.parametrize("params", [SAEParams(optimizer="adam"), TUNED], ids=["seed", "tuned"])
def test_training_loss_decreases_on_a_small_synthetic_set(params):
    recommender = _trained(params, epochs=30)
    losses = recommender.history.train_loss
    assert losses[-1] < 0.7 * losses[0]
    validation = [figures["val_rmse"] for figures in recommender.history.validation]
    assert min(validation) < validation[0]


def test_members_are_separate_networks_whose_predictions_are_averaged():
    net = _trained(TUNED, epochs=2).model
    data = _low_rank_ratings()
    with torch.no_grad():
        members = net.member_predictions(data)
        scores = net(data)
    assert members.shape == (2, N_USERS, N_ITEMS)
    assert not torch.allclose(members[0], members[1])
    assert torch.allclose(scores, members.mean(dim=0).clamp(MIN_RATING, MAX_RATING))


def test_weight_averaging_keeps_the_average_as_the_model():
    recommender = SAERecommender(TUNED, N_ITEMS)
    data = _low_rank_ratings()
    generator = torch.Generator().manual_seed(0)
    recommender.fit_setup(data, generator)
    start = [p.detach().clone() for p in recommender.model.parameters()]
    recommender.train_epoch(data, generator)
    averaged = list(recommender.model.parameters())
    live = list(recommender.live.parameters())
    assert recommender.live is not recommender.model
    assert all(not torch.equal(a, b) for a, b in zip(averaged, live, strict=True))
    # After a few steps the average sits between where training started and where it is now.
    moved = [(a - s).norm() for a, s in zip(averaged, start, strict=True)]
    assert all(m > 0 for m in moved)
    assert all(
        (a - s).norm() < (b - s).norm() for a, b, s in zip(averaged, live, start, strict=True)
    )


@pytest.mark.parametrize("params", [SAEParams(), TUNED], ids=["seed", "tuned"])
def test_checkpoint_round_trip_gives_identical_scores(params, tmp_path):
    recommender = _trained(params, epochs=2)
    path = recommender.save_model(tmp_path / "sae.pt")
    loaded = SAERecommender.load_model(path)
    data = _low_rank_ratings(seed=5)
    assert loaded.params == params
    assert torch.equal(loaded.predict(data), recommender.predict(data))


@pytest.mark.parametrize("params", [SAEParams(), TUNED], ids=["seed", "tuned"])
def test_torchscript_trace_gives_identical_scores(params, tmp_path):
    net = _trained(params, epochs=2).model.eval()
    data = _low_rank_ratings(seed=7)
    traced = torch.jit.trace(net, data[:4])
    traced.save(tmp_path / "sae.ts")
    loaded = torch.jit.load(tmp_path / "sae.ts")
    with torch.no_grad():
        assert torch.equal(loaded(data), net(data))  # any batch size, not just the traced one


def test_checkpoints_from_before_ensembles_still_load(tmp_path):
    """They held the one network under `net.`; it becomes member 0 with the same scores."""
    recommender = _trained(SAEParams(), epochs=1)
    path = recommender.save_model(tmp_path / "sae.pt")
    checkpoint = torch.load(path, weights_only=False)
    checkpoint["state_dict"] = {
        key.replace("members.0.", "net."): value for key, value in checkpoint["state_dict"].items()
    }
    torch.save(checkpoint, path)
    data = _low_rank_ratings(seed=2)
    assert torch.equal(SAERecommender.load_model(path).predict(data), recommender.predict(data))
