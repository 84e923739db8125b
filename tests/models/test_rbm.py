"""The RBM: encodings, CD-k moving the free energy the right way, scores, export, checkpoints."""

from __future__ import annotations

import pytest
import torch

from training.config import EarlyStoppingParams, RBMParams
from training.data.holdout import holdout
from training.metrics.ranking import ranking_metrics
from training.models.rbm import RBMEnsemble, RBMNet, RBMRecommender

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
    scores, ranking = net(_taste_groups())
    assert ranking is scores  # the RBM ranks by its probabilities
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
    net = recommender.model.members[0]  # what cd_step trains by default
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
    net = recommender.model.members[0]
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
    # Validation on held-out ratings: with the training matrix as its own validation set every
    # relevant item is a seen one, NDCG@10 only counts the lists' non-candidate filler (which
    # the stable top-k fixes to the lowest seen columns) and the loop would keep epoch 1.
    fit, val = holdout(data, 0.2, seed=0)
    recommender.train(fit, val, 30, EarlyStoppingParams(patience=30), progress=False)
    assert recommender.history.best_epoch > 1
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
    # any batch size, not just the traced one
    for exported, trained in zip(loaded(ratings), net(ratings), strict=True):
        assert torch.equal(exported, trained)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_checkpoint_round_trip_gives_identical_scores(encoding, tmp_path):
    recommender = _recommender(encoding)
    recommender.cd_step(_taste_groups(), torch.Generator().manual_seed(0))
    path = recommender.save_model(tmp_path / "rbm.pt")
    loaded = RBMRecommender.load_model(path)
    ratings = _taste_groups(seed=3)
    assert loaded.model.members[0].encoding == encoding
    assert torch.equal(loaded.predict(ratings), recommender.predict(ratings))


# -- the ensemble (RBMParams.n_members) ---------------------------------------------------------


def test_ensemble_probabilities_are_the_members_mean():
    torch.manual_seed(0)
    ensemble = RBMEnsemble(N_ITEMS, RBMParams(n_hidden=8, n_members=3)).eval()
    ratings = _taste_groups()
    with torch.no_grad():
        scores, ranking = ensemble(ratings)
        members = [member(ratings)[0] for member in ensemble.members]
    assert len(members) == 3
    assert not torch.allclose(members[0], members[1])  # independently initialised
    assert torch.allclose(scores, sum(members) / 3, atol=1e-7)
    assert ranking is scores
    assert scores.shape == (N_USERS, N_ITEMS) and torch.all((scores > 0) & (scores < 1))


def test_the_recommender_builds_an_ensemble_of_n_members():
    recommender = _recommender("implicit", n_members=2)
    assert isinstance(recommender.model, RBMEnsemble)
    assert len(recommender.model.members) == 2
    assert all(member.threshold == 3.0 for member in recommender.model.members)


def test_cd_step_trains_only_the_member_it_is_given():
    torch.manual_seed(0)
    recommender = _recommender("implicit", n_members=2)
    first, second = recommender.model.members
    before = [p.clone() for p in (*first.parameters(), *second.parameters())]
    recommender.cd_step(_taste_groups(), torch.Generator().manual_seed(1), member=1)
    after = [*first.parameters(), *second.parameters()]
    n = len(list(first.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(after[:n], before[:n], strict=True))
    assert not any(torch.equal(a, b) for a, b in zip(after[n:], before[n:], strict=True))


def test_each_member_keeps_its_own_best_epoch():
    torch.manual_seed(0)
    params = RBMParams(n_hidden=16, lr=0.1, momentum=0.5, batch_size=16, n_members=2)
    recommender = RBMRecommender(params, N_ITEMS)
    fit, val = holdout(_taste_groups(), 0.2, seed=0)
    history = recommender.train(fit, val, 12, EarlyStoppingParams(patience=12), progress=False)
    best_epochs = []
    for index, member in enumerate(recommender.model.members):
        per_epoch = [figures[f"val_member{index}_ndcg@10"] for figures in history.validation]
        best_epochs.append(per_epoch.index(max(per_epoch)) + 1)
        with torch.no_grad():
            now = ranking_metrics(member(fit)[1], fit, val, [10])["ndcg@10"]
        # The member now holds the weights of its own best epoch, whatever the ensemble's was.
        assert now == pytest.approx(max(per_epoch), abs=1e-7)
    # The case is one where keeping the ensemble's best epoch would differ.
    assert any(epoch != history.best_epoch for epoch in best_epochs)
    # ...and the served ensemble is their mean.
    with torch.no_grad():
        scores = recommender.model(fit)[0]
        mean = torch.stack([m(fit)[0] for m in recommender.model.members]).mean(dim=0)
    assert torch.equal(scores, mean)


def _old_single_rbm(encoding: str = "liked") -> RBMNet:
    """An RBM as saved before ensembles: its parameters at the top level of the state_dict."""
    torch.manual_seed(4)
    net = RBMNet(N_ITEMS, RBMParams(n_hidden=8, encoding=encoding), threshold=4)
    with torch.no_grad():
        net.hidden_bias.normal_()
        net.visible_bias.normal_()
    return net.eval()


def test_an_old_single_rbm_state_dict_loads_as_member_0():
    old = _old_single_rbm()
    state = old.state_dict()
    assert set(state) == {"weight", "hidden_bias", "visible_bias", "threshold"}
    ensemble = RBMEnsemble(N_ITEMS, RBMParams(n_hidden=8, encoding="liked"), threshold=3)
    ensemble.load_state_dict(state)
    (member,) = ensemble.members
    for name, value in state.items():
        assert torch.equal(member.state_dict()[name], value), name
    assert member.threshold == 4.0  # the checkpoint's threshold, not the constructor's
    ratings = _taste_groups()
    with torch.no_grad():
        assert torch.equal(ensemble.eval()(ratings)[0], old(ratings)[0])


def test_an_old_single_rbm_checkpoint_loads_with_the_same_scores(tmp_path):
    recommender = _recommender("liked")
    recommender.cd_step(_taste_groups(), torch.Generator().manual_seed(0))
    path = recommender.save_model(tmp_path / "rbm.pt")
    checkpoint = torch.load(path, weights_only=False)
    checkpoint["state_dict"] = {
        key.removeprefix("members.0."): value for key, value in checkpoint["state_dict"].items()
    }
    assert set(checkpoint["state_dict"]) == {"weight", "hidden_bias", "visible_bias", "threshold"}
    torch.save(checkpoint, path)
    ratings = _taste_groups(seed=3)
    assert torch.equal(
        RBMRecommender.load_model(path).predict(ratings), recommender.predict(ratings)
    )
