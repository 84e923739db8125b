"""Stacked AutoEncoder over a user's rating vector (user-based, so new users fold in).

n_items -> hidden... -> mirrored hidden... -> n_items, masked MSE on observed ratings. With
``center`` on, it learns residuals over a global mean + item bias + the user's own bias (computed
from the ratings it is given), which is what lets a small network beat the bias baseline.
``implicit_input`` also feeds which items were rated (as SVD++ does), ``n_members`` averages several
independently trained autoencoders, and ``ema_decay`` keeps an exponential moving average of the
weights as the model (smoother than any single noisy step).

Predicted ratings alone rank badly: the films with the highest predicted rating are those one or
two people loved. So the module also learns "will watch" (``WatchNet``, a Mult-DAE over which films
were rated) and serves two outputs: ``scores``, the predicted ratings (RMSE is measured on them),
and ``ranking`` = softmax(watch logits + w * predicted rating), a distribution over films a user
will watch *and* like, with w chosen on validation (``rank_weights``).

The predicted ratings also draw on "item codes" (``item_hidden``): an item-based autoencoder
(I-AutoRec, Sedhain et al. 2015) reads each film's ratings by the training users, and its hidden
layer, kept as a buffer, is the film's code. Its decoder rows belong to the training users, so
a user's own row is fitted when they are served instead: a ridge regression of their residual
ratings on the codes of the films they rated (``ridge_rows``, conjugate gradients with a fixed
number of steps, so TorchScript and ONNX hold it), which keeps the model inductive.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from typing import Any, cast

import torch
from torch import nn
from torch.nn import functional as F

from handlers import contract
from training.config import SAEParams
from training.data.encoding import prepare_autoencoder_data
from training.metrics.ranking import ranking_metrics, rating_metrics
from training.models.base import BaseRecommender, log

MIN_RATING, MAX_RATING = contract.MIN_RATING, contract.MAX_RATING
ACTIVATIONS = {
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "selu": nn.SELU,
    "elu": nn.ELU,
}
_BIAS_SWEEPS = 5  # alternating item/user bias updates; converges in a handful
_LEGACY_NETWORK = "net"  # where checkpoints before `n_members` kept the one network
VALIDATION_K = 10  # the ranking figure that picks the watch network's epoch and the rank weight
CG_EPSILON = 1e-12  # keeps conjugate-gradient steps finite once a user's residual is solved


class WatchNet(nn.Module):
    """Which films a user rated (0/1, L2-normalised) -> logits over every film they may rate."""

    def __init__(self, n_items: int, params: SAEParams) -> None:
        super().__init__()
        self.dropout = nn.Dropout(params.watch_dropout)
        self.encoder = nn.Linear(n_items, params.watch_hidden)
        self.activation = ACTIVATIONS[params.watch_activation]()
        self.decoder = nn.Linear(params.watch_hidden, n_items)

    def forward(self, rated: torch.Tensor) -> torch.Tensor:
        inputs = self.dropout(F.normalize(rated, dim=1))
        return self.decoder(self.activation(self.encoder(inputs)))


def multinomial_nll(logits: torch.Tensor, rated: torch.Tensor) -> torch.Tensor:
    """Mult-DAE's loss: minus the log-likelihood of the rated films, mean over users."""
    return -(F.log_softmax(logits, dim=1) * rated).sum(dim=1).mean()


class ItemAutoencoder(nn.Module):
    """A film's residual ratings by the training users and which of them rated it
    (2 * n_users) -> code (item_hidden) -> residual ratings by every training user."""

    def __init__(self, n_users: int, params: SAEParams) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(2 * n_users, params.item_hidden), ACTIVATIONS[params.activation]()
        )
        self.dropout = nn.Dropout(params.item_dropout)
        self.decoder = nn.Linear(params.item_hidden, n_users)

    def forward(self, columns: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.dropout(self.encoder(columns)))


def ridge_rows(
    codes: torch.Tensor,
    residual: torch.Tensor,
    weights: torch.Tensor,
    ridge: float,
    steps: int,
    epsilon: float = CG_EPSILON,  # an argument: TorchScript reads no module-level floats
) -> torch.Tensor:
    """Each user's row x over the item codes: argmin sum_i w_i (r_i - x . c_i)^2 + ridge |x|^2.

    ``codes`` [n, d] (shared), ``residual`` and ``weights`` [batch, n] (weights 1 where rated).
    Conjugate gradients on (C^T W C + ridge I) x = C^T W r with matrix-vector products only
    (no per-user d x d matrix), a fixed number of steps: [batch, d].
    """
    rhs = (residual * weights) @ codes
    solution = torch.zeros_like(rhs)
    left = rhs
    direction = rhs
    norm = (left * left).sum(dim=1, keepdim=True)
    for _ in range(steps):
        product = ((direction @ codes.t()) * weights) @ codes + ridge * direction
        curvature = (direction * product).sum(dim=1, keepdim=True).clamp(min=epsilon)
        step = norm / curvature
        solution = solution + step * direction
        left = left - step * product
        new_norm = (left * left).sum(dim=1, keepdim=True)
        direction = left + (new_norm / norm.clamp(min=epsilon)) * direction
        norm = new_norm
    return solution


def blend_ranking(
    watch_logits: torch.Tensor, predicted: torch.Tensor, rank_weight: torch.Tensor
) -> torch.Tensor:
    """p(watch) * exp(w * predicted rating), normalised over the films: the served ranking."""
    return torch.softmax(watch_logits + rank_weight * predicted, dim=1)


class SAENet(nn.Module):
    """Raw ratings [batch, n_items] (0 = unrated) -> (predicted ratings in [1, 5], ranking)."""

    # Buffers (register_buffer), declared for the type checker.
    global_mean: torch.Tensor
    item_bias: torch.Tensor
    rank_weight: torch.Tensor
    item_codes: torch.Tensor
    item_ridge: torch.Tensor
    member_weight: torch.Tensor

    def __init__(self, n_items: int, params: SAEParams) -> None:
        super().__init__()
        self.center = params.center
        self.bias_reg = params.bias_reg
        self.implicit_input = params.implicit_input
        n_inputs = 2 * n_items if params.implicit_input else n_items
        self.members = nn.ModuleList(
            [_autoencoder(n_inputs, n_items, params) for _ in range(params.n_members)]
        )
        self.register_buffer("global_mean", torch.tensor(0.0))
        self.register_buffer("item_bias", torch.zeros(n_items))
        self.watch = WatchNet(n_items, params) if params.watch_hidden else None
        # The weight of the predicted rating in the ranking, chosen on validation after training.
        self.register_buffer("rank_weight", torch.tensor(0.0))
        self.has_items = params.item_hidden > 0
        self.item_cg_steps = params.item_cg_steps
        if self.has_items:
            # Set after training (SAERecommender.finish_training); until then the members alone.
            self.register_buffer("item_codes", torch.zeros(n_items, params.item_hidden))
            self.register_buffer("item_ridge", torch.tensor(params.item_ridges[0]))
            self.register_buffer("member_weight", torch.tensor(1.0))
        self.register_load_state_dict_pre_hook(_rename_single_network)

    def autoencoders(self) -> list[nn.Sequential]:
        """The rating members, typed (iterating an nn.ModuleList yields plain modules)."""
        return [cast(nn.Sequential, member) for member in self.members]

    def baseline(self, ratings: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if not self.center:
            return torch.zeros_like(ratings)
        return centred_baseline(ratings, mask, self.global_mean, self.item_bias, self.bias_reg)

    def member_predictions(
        self, ratings: torch.Tensor, corrupt: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Every member's unclamped predictions [members, batch, n_items]; ``corrupt`` hides
        some observed inputs (denoising)."""
        ratings = prepare_autoencoder_data(ratings)
        mask = (ratings > 0).to(ratings.dtype)
        base = self.baseline(ratings, mask)
        visible = mask if corrupt is None else mask * corrupt
        inputs = (ratings - base) * visible
        if self.implicit_input:
            inputs = torch.cat([inputs, visible], dim=1)
        return base + torch.stack([member(inputs) for member in self.members])

    def item_predictions(self, ratings: torch.Tensor, ridge: torch.Tensor) -> torch.Tensor:
        """The baseline plus each user's ridge row over the item codes (unclamped)."""
        ratings = prepare_autoencoder_data(ratings)
        mask = (ratings > 0).to(ratings.dtype)
        base = self.baseline(ratings, mask)
        row = ridge_rows(self.item_codes, ratings - base, mask, float(ridge), self.item_cg_steps)
        return base + row @ self.item_codes.t()

    def rating_and_watch(
        self, ratings: torch.Tensor, members_only: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(predicted ratings in [1, 5], the watch network's logits or None); ``members_only``
        leaves the item codes out (what validates the members' epochs)."""
        predicted = self.member_predictions(ratings).mean(dim=0)
        if self.has_items and not members_only:
            items = self.item_predictions(ratings, self.item_ridge)
            predicted = self.member_weight * predicted + (1.0 - self.member_weight) * items
        predicted = predicted.clamp(MIN_RATING, MAX_RATING)
        if self.watch is None:
            return predicted, None
        return predicted, self.watch((ratings > 0).to(predicted.dtype))

    def forward(self, ratings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        predicted, logits = self.rating_and_watch(ratings)
        if logits is None:
            return predicted, predicted
        return predicted, blend_ranking(logits, predicted, self.rank_weight)


def centred_baseline(
    ratings: torch.Tensor,
    mask: torch.Tensor,
    global_mean: torch.Tensor,
    item_bias: torch.Tensor,
    bias_reg: float,
) -> torch.Tensor:
    """Global mean + item bias + the user's own regularised bias, folded in from ``ratings``."""
    item_base = global_mean + item_bias
    residual = (ratings - item_base) * mask
    user_bias = residual.sum(dim=1, keepdim=True) / (mask.sum(dim=1, keepdim=True) + bias_reg)
    return item_base + user_bias


def _rename_single_network(
    module: nn.Module, state_dict: dict[str, Any], prefix: str, *_: object
) -> None:
    """Checkpoints from before ensembles held one network under ``net.``: it is member 0."""
    legacy = f"{prefix}{_LEGACY_NETWORK}."
    for key in [key for key in state_dict if key.startswith(legacy)]:
        state_dict[f"{prefix}members.0.{key.removeprefix(legacy)}"] = state_dict.pop(key)


def _autoencoder(n_inputs: int, n_items: int, params: SAEParams) -> nn.Sequential:
    """n_inputs -> hidden... -> mirrored hidden... -> n_items, linear output (as in the seed)."""
    sizes = [n_inputs, *params.hidden_layers, *params.hidden_layers[-2::-1], n_items]
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(fan_in, fan_out))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[params.activation]())
            if params.dropout > 0:
                layers.append(nn.Dropout(params.dropout))
    return nn.Sequential(*layers)


def masked_mse(predicted: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the observed (non-zero) targets only."""
    mask = targets > 0
    return (predicted - targets).pow(2)[mask].mean()


def fit_biases(train: torch.Tensor, reg: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Global mean and regularised item biases (alternating with user biases)."""
    mask = (train > 0).float()
    mean = train.sum() / mask.sum()
    user_bias = torch.zeros(train.shape[0], 1, device=train.device)
    item_bias = torch.zeros(1, train.shape[1], device=train.device)
    for _ in range(_BIAS_SWEEPS):
        item_bias = ((train - mean - user_bias) * mask).sum(0, keepdim=True) / (mask.sum(0) + reg)
        user_bias = ((train - mean - item_bias) * mask).sum(1, keepdim=True) / (
            mask.sum(1, keepdim=True) + reg
        )
    return mean, item_bias.squeeze(0)


def make_optimizer(
    name: str, parameters: Iterable[nn.Parameter], lr: float, weight_decay: float
) -> torch.optim.Optimizer:
    classes = {
        "rmsprop": torch.optim.RMSprop,
        "adam": torch.optim.Adam,
        "adamw": torch.optim.AdamW,
        "sgd": torch.optim.SGD,
    }
    return classes[name](parameters, lr=lr, weight_decay=weight_decay)


class SAERecommender(BaseRecommender[SAEParams, SAENet]):
    name = "sae"
    params_class = SAEParams
    monitor = "val_rmse"
    rating_scores = True

    def build_model(self) -> SAENet:
        return SAENet(self.n_items, self.params)

    def fit_setup(self, train: torch.Tensor, generator: torch.Generator) -> None:
        mean, item_bias = fit_biases(train, self.params.bias_reg)
        self.model.global_mean.copy_(mean)
        self.model.item_bias.copy_(item_bias)
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        # With weight averaging, SGD steps go to a live copy and self.model is their average,
        # so validation, early stopping and the checkpoint all see the averaged weights.
        self.live = copy.deepcopy(self.model) if self.params.ema_decay > 0 else self.model
        self.optimizer = make_optimizer(
            self.params.optimizer, self.live.parameters(), self.params.lr, self.params.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(
            self.optimizer, self.params.lr_decay
        )
        self.best_watch: tuple[float, dict[str, torch.Tensor]] = (-1.0, {})
        if self.model.has_items:
            self._item_setup(train, generator)

    def _item_setup(self, train: torch.Tensor, generator: torch.Generator) -> None:
        """The item autoencoder's data (each film's column over the training users), network,
        optimiser and its own random stream (so the members train as they would without it)."""
        mask = (train > 0).to(train.dtype)
        residual = (train - self.model.baseline(train, mask)) * mask
        self.item_targets = residual.t().contiguous()
        self.item_mask = mask.t().contiguous()
        self.items = ItemAutoencoder(train.shape[0], self.params).to(train.device)
        self.item_optimizer = make_optimizer(
            self.params.optimizer,
            self.items.parameters(),
            self.params.lr,
            self.params.item_weight_decay,
        )
        # Seeded from the run's seed without drawing from its stream.
        self.item_generator = torch.Generator().manual_seed(generator.initial_seed() + 1)
        self.best_items: tuple[float, torch.Tensor] = (math.inf, self.model.item_codes.clone())

    def _item_inputs(self, visible: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        targets = self.item_targets if rows is None else self.item_targets[rows]
        return torch.cat([targets * visible, visible], dim=1)

    def _item_epoch(self) -> None:
        """One pass of the item autoencoder over the films (masked MSE on observed ratings)."""
        self.items.train()
        generator = self.item_generator
        order = torch.randperm(self.item_targets.shape[0], generator=generator)
        keep = 1.0 - self.params.item_corruption
        for rows in order.to(self.item_targets.device).split(self.params.batch_size):
            mask = self.item_mask[rows]
            visible = mask * (torch.rand(mask.shape, generator=generator) < keep).to(mask)
            predicted = self.items(self._item_inputs(visible, rows))
            # Residual targets can be 0 or negative, so the mask is the ratings', not theirs.
            error = (predicted - self.item_targets[rows]).pow(2) * mask
            loss = error.sum() / mask.sum().clamp(min=1.0)
            self.item_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.item_optimizer.step()
        self.items.eval()

    @torch.no_grad()
    def _update_average(self) -> None:
        if self.live is self.model:
            return
        weight = 1.0 - self.params.ema_decay
        for average, live in zip(self.model.parameters(), self.live.parameters(), strict=True):
            average.lerp_(live, weight)

    def train_epoch(self, train: torch.Tensor, generator: torch.Generator) -> float:
        self.live.train()
        order = torch.randperm(train.shape[0], generator=generator).to(train.device)
        keep = 1.0 - self.params.input_corruption
        total, count = 0.0, 0
        for rows in order.split(self.params.batch_size):
            batch = train[rows]
            corrupt, target = None, batch
            if self.params.input_corruption > 0:
                corrupt = (torch.rand(batch.shape, generator=generator) < keep).to(batch)
                if self.params.loss_on == "hidden":
                    # Score only what the network could not see: it must predict, not copy.
                    target = batch * (1.0 - corrupt)
            # Each member is scored on its own (not their mean), so they learn independently
            # and their errors average out; the loss reported is the members' mean.
            predictions = self.live.member_predictions(batch, corrupt)
            loss = masked_mse(predictions, target.expand_as(predictions)) * len(predictions)
            rating_loss = loss.item()
            if self.live.watch is not None:
                # Its own parameters, so the sum trains both parts independently.
                rated = (batch > 0).to(batch.dtype)
                loss = loss + multinomial_nll(self.live.watch(rated), rated)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self._update_average()
            observed = int((target > 0).sum())
            total += rating_loss / len(predictions) * observed
            count += observed
        self.scheduler.step()
        if self.model.has_items:
            self._item_epoch()
        return total / max(count, 1)

    def validate(self, inputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        """Per epoch: the members' figures (the item codes join them after training) and the
        item autoencoder's own, through its training users' decoder rows (``inputs`` is the
        training matrix here)."""
        predicted, logits = self.model.rating_and_watch(inputs, members_only=True)
        figures = rating_metrics(predicted, targets)
        result = {"val_rmse": figures["rmse"], "val_mae": figures["mae"]}
        if self.model.has_items:
            self.item_codes = self.items.encoder(self._item_inputs(self.item_mask))
            mask = (inputs > 0).to(inputs.dtype)
            own_rows = self.model.baseline(inputs, mask) + self.items.decoder(self.item_codes).t()
            own = own_rows.clamp(MIN_RATING, MAX_RATING)
            result["val_item_rmse"] = rating_metrics(own, targets)["rmse"]
        ranking = predicted
        if logits is not None:
            result[f"val_watch_ndcg@{VALIDATION_K}"] = _ndcg(logits, inputs, targets)
            ranking = blend_ranking(logits, predicted, self.model.rank_weight)
        result[f"val_ndcg@{VALIDATION_K}"] = _ndcg(ranking, inputs, targets)
        return result

    def end_epoch(self, figures: dict[str, float]) -> None:
        """The watch network keeps its own best epoch (it peaks before the rating members)."""
        value = figures.get(f"val_watch_ndcg@{VALIDATION_K}")
        if self.model.watch is not None and value is not None and value > self.best_watch[0]:
            self.best_watch = (value, copy.deepcopy(self.model.watch.state_dict()))
        item_value = figures.get("val_item_rmse")
        if self.model.has_items and item_value is not None and item_value < self.best_items[0]:
            self.best_items = (item_value, self.item_codes.detach().clone())

    def finish_training(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        """Keep the item codes' and the watch network's best epochs, then pick the ridge and the
        members' weight (validation RMSE), then the rank weight (validation NDCG)."""
        if self.model.has_items:
            self._choose_rating_blend(inputs, targets)
        if self.model.watch is None:
            return
        self.model.watch.load_state_dict(self.best_watch[1])
        predicted, logits = self.model.rating_and_watch(inputs)
        assert logits is not None  # the watch network is there
        figures = {
            weight: _ndcg(blend_ranking(logits, predicted, torch.tensor(weight)), inputs, targets)
            for weight in self.params.rank_weights
        }
        weight = max(figures, key=lambda w: (figures[w], -w))
        self.model.rank_weight.fill_(weight)
        self.history.choices["rank_weight"] = {
            "chosen": weight,
            f"val_ndcg@{VALIDATION_K}": {str(w): round(v, 6) for w, v in figures.items()},
        }
        log.info(
            "sae: rank weight %g (validation NDCG@%d %.4f)", weight, VALIDATION_K, figures[weight]
        )

    def _choose_rating_blend(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        """Item codes from their best epoch; the (ridge, members' weight) pair with the lowest
        validation RMSE, both recorded in the history's choices."""
        net = self.model
        net.item_codes.copy_(self.best_items[1])
        members = net.member_predictions(inputs).mean(dim=0)
        figures: dict[tuple[float, float], float] = {}
        for ridge in self.params.item_ridges:
            items = net.item_predictions(inputs, torch.tensor(ridge))
            for weight in self.params.member_weights:
                blend = weight * members + (1.0 - weight) * items
                figures[ridge, weight] = _rmse(blend, targets)
        ridge, weight = min(figures, key=lambda pair: (figures[pair], pair[1], pair[0]))
        net.item_ridge.fill_(ridge)
        net.member_weight.fill_(weight)
        self.history.choices["rating_blend"] = {
            "chosen": f"ridge {ridge:g} / members' weight {weight:g}",
            "item_ridge": ridge,
            "member_weight": weight,
            "val_rmse": {f"{r:g}/{w:g}": round(v, 6) for (r, w), v in figures.items()},
        }
        log.info(
            "sae: item ridge %g, members' weight %g (validation RMSE %.4f)",
            ridge,
            weight,
            figures[ridge, weight],
        )


def _rmse(predicted: torch.Tensor, targets: torch.Tensor) -> float:
    return rating_metrics(predicted.clamp(MIN_RATING, MAX_RATING), targets)["rmse"]


def _ndcg(scores: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    return ranking_metrics(scores, inputs, targets, [VALIDATION_K])[f"ndcg@{VALIDATION_K}"]
