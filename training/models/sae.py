"""Stacked AutoEncoder over a user's rating vector (user-based, so new users fold in).

n_items -> hidden... -> mirrored hidden... -> n_items, masked MSE on observed ratings. With
``center`` on, it learns residuals over a global mean + item bias + the user's own bias (computed
from the ratings it is given), which is what lets a small network beat the bias baseline.
``implicit_input`` also feeds which items were rated (as SVD++ does), ``n_members`` averages several
independently trained autoencoders, and ``ema_decay`` keeps an exponential moving average of the
weights as the model (smoother than any single noisy step).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import nn

from training.config import SAEParams
from training.data.encoding import prepare_autoencoder_data
from training.metrics.ranking import rating_metrics
from training.models.base import BaseRecommender

MIN_RATING, MAX_RATING = 1.0, 5.0
ACTIVATIONS = {
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "selu": nn.SELU,
    "elu": nn.ELU,
}
_BIAS_SWEEPS = 5  # alternating item/user bias updates; converges in a handful
_LEGACY_NETWORK = "net"  # where checkpoints before `n_members` kept the one network


class SAENet(nn.Module):
    """Raw ratings [batch, n_items] (0 = unrated) -> predicted ratings in [1, 5]."""

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
        self.register_load_state_dict_pre_hook(_rename_single_network)

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

    def forward(self, ratings: torch.Tensor) -> torch.Tensor:
        return self.member_predictions(ratings).mean(dim=0).clamp(MIN_RATING, MAX_RATING)


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


def _rename_single_network(module: nn.Module, state_dict: dict, prefix: str, *_: object) -> None:
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


class SAERecommender(BaseRecommender):
    name = "sae"
    params_class = SAEParams
    monitor = "val_rmse"
    rating_scores = True

    def build_model(self) -> nn.Module:
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
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self._update_average()
            observed = int((target > 0).sum())
            total += loss.item() / len(predictions) * observed
            count += observed
        self.scheduler.step()
        return total / max(count, 1)

    def validate(self, inputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        figures = rating_metrics(self.model(inputs), targets)
        return {"val_rmse": figures["rmse"], "val_mae": figures["mae"]}
