"""The SAE: shapes, masking, learning, weight averaging, export and checkpoints."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from handlers.recommendation import top_k
from training.config import EarlyStoppingParams, SAEParams
from training.data.holdout import holdout
from training.metrics.ranking import ranking_metrics, rating_metrics
from training.models.sae import (
    MAX_RATING,
    MIN_RATING,
    SAENet,
    SAERecommender,
    WatchNet,
    blend_ranking,
    masked_mse,
    ridge_rows,
)

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
        scores, ranking = net(torch.cat([_low_rank_ratings(), extremes]))
    assert ranking is scores  # no watch network: the SAE ranks by predicted rating
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
        scores = net(data)[0]
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
        # any batch size, not just the traced one
        for exported, trained in zip(loaded(data), net(data), strict=True):
            assert torch.equal(exported, trained)


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


# -- "will watch" (WatchNet) and the served ranking ---------------------------------------------

WATCH = SAEParams(
    hidden_layers=[16],
    optimizer="adam",
    lr=0.01,
    input_corruption=0.2,
    ema_decay=0.9,
    batch_size=8,
    watch_hidden=8,
    rank_weights=[0.0, 0.5, 2.0],
)


def _watch_net(rank_weight: float = 0.7) -> SAENet:
    torch.manual_seed(0)
    net = SAENet(N_ITEMS, WATCH).eval()
    net.rank_weight.fill_(rank_weight)
    return net


def _trained_with_validation(params: SAEParams, epochs: int = 20) -> SAERecommender:
    """Trained with held-out validation ratings, so NDCG (which picks the watch network's epoch
    and the rank weight) measures something."""
    torch.manual_seed(0)
    recommender = SAERecommender(params, N_ITEMS)
    fit, val = holdout(_low_rank_ratings(), 0.2, seed=0)
    recommender.train(fit, val, epochs, EarlyStoppingParams(patience=epochs), progress=False)
    return recommender


def test_the_watch_ranking_is_a_distribution_over_the_items_of_each_row():
    net = _watch_net()
    assert isinstance(net.watch, WatchNet)
    ratings = torch.cat([_low_rank_ratings(), torch.zeros(1, N_ITEMS)])  # and a user with none
    with torch.no_grad():
        scores, ranking = net(ratings)
    assert ranking.shape == scores.shape == (N_USERS + 1, N_ITEMS)
    assert torch.all(ranking > 0)
    assert torch.allclose(ranking.sum(dim=1), torch.ones(N_USERS + 1), atol=1e-5)
    assert torch.all((scores >= MIN_RATING) & (scores <= MAX_RATING))  # still predicted ratings
    # softmax(watch logits + w * predicted), w the buffer
    with torch.no_grad():
        logits = net.watch((ratings > 0).float())
    assert torch.allclose(ranking, torch.softmax(logits + 0.7 * scores, dim=1), atol=1e-6)


def test_the_watch_head_leaves_the_scores_unchanged():
    net = _watch_net()
    plain = SAENet(N_ITEMS, WATCH.model_copy(update={"watch_hidden": 0})).eval()
    assert plain.watch is None
    plain.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith("watch.")})
    ratings = _low_rank_ratings(seed=4)
    with torch.no_grad():
        scores, ranking = net(ratings)
        assert torch.equal(scores, plain(ratings)[0])
        for parameter in net.watch.parameters():
            parameter.normal_()
        net.rank_weight.fill_(2.0)
        moved_scores, moved_ranking = net(ratings)
    assert torch.equal(moved_scores, scores)
    assert not torch.allclose(moved_ranking, ranking)


def test_training_the_watch_head_leaves_the_rating_members_as_they_were():
    """The watch network has its own parameters and loss term: the members train, and predict,
    exactly as without it (member dropout off, so it is the only user of the global RNG)."""
    with_watch = _trained_with_validation(WATCH, epochs=4)
    without = _trained_with_validation(WATCH.model_copy(update={"watch_hidden": 0}), epochs=4)
    assert with_watch.history.train_loss == without.history.train_loss  # the rating loss
    data = _low_rank_ratings(seed=6)
    assert torch.equal(with_watch.predict(data), without.predict(data))
    assert not without.history.choices  # nothing to choose without a watch network
    assert torch.equal(without.rank_scores(data), without.predict(data))


def test_the_rank_weight_is_chosen_on_validation_and_recorded():
    recommender = _trained_with_validation(WATCH)
    net = recommender.model
    choice = recommender.history.choices["rank_weight"]
    assert choice["chosen"] in WATCH.rank_weights
    assert float(net.rank_weight) == choice["chosen"]
    recorded = choice["val_ndcg@10"]
    assert set(recorded) == {str(w) for w in WATCH.rank_weights}
    # The figures are the validation NDCG@10 of each weight's ranking; the best is kept.
    fit, val = holdout(_low_rank_ratings(), 0.2, seed=0)
    with torch.no_grad():
        predicted, ranking = net(fit)
        logits = net.watch((fit > 0).float())
    found = {
        w: ranking_metrics(blend_ranking(logits, predicted, torch.tensor(w)), fit, val, [10])[
            "ndcg@10"
        ]
        for w in WATCH.rank_weights
    }
    assert recorded == {str(w): pytest.approx(v, abs=1e-6) for w, v in found.items()}
    assert found[choice["chosen"]] == max(found.values())
    assert torch.allclose(ranking, blend_ranking(logits, predicted, torch.tensor(choice["chosen"])))


def test_the_watch_network_keeps_its_own_best_epoch():
    recommender = _trained_with_validation(WATCH)
    history = recommender.history
    per_epoch = [figures["val_watch_ndcg@10"] for figures in history.validation]
    best_watch_epoch = per_epoch.index(max(per_epoch)) + 1
    assert best_watch_epoch != history.best_epoch  # a case where keeping the loop's would differ
    fit, val = holdout(_low_rank_ratings(), 0.2, seed=0)
    with torch.no_grad():
        logits = recommender.model.watch((fit > 0).float())
    now = ranking_metrics(logits, fit, val, [10])["ndcg@10"]
    assert now == pytest.approx(max(per_epoch), abs=1e-7)


def test_a_checkpoint_keeps_the_watch_network_and_the_rank_weight(tmp_path):
    recommender = _trained_with_validation(WATCH, epochs=3)
    recommender.model.rank_weight.fill_(0.5)  # not the buffer's default
    path = recommender.save_model(tmp_path / "sae.pt")
    loaded = SAERecommender.load_model(path)
    assert float(loaded.model.rank_weight) == 0.5
    assert loaded.history.choices == recommender.history.choices
    data = _low_rank_ratings(seed=5)
    for a, b in zip(loaded.predict_both(data), recommender.predict_both(data), strict=True):
        assert torch.equal(a, b)


def _one_film_everyone_rated(users: int = 60, items: int = 12, seed: int = 3) -> torch.Tensor:
    """Film 0 rated 4-5 by every user, film -1 rated 5 by user 0 alone, others 2-4 here and
    there."""
    generator = torch.Generator().manual_seed(seed)
    stars = torch.randint(2, 5, (users, items), generator=generator).float()
    ratings = stars * (torch.rand(users, items, generator=generator) < 0.3)
    ratings[:, 0] = torch.randint(4, 6, (users,), generator=generator).float()
    ratings[:, -1] = 0.0
    ratings[0, -1] = 5.0
    return ratings


def test_the_ranking_puts_a_film_everyone_liked_above_one_a_single_user_rated_5():
    data = _one_film_everyone_rated()
    fit, val = holdout(data, 0.2, seed=3)
    fit[:, 0], val[:, 0] = data[:, 0], 0.0  # everyone's film 0 and user 0's film -1 stay in fit
    fit[0, -1], val[0, -1] = 5.0, 0.0
    params = SAEParams(
        hidden_layers=[8],
        optimizer="adam",
        lr=0.03,
        batch_size=8,
        watch_hidden=8,
        rank_weights=[1.0],  # the predicted rating counts in the ranking
    )
    torch.manual_seed(3)
    recommender = SAERecommender(params, data.shape[1])
    recommender.train(fit, val, 40, EarlyStoppingParams(patience=40), progress=False)
    assert float(recommender.model.rank_weight) == 1.0
    # New users who have rated neither film, and every other training user.
    new = torch.zeros(3, data.shape[1])
    new[0, 1:3], new[1, 3:6], new[2, 5] = 3.0, 4.0, 2.0
    users = torch.cat([new, data[1:]])
    predicted, ranking = recommender.predict_both(users)
    # The premise: by predicted rating alone, the one-user 5 beats film 0 for many of them.
    assert (predicted[:, -1] > predicted[:, 0]).sum() >= 10
    assert torch.all(ranking[:, 0] > ranking[:, -1])
    for row in range(len(new)):  # and in a served list
        candidates = new[row] == 0
        served = top_k(ranking[row], candidates, int(candidates.sum()))
        assert served.index(0) < served.index(data.shape[1] - 1)


# -- item codes: an item-based autoencoder, a user's row fitted by ridge when served ---------------

ITEMS = SAEParams(
    hidden_layers=[16],
    optimizer="adam",
    lr=0.01,
    input_corruption=0.2,
    batch_size=8,
    item_hidden=6,
    item_ridges=[1.0, 10.0],
    member_weights=[0.0, 0.5, 1.0],
)


def _exact_ridge(codes, residual, weights, ridge):
    """The normal equations solved directly, one user at a time."""
    rows = []
    for r, w in zip(residual, weights, strict=True):
        gram = codes.t() @ (w.unsqueeze(1) * codes) + ridge * torch.eye(codes.shape[1])
        rows.append(torch.linalg.solve(gram.double(), (codes.t() @ (w * r)).double()))
    return torch.stack(rows).float()


def test_ridge_rows_solve_each_users_ridge_regression():
    generator = torch.Generator().manual_seed(0)
    codes = torch.rand(N_ITEMS, 6, generator=generator)  # sigmoid codes: positive, correlated
    residual = torch.randn(4, N_ITEMS, generator=generator)
    weights = (torch.rand(4, N_ITEMS, generator=generator) < 0.4).float()
    weights[-1] = 0.0  # a user who rated nothing gets the zero row (the baseline alone)
    rows = ridge_rows(codes, residual, weights, 2.0, steps=20)
    assert rows.shape == (4, 6)
    assert torch.allclose(rows, _exact_ridge(codes, residual, weights, 2.0), atol=1e-4)
    assert torch.equal(rows[-1], torch.zeros(6))
    # Unrated entries' residuals are not read.
    noisy = residual + 100.0 * (1.0 - weights)
    assert torch.allclose(ridge_rows(codes, noisy, weights, 2.0, steps=20), rows, atol=1e-4)
    # Too few steps stop short of the solution: the step count is a real setting.
    assert not torch.allclose(ridge_rows(codes, residual, weights, 2.0, steps=1), rows, atol=1e-3)


def test_the_item_codes_ridge_and_members_weight_are_chosen_on_validation():
    recommender = _trained_with_validation(ITEMS)
    net = recommender.model
    choice = recommender.history.choices["rating_blend"]
    assert (choice["item_ridge"], choice["member_weight"]) == (
        float(net.item_ridge),
        float(net.member_weight),
    )
    assert choice["item_ridge"] in ITEMS.item_ridges
    assert choice["chosen"] == (
        f"ridge {choice['item_ridge']:g} / members' weight {choice['member_weight']:g}"
    )
    assert choice["member_weight"] in ITEMS.member_weights
    assert net.item_codes.abs().sum() > 0  # the trained codes, not the zero buffer
    fit, val = holdout(_low_rank_ratings(), 0.2, seed=0)
    with torch.no_grad():
        members = net.member_predictions(fit).mean(dim=0)
        found = {
            f"{r:g}/{w:g}": rating_metrics(
                (w * members + (1 - w) * net.item_predictions(fit, torch.tensor(r))).clamp(1, 5),
                val,
            )["rmse"]
            for r in ITEMS.item_ridges
            for w in ITEMS.member_weights
        }
        scores = net(fit)[0]
    assert choice["val_rmse"] == {key: pytest.approx(v, abs=1e-5) for key, v in found.items()}
    chosen = f"{choice['item_ridge']:g}/{choice['member_weight']:g}"
    assert found[chosen] == min(found.values())
    assert rating_metrics(scores, val)["rmse"] == pytest.approx(found[chosen], abs=1e-5)


def test_a_new_users_row_over_the_item_codes_is_fitted_from_their_own_ratings():
    """Inductive: nobody's row is stored; a user's ratings alone give their ridge row."""
    net = _trained_with_validation(ITEMS, epochs=5).model
    net.member_weight.fill_(0.0)  # the item codes alone
    new = torch.zeros(2, N_ITEMS)
    new[0, :8] = torch.tensor([5.0, 4.0, 1.0, 2.0, 5.0, 3.0, 4.0, 1.0])
    new[1, :8] = 6.0 - new[0, :8]  # the opposite taste over the same films
    with torch.no_grad():
        scores = net(new)[0]
        mask = (new > 0).float()
        base = net.baseline(new, mask)
        rows = _exact_ridge(net.item_codes, new - base, mask, float(net.item_ridge))
    expected = (base + rows @ net.item_codes.t()).clamp(MIN_RATING, MAX_RATING)
    assert torch.allclose(scores, expected, atol=1e-4)
    assert not torch.allclose(scores[0], scores[1], atol=0.05)


def test_training_the_item_codes_leaves_the_rating_members_as_they_were():
    """The item autoencoder draws from its own random stream and has its own optimiser."""
    with_items = _trained_with_validation(ITEMS, epochs=4)
    without = _trained_with_validation(ITEMS.model_copy(update={"item_hidden": 0}), epochs=4)
    assert with_items.history.train_loss == without.history.train_loss
    data = _low_rank_ratings(seed=6)
    with torch.no_grad():
        members = with_items.model.member_predictions(data).mean(dim=0).clamp(1, 5)
    assert torch.equal(members, without.predict(data))
    assert "rating_blend" not in without.history.choices
    per_epoch = [figures["val_item_rmse"] for figures in with_items.history.validation]
    assert len(per_epoch) == 4 and all(value > 0 for value in per_epoch)


def test_a_checkpoint_keeps_the_item_codes_and_the_blend(tmp_path):
    recommender = _trained_with_validation(ITEMS, epochs=3)
    path = recommender.save_model(tmp_path / "sae.pt")
    loaded = SAERecommender.load_model(path)
    for name in ("item_codes", "item_ridge", "member_weight"):
        assert torch.equal(getattr(loaded.model, name), getattr(recommender.model, name))
    data = _low_rank_ratings(seed=5)
    assert torch.equal(loaded.predict(data), recommender.predict(data))
