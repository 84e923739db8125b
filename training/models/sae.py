"""Stacked AutoEncoder over a user's rating vector (user-based, so new users fold in).

n_items -> hidden... -> mirrored hidden... -> n_items, masked MSE on observed ratings. With
``center`` on, it learns residuals over a global mean + item bias + the user's own bias (computed
from the ratings it is given), which is what lets a small network beat the bias baseline.
"""

from __future__ import annotations

import torch
from torch import nn

from training.config import SAEParams
from training.data.encoding import prepare_autoencoder_data
from training.metrics.ranking import rating_metrics
from training.models.base import BaseRecommender

MIN_RATING, MAX_RATING = 1.0, 5.0
ACTIVATIONS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU, "selu": nn.SELU,
               "elu": nn.ELU}
_BIAS_SWEEPS = 5  # alternating item/user bias updates; converges in a handful


class SAENet(nn.Module):
    """Raw ratings [batch, n_items] (0 = unrated) -> predicted ratings in [1, 5]."""

    def __init__(self, n_items: int, params: SAEParams) -> None:
        super().__init__()
        self.center = params.center
        self.bias_reg = params.bias_reg
        sizes = [n_items, *params.hidden_layers, *params.hidden_layers[-2::-1], n_items]
        layers: list[nn.Module] = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers.append(nn.Linear(fan_in, fan_out))
            if i < len(sizes) - 2:  # linear output layer, as in the seed
                layers.append(ACTIVATIONS[params.activation]())
                if params.dropout > 0:
                    layers.append(nn.Dropout(params.dropout))
        self.net = nn.Sequential(*layers)
        self.register_buffer("global_mean", torch.tensor(0.0))
        self.register_buffer("item_bias", torch.zeros(n_items))

    def baseline(self, ratings: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if not self.center:
            return torch.zeros_like(ratings)
        item_base = self.global_mean + self.item_bias
        residual = (ratings - item_base) * mask
        user_bias = residual.sum(dim=1, keepdim=True) / (mask.sum(dim=1, keepdim=True) + self.bias_reg)
        return item_base + user_bias

    def predict_raw(self, ratings: torch.Tensor, corrupt: torch.Tensor | None = None) -> torch.Tensor:
        """Unclamped predictions; ``corrupt`` hides some observed inputs (denoising)."""
        ratings = prepare_autoencoder_data(ratings)
        mask = (ratings > 0).to(ratings.dtype)
        base = self.baseline(ratings, mask)
        visible = mask if corrupt is None else mask * corrupt
        return base + self.net((ratings - base) * visible)

    def forward(self, ratings: torch.Tensor) -> torch.Tensor:
        return self.predict_raw(ratings).clamp(MIN_RATING, MAX_RATING)


def masked_mse(predicted: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
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


def make_optimizer(name: str, parameters, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    classes = {"rmsprop": torch.optim.RMSprop, "adam": torch.optim.Adam,
               "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
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
        self.optimizer = make_optimizer(self.params.optimizer, self.model.parameters(),
                                        self.params.lr, self.params.weight_decay)

    def train_epoch(self, train: torch.Tensor, generator: torch.Generator) -> float:
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
            loss = masked_mse(self.model.predict_raw(batch, corrupt), target)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            observed = int((target > 0).sum())
            total += loss.item() * observed
            count += observed
        return total / max(count, 1)

    def validate(self, inputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        figures = rating_metrics(self.model(inputs), targets)
        return {"val_rmse": figures["rmse"], "val_mae": figures["mae"]}
