"""The interface every recommender implements, and the training loop they share.

A model's inference module maps a batch of raw rating vectors (0 = unrated, 1-5 stars, columns in
catalogue order) to two tensors of the same shape: ``scores``, the model's own output (the SAE's
predicted ratings, the RBM's probabilities), and ``ranking``, what the served top-k is taken from
(higher = better; the RBM's is its scores). Encodings live inside that module, so exported graphs
take raw ratings too; a new user is served by folding in their vector.
"""

from __future__ import annotations

import copy
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, Self, TypeVar

import torch
from pydantic import BaseModel
from torch import nn
from tqdm import tqdm

from training.config import EarlyStoppingParams, get_logger

log = get_logger("training")
CHECKPOINT_FORMAT = 1
ParamsT = TypeVar("ParamsT", bound=BaseModel)
ModelT = TypeVar("ModelT", bound=nn.Module)


@dataclass
class History:
    """Per-epoch figures of a training run, and where the best epoch was."""

    train_loss: list[float] = field(default_factory=list)
    validation: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_value: float = math.inf
    stopped_early: bool = False
    seconds_to_best: float = 0.0
    seconds_total: float = 0.0
    # What was chosen on validation after the last epoch (e.g. the SAE's rank weight).
    choices: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class EarlyStopping:
    """Stops once the monitored value (lower = better) has not improved by min_delta for
    patience epochs."""

    def __init__(self, params: EarlyStoppingParams) -> None:
        self.patience = params.patience
        self.min_delta = params.min_delta
        self.best = math.inf
        self.bad_epochs = 0

    def step(self, value: float) -> bool:
        """Record one epoch; returns True when this epoch is the new best."""
        if value < self.best - self.min_delta:
            self.best = value
            self.bad_epochs = 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.bad_epochs >= self.patience


EpochCallback = Callable[[int, float, dict[str, float]], None]


class BaseRecommender(ABC, Generic[ParamsT, ModelT]):
    """build_model / train / predict / save_model / load_model / log_metrics (scoring a model on
    a test split is ``training.evaluate.evaluate_model``'s job). Generic in the model's
    parameters (a pydantic section of params.yaml) and its inference module."""

    name: ClassVar[str]
    # Set on the class (a ClassVar cannot name a type variable).
    params_class: type[ParamsT]
    # The validation figure that picks the best epoch (lower is better).
    monitor: ClassVar[str]

    def __init__(self, params: ParamsT, n_items: int, device: str | torch.device = "cpu") -> None:
        self.params = params
        self.n_items = n_items
        self.device = torch.device(device)
        self.model: ModelT = self.build_model().to(self.device)
        self.history = History()
        # What a checkpoint carries beside the weights (dataset, item_ids, test_metrics, ...).
        self.extra: dict[str, Any] = {}

    # -- what each model supplies -------------------------------------------------------------
    @abstractmethod
    def build_model(self) -> ModelT:
        """The inference module: raw ratings [batch, n_items] -> scores [batch, n_items]."""

    @abstractmethod
    def fit_setup(self, train: torch.Tensor, generator: torch.Generator) -> None:
        """Called once before the first epoch with the training matrix (e.g. to fit biases)."""

    @abstractmethod
    def train_epoch(self, train: torch.Tensor, generator: torch.Generator) -> float:
        """One pass over the training users; returns the mean training loss."""

    @abstractmethod
    def validate(self, inputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        """Figures on held-out ratings, given the ratings the model may see; includes `monitor`."""

    def end_epoch(self, figures: dict[str, float]) -> None:  # noqa: B027 - optional hook
        """Called after each epoch's validation (a part with its own best epoch keeps it)."""

    def finish_training(  # noqa: B027 - optional hook
        self, inputs: torch.Tensor, targets: torch.Tensor
    ) -> None:
        """Called once with the best epoch's weights loaded (choices made on validation)."""

    # -- shared behaviour -----------------------------------------------------------------------
    def train(
        self,
        train: torch.Tensor,
        val: torch.Tensor,
        epochs: int,
        early_stopping: EarlyStoppingParams,
        seed: int = 0,
        on_epoch: EpochCallback | None = None,
        progress: bool = True,
    ) -> History:
        """Train with early stopping on `monitor`; the best epoch's weights are kept."""
        generator = torch.Generator().manual_seed(seed)
        train, val = train.to(self.device), val.to(self.device)
        self.fit_setup(train, generator)
        stopper = EarlyStopping(early_stopping)
        best_state = copy.deepcopy(self.model.state_dict())
        history = self.history = History()
        started = time.perf_counter()
        bar = tqdm(
            range(1, epochs + 1), desc=f"train {self.name}", disable=not progress, leave=False
        )
        for epoch in bar:
            self.model.train()
            loss = self.train_epoch(train, generator)
            self.model.eval()
            with torch.no_grad():
                figures = self.validate(train, val)
            history.train_loss.append(loss)
            history.validation.append(figures)
            value = figures[self.monitor]
            self.end_epoch(figures)
            if stopper.step(value):
                best_state = copy.deepcopy(self.model.state_dict())
                history.best_epoch, history.best_value = epoch, value
                history.seconds_to_best = time.perf_counter() - started
            bar.set_postfix(loss=f"{loss:.4f}", **{self.monitor: f"{value:.4f}"})
            if on_epoch is not None:
                on_epoch(epoch, loss, figures)
            if stopper.should_stop:
                history.stopped_early = True
                break
        history.seconds_total = time.perf_counter() - started
        self.model.load_state_dict(best_state)
        self.model.eval()
        with torch.no_grad():
            self.finish_training(train, val)
        log.info(
            "%s: best %s %.4f at epoch %d (%.1fs)",
            self.name,
            self.monitor,
            history.best_value,
            history.best_epoch,
            history.seconds_to_best,
        )
        return history

    @torch.no_grad()
    def predict_both(
        self, ratings: torch.Tensor, batch_size: int = 1024
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(scores, ranking) for raw rating vectors, batched to bound memory."""
        self.model.eval()
        parts = [
            [out.cpu() for out in self.model(chunk.to(self.device))]
            for chunk in ratings.split(batch_size)
        ]
        if not parts:
            empty = torch.empty(0, self.n_items)
            return empty, empty
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def predict(self, ratings: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """The model's scores (the SAE's predicted ratings) for raw rating vectors."""
        return self.predict_both(ratings, batch_size)[0]

    def rank_scores(self, ratings: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """What the served top-k ranks by, for raw rating vectors."""
        return self.predict_both(ratings, batch_size)[1]

    #: Whether `scores` are predicted ratings (so RMSE/MAE apply).
    rating_scores: ClassVar[bool] = False

    def save_model(self, path: Path | str, extra: dict[str, Any] | None = None) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(
            {
                "format": CHECKPOINT_FORMAT,
                "model": self.name,
                "params": self.params.model_dump(),
                "n_items": self.n_items,
                "state_dict": {k: v.cpu() for k, v in self.model.state_dict().items()},
                "history": self.history.to_dict(),
                "extra": extra or {},
            },
            tmp,
        )
        tmp.replace(path)  # never leave a half-written checkpoint under the real name
        return path

    @classmethod
    def load_model(cls, path: Path | str, device: str = "cpu") -> Self:
        checkpoint = torch.load(Path(path), map_location=device, weights_only=False)
        if checkpoint.get("model") != cls.name:
            raise ValueError(f"{path}: holds a {checkpoint.get('model')!r} model, not {cls.name!r}")
        recommender = cls(
            cls.params_class.model_validate(checkpoint["params"]), checkpoint["n_items"], device
        )
        recommender.model.load_state_dict(checkpoint["state_dict"])
        recommender.model.eval()
        recommender.history = History(**checkpoint.get("history", {}))
        recommender.extra = checkpoint.get("extra", {})
        return recommender

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Log to the active MLflow run, if any (training works without one)."""
        import mlflow

        if mlflow.active_run() is not None:
            mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)
