"""Bernoulli Restricted Boltzmann Machine trained with contrastive divergence (CD-k).

Two visible encodings: "implicit" (rated -> 1, else 0) and the seed's "liked" (rating >=
threshold -> 1, below -> 0, unrated -> -1, held fixed during CD and left out of the gradient).
Scores are p(v = 1 | h) after one mean-field pass from the user's own vector; they are also
the ranking. ``n_members`` RBMs are trained side by side from different initial weights and their
probabilities averaged (``RBMEnsemble``): each CD estimate is noisy, and the noise averages out.
"""

from __future__ import annotations

import copy
from typing import Any, cast

import torch
from torch import nn

from training.config import RBMParams
from training.data.encoding import prepare_implicit_data, prepare_rbm_data
from training.metrics.ranking import ranking_metrics
from training.models.base import BaseRecommender

VALIDATION_K = 10
WEIGHT_INIT_STD = 0.01


class RBMNet(nn.Module):
    """Raw ratings [batch, n_items] -> (p(v=1|h), the same as ranking), each [batch, n_items]."""

    threshold: torch.Tensor  # a buffer (register_buffer), declared for the type checker

    def __init__(self, n_items: int, params: RBMParams, threshold: int = 3) -> None:
        super().__init__()
        self.encoding = params.encoding
        # A buffer, so checkpoints and exported graphs carry the threshold they were trained with.
        self.register_buffer("threshold", torch.tensor(float(threshold)))
        self.weight = nn.Parameter(torch.randn(params.n_hidden, n_items) * WEIGHT_INIT_STD)
        self.hidden_bias = nn.Parameter(torch.zeros(params.n_hidden))
        self.visible_bias = nn.Parameter(torch.zeros(n_items))

    def encode(self, ratings: torch.Tensor) -> torch.Tensor:
        if self.encoding == "implicit":
            return prepare_implicit_data(ratings)
        return prepare_rbm_data(ratings, self.threshold)

    def hidden_probs(self, visible: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(visible @ self.weight.t() + self.hidden_bias)

    def visible_probs(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(hidden @ self.weight + self.visible_bias)

    def free_energy(self, visible: torch.Tensor) -> torch.Tensor:
        """F(v) = -b·v - Σ softplus(W v + c); CD lowers it on data relative to samples."""
        return -(visible @ self.visible_bias) - nn.functional.softplus(
            visible @ self.weight.t() + self.hidden_bias
        ).sum(dim=1)

    def forward(self, ratings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Unknown (-1) units carry no evidence, so they enter the hidden pass as 0.
        visible = self.encode(ratings).clamp(min=0.0)
        probabilities = self.visible_probs(self.hidden_probs(visible))
        return probabilities, probabilities


class RBMEnsemble(nn.Module):
    """Raw ratings -> (mean of the members' p(v=1|h), the same as ranking)."""

    def __init__(self, n_items: int, params: RBMParams, threshold: int = 3) -> None:
        super().__init__()
        self.members = nn.ModuleList(
            [RBMNet(n_items, params, threshold) for _ in range(params.n_members)]
        )
        self.register_load_state_dict_pre_hook(_single_rbm_is_member_0)

    def rbms(self) -> list[RBMNet]:
        """The members, typed (iterating an nn.ModuleList yields plain modules)."""
        return [cast(RBMNet, member) for member in self.members]

    def member_probabilities(self, ratings: torch.Tensor) -> torch.Tensor:
        """Every member's p(v=1|h) [members, batch, n_items]."""
        return torch.stack([member(ratings)[0] for member in self.members])

    def forward(self, ratings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probabilities = self.member_probabilities(ratings).mean(dim=0)
        return probabilities, probabilities


def _single_rbm_is_member_0(
    module: nn.Module, state_dict: dict[str, Any], prefix: str, *_: object
) -> None:
    """Checkpoints from before ensembles held one RBM at the top level: it is member 0."""
    for key in [k for k in state_dict if k.startswith(prefix) and "." not in k[len(prefix) :]]:
        state_dict[f"{prefix}members.0.{key[len(prefix) :]}"] = state_dict.pop(key)


class RBMRecommender(BaseRecommender[RBMParams, RBMEnsemble]):
    name = "rbm"
    params_class = RBMParams
    monitor = "val_ndcg_loss"  # 1 - NDCG@10 on validation items: lower is better

    def __init__(
        self,
        params: RBMParams,
        n_items: int,
        device: str | torch.device = "cpu",
        threshold: int = 3,
    ) -> None:
        self.threshold = threshold
        super().__init__(params, n_items, device)

    def build_model(self) -> RBMEnsemble:
        return RBMEnsemble(self.n_items, self.params, self.threshold)

    def fit_setup(self, train: torch.Tensor, generator: torch.Generator) -> None:
        self.best_members: list[tuple[float, dict[str, torch.Tensor]]] = [(-1.0, {})] * len(
            self.model.members
        )
        self.velocity = [
            [torch.zeros_like(p) for p in member.parameters()] for member in self.model.members
        ]
        # Sampling needs a generator on the tensors' device; on CPU the loop's own one is it.
        self.sampler = generator
        if self.device.type != "cpu":
            seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
            self.sampler = torch.Generator(device=self.device).manual_seed(seed)

    @torch.no_grad()
    def cd_step(self, batch: torch.Tensor, generator: torch.Generator, member: int = 0) -> float:
        """One CD-k update of one member on a batch of raw rating vectors; returns the
        reconstruction error."""
        net = self.model.rbms()[member]
        velocity = self.velocity[member]
        encoded = net.encode(batch)
        known = (encoded >= 0).to(encoded.dtype)
        v0 = encoded.clamp(min=0.0)
        ph0 = net.hidden_probs(v0)
        vk = v0
        hk = torch.bernoulli(ph0, generator=generator)
        for _ in range(self.params.cd_k):
            vk = torch.bernoulli(net.visible_probs(hk), generator=generator) * known
            hk = torch.bernoulli(net.hidden_probs(vk), generator=generator)
        phk = net.hidden_probs(vk)
        size = batch.shape[0]
        grads = (
            (ph0.t() @ v0 - phk.t() @ vk) / size,
            (ph0 - phk).mean(dim=0),
            ((v0 - vk) * known).sum(dim=0) / size,
        )
        params = (net.weight, net.hidden_bias, net.visible_bias)
        for i, (param, grad) in enumerate(zip(params, grads, strict=True)):
            decay = self.params.weight_decay * param if i == 0 else 0.0
            velocity[i].mul_(self.params.momentum).add_(self.params.lr * (grad - decay))
            param.add_(velocity[i])
        return float(((v0 - vk).abs() * known).sum() / known.sum().clamp(min=1.0))

    def train_epoch(self, train: torch.Tensor, generator: torch.Generator) -> float:
        order = torch.randperm(train.shape[0], generator=generator).to(train.device)
        errors = [
            self.cd_step(train[rows], self.sampler, member)
            for rows in order.split(self.params.batch_size)
            for member in range(len(self.model.members))
        ]
        return sum(errors) / max(len(errors), 1)

    def validate(self, inputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        # The members' probabilities once: the ensemble's ranking is their mean (its forward).
        members = self.model.member_probabilities(inputs)
        figures = ranking_metrics(members.mean(dim=0), inputs, targets, [VALIDATION_K])
        ndcg = figures[f"ndcg@{VALIDATION_K}"]
        result = {
            "val_ndcg_loss": 1.0 - ndcg,
            f"val_ndcg@{VALIDATION_K}": ndcg,
            f"val_recall@{VALIDATION_K}": figures[f"recall@{VALIDATION_K}"],
        }
        if len(self.model.members) > 1:
            for index, probabilities in enumerate(members):
                found = ranking_metrics(probabilities, inputs, targets, [VALIDATION_K])
                result[f"val_member{index}_ndcg@{VALIDATION_K}"] = found[f"ndcg@{VALIDATION_K}"]
        return result

    def end_epoch(self, figures: dict[str, float]) -> None:
        """Each member keeps its own best epoch: averaging RBMs each at its best beats
        averaging them at the ensemble's best epoch (validation NDCG@10 0.219 vs 0.217)."""
        for index, member in enumerate(self.model.members):
            value = figures.get(f"val_member{index}_ndcg@{VALIDATION_K}")
            if value is not None and value > self.best_members[index][0]:
                self.best_members[index] = (value, copy.deepcopy(member.state_dict()))

    def finish_training(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        if len(self.model.members) > 1:
            for member, (_, state) in zip(self.model.members, self.best_members, strict=True):
                member.load_state_dict(state)
