"""The shared training loop: early stopping, best-weight restore, checkpoints, logging."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import BaseModel
from torch import nn

from training.config import EarlyStoppingParams
from training.models.base import BaseRecommender, EarlyStopping


class ScriptedParams(BaseModel):
    n_items: int = 4


class ScoresAndRanking(nn.Linear):
    """A linear map under the model contract: (scores, ranking), the ranking here -scores."""

    def forward(self, ratings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = super().forward(ratings)
        return scores, -scores


class ScriptedRecommender(BaseRecommender):
    """A real recommender whose validation figures follow a script, so the loop's choices are known.

    Each epoch sets the single weight to the epoch number, so the restored weight says which
    epoch's state the loop kept.
    """

    name = "scripted"
    params_class = ScriptedParams
    monitor = "val_loss"
    script: list[float] = []

    def build_model(self) -> nn.Module:
        return ScoresAndRanking(self.n_items, self.n_items, bias=False)

    def fit_setup(self, train: torch.Tensor, generator: torch.Generator) -> None:
        self.epoch = 0

    def train_epoch(self, train: torch.Tensor, generator: torch.Generator) -> float:
        self.epoch += 1
        with torch.no_grad():
            self.model.weight.fill_(float(self.epoch))
        return 1.0 / self.epoch

    def validate(self, inputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        return {"val_loss": self.script[self.epoch - 1]}


def _train(script: list[float], patience: int, epochs: int = 20) -> ScriptedRecommender:
    recommender = ScriptedRecommender(ScriptedParams(), n_items=4)
    recommender.script = script
    data = torch.ones(3, 4)
    recommender.train(data, data, epochs, EarlyStoppingParams(patience=patience), progress=False)
    return recommender


def test_early_stopping_counts_only_real_improvements():
    stopper = EarlyStopping(EarlyStoppingParams(patience=2, min_delta=0.1))
    assert stopper.step(1.0) is True
    assert stopper.step(0.95) is False  # better, but by less than min_delta
    assert not stopper.should_stop
    assert stopper.step(0.95) is False
    assert stopper.should_stop
    assert stopper.best == 1.0


def test_training_stops_after_patience_and_restores_the_best_weights():
    # Best at epoch 3, then three epochs without improvement: patience 3 stops after epoch 6.
    recommender = _train([0.9, 0.7, 0.5, 0.6, 0.55, 0.8, 0.1, 0.1], patience=3)
    history = recommender.history
    assert history.stopped_early
    assert len(history.train_loss) == 6
    assert (history.best_epoch, history.best_value) == (3, 0.5)
    assert torch.all(recommender.model.weight == 3.0)  # epoch 3's weights, not the last epoch's
    assert not recommender.model.training


def test_training_runs_every_epoch_when_it_keeps_improving():
    recommender = _train([1.0 / (epoch + 1) for epoch in range(5)], patience=2, epochs=5)
    assert not recommender.history.stopped_early
    assert recommender.history.best_epoch == 5
    assert torch.all(recommender.model.weight == 5.0)


def test_save_and_load_round_trip(tmp_path):
    recommender = _train([0.5, 0.4, 0.3], patience=5, epochs=3)
    path = recommender.save_model(tmp_path / "scripted.pt", extra={"dataset": "toy"})
    loaded = ScriptedRecommender.load_model(path)
    ratings = torch.rand(2, 4)
    assert torch.equal(loaded.predict(ratings), recommender.predict(ratings))
    assert loaded.extra == {"dataset": "toy"}
    assert loaded.history.best_epoch == 3
    assert not path.with_suffix(".pt.tmp").exists()


def test_loading_another_models_checkpoint_is_refused(tmp_path):
    path = _train([0.5], patience=1, epochs=1).save_model(tmp_path / "scripted.pt")
    checkpoint = torch.load(path, weights_only=False)
    checkpoint["model"] = "other"
    torch.save(checkpoint, path)
    with pytest.raises(ValueError, match="not 'scripted'"):
        ScriptedRecommender.load_model(path)


def test_predict_batches_and_handles_an_empty_batch():
    recommender = _train([0.5], patience=1, epochs=1)
    ratings = torch.rand(5, 4)
    assert torch.allclose(recommender.predict(ratings, batch_size=2), recommender.predict(ratings))
    assert recommender.predict(torch.empty(0, 4)).shape == (0, 4)
    scores, ranking = recommender.predict_both(torch.empty(0, 4))
    assert scores.shape == ranking.shape == (0, 4)


def test_predict_is_the_scores_and_rank_scores_the_ranking():
    recommender = _train([0.5], patience=1, epochs=1)
    ratings = torch.rand(5, 4)
    scores, ranking = recommender.predict_both(ratings, batch_size=2)
    with torch.no_grad():
        expected = recommender.model(ratings)[0]
    assert torch.allclose(scores, expected)
    assert torch.allclose(ranking, -expected)  # the toy model's ranking, batched the same way
    assert torch.equal(recommender.predict(ratings, batch_size=2), scores)
    assert torch.equal(recommender.rank_scores(ratings, batch_size=2), ranking)


class HookedRecommender(ScriptedRecommender):
    """Records the loop's calls to the two hooks, and the weight the model held at each."""

    def fit_setup(self, train: torch.Tensor, generator: torch.Generator) -> None:
        super().fit_setup(train, generator)
        self.calls: list[tuple] = []

    def end_epoch(self, figures: dict[str, float]) -> None:
        self.calls.append(("end_epoch", dict(figures), float(self.model.weight[0, 0])))

    def finish_training(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        self.calls.append(
            ("finish", inputs.clone(), targets.clone(), float(self.model.weight[0, 0]))
        )
        self.history.choices["finished"] = True


def test_hooks_see_every_epoch_then_the_best_weights_once():
    recommender = HookedRecommender(ScriptedParams(), n_items=4)
    recommender.script = [0.9, 0.5, 0.7, 0.8]
    train, val = torch.ones(3, 4), torch.full((3, 4), 2.0)
    recommender.train(train, val, 10, EarlyStoppingParams(patience=2), progress=False)
    *epochs, finish = recommender.calls
    # One end_epoch per epoch run (early stopping after epoch 4), with that epoch's figures
    # and weights, before the loop restored anything.
    assert [(name, figures, weight) for name, figures, weight in epochs] == [
        ("end_epoch", {"val_loss": value}, float(epoch))
        for epoch, value in enumerate(recommender.script, start=1)
    ]
    name, inputs, targets, weight = finish
    assert name == "finish"
    assert weight == 2.0  # called with the best epoch's weights already loaded
    assert torch.equal(inputs, train) and torch.equal(targets, val)
    assert recommender.history.choices == {"finished": True}


def test_log_metrics_without_an_active_run_is_a_no_op():
    recommender = _train([0.5], patience=1, epochs=1)
    recommender.log_metrics({"val_loss": math.pi}, step=1)  # must not raise nor start a run
    import mlflow

    assert mlflow.active_run() is None
