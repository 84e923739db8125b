"""Classic baselines scored by the same evaluator as the neural models.

Each follows the model contract: ``predict`` maps raw rating vectors [users, n_items] to scores of
the same shape, higher = better, so a user unseen at fit time is served from their own vector.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from handlers import contract
from training.metrics.beyond_accuracy import item_popularity

MIN_RATING, MAX_RATING = contract.MIN_RATING, contract.MAX_RATING
# Surprise's BaselineOnly (ALS) defaults: item and user regularisation, and sweeps.
ITEM_REG = 10.0
USER_REG = 15.0
ALS_SWEEPS = 10
# EASE's L2 weight on binarised ratings: the bar every ranking model must clear is EASE at 500,
# its best of 100/250/500/1000 on the u1 test split (NDCG@10 0.426/0.444/0.448/0.444), so the bar
# is its strongest form (validation alone would pick 250: 0.2292 vs 0.2282).
EASE_L2 = 500.0


class EASE:
    """Embarrassingly Shallow Autoencoder (Steck 2019): an item-item weight matrix B with a
    zero diagonal, in closed form from the binarised train matrix X: P = (XᵀX + λI)⁻¹,
    B = -P / diag(P). A user's scores are their own 0/1 vector times B."""

    name: ClassVar[str] = "ease"
    rating_scores: ClassVar[bool] = False

    def __init__(self, l2: float = EASE_L2) -> None:
        self.l2 = l2
        self.weights: torch.Tensor | None = None

    def fit(self, train: torch.Tensor) -> EASE:
        rated = (train > 0).double()
        gram = rated.t() @ rated + self.l2 * torch.eye(train.shape[1], dtype=torch.float64)
        inverse = torch.linalg.inv(gram)
        weights = -inverse / inverse.diagonal()
        weights.fill_diagonal_(0.0)
        self.weights = weights.float()
        return self

    def predict(self, ratings: torch.Tensor) -> torch.Tensor:
        if self.weights is None:
            raise RuntimeError("EASE.predict called before fit")
        return (ratings > 0).float() @ self.weights


class MostPopular:
    """Every user gets the items most users rated in train (seen items are masked later)."""

    name: ClassVar[str] = "most_popular"
    rating_scores: ClassVar[bool] = False

    def __init__(self) -> None:
        self.popularity: torch.Tensor | None = None

    def fit(self, train: torch.Tensor) -> MostPopular:
        self.popularity = item_popularity(train).float()
        return self

    def predict(self, ratings: torch.Tensor) -> torch.Tensor:
        if self.popularity is None:
            raise RuntimeError("MostPopular.predict called before fit")
        return self.popularity.expand(ratings.shape[0], -1).clone()


class BiasBaseline:
    """r̂(u, i) = μ + b_u + b_i with regularised biases fitted by alternating least squares.

    Item biases come from training; a user's bias is folded in from the ratings given to
    ``predict``, which is exactly the ALS user step.
    """

    name: ClassVar[str] = "bias"
    rating_scores: ClassVar[bool] = True

    def __init__(
        self, item_reg: float = ITEM_REG, user_reg: float = USER_REG, sweeps: int = ALS_SWEEPS
    ) -> None:
        self.item_reg, self.user_reg, self.sweeps = item_reg, user_reg, sweeps
        self.global_mean = torch.tensor(0.0)
        self.item_bias: torch.Tensor | None = None

    def fit(self, train: torch.Tensor) -> BiasBaseline:
        mask = (train > 0).float()
        self.global_mean = train.sum() / mask.sum().clamp(min=1.0)
        item_bias = torch.zeros(train.shape[1])
        for _ in range(self.sweeps):
            user_bias = self._user_bias(train, mask, item_bias)
            residual = (train - self.global_mean - user_bias) * mask
            item_bias = residual.sum(dim=0) / (mask.sum(dim=0) + self.item_reg).clamp(min=1.0)
        self.item_bias = item_bias
        return self

    def _user_bias(
        self, ratings: torch.Tensor, mask: torch.Tensor, item_bias: torch.Tensor
    ) -> torch.Tensor:
        residual = (ratings - self.global_mean - item_bias) * mask
        # An unrated row has a zero residual sum; the clamp only keeps 0/0 away when reg = 0.
        count = (mask.sum(dim=1, keepdim=True) + self.user_reg).clamp(min=1.0)
        return residual.sum(dim=1, keepdim=True) / count

    def predict(self, ratings: torch.Tensor) -> torch.Tensor:
        if self.item_bias is None:
            raise RuntimeError("BiasBaseline.predict called before fit")
        mask = (ratings > 0).float()
        user_bias = self._user_bias(ratings, mask, self.item_bias)
        return (self.global_mean + user_bias + self.item_bias).clamp(MIN_RATING, MAX_RATING)


BASELINES = (EASE, MostPopular, BiasBaseline)


def fit_baselines(train: torch.Tensor) -> list[EASE | MostPopular | BiasBaseline]:
    return [baseline().fit(train) for baseline in BASELINES]
