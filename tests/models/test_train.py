"""`train_model` end to end on the prepared ML-100K fixture: a few epochs, no MLflow."""

from __future__ import annotations

import pytest
import torch

from training.config import REPO_ROOT, Paths, load_params
from training.models import load_checkpoint
from training.train import MODEL_NAMES, train_model, train_summary

EPOCHS = 2
SMALL_HIDDEN = 32


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_train_model_writes_a_checkpoint_that_serves_the_same_scores(
    name, prepared, project_home, tmp_path
):
    tuned = load_params(REPO_ROOT / "params.yaml")
    # The pipeline as configured, with small networks: this checks the wiring, not the quality.
    params = tuned.model_copy(
        update={
            "sae": tuned.sae.model_copy(update={"hidden_layers": [20], "n_members": 1}),
            "rbm": tuned.rbm.model_copy(update={"n_hidden": SMALL_HIDDEN}),
        }
    )
    epochs_seen: list[int] = []
    result = train_model(
        name,
        params,
        Paths(project_home),
        track=False,
        progress=False,
        epochs=EPOCHS,
        checkpoint=tmp_path / f"{name}.pt",
        on_epoch=lambda epoch, loss, figures: epochs_seen.append(epoch),
    )

    assert result.run_id is None
    assert result.checkpoint.is_file()
    assert epochs_seen == list(range(1, EPOCHS + 1))
    assert 1 <= result.history.best_epoch <= EPOCHS
    summary = train_summary(result)
    assert summary["epochs_run"] == EPOCHS
    assert 0.0 <= result.test_metrics["test_ndcg_at_10"] <= 1.0

    recommender = load_checkpoint(result.checkpoint)
    assert recommender.name == name
    assert recommender.extra["item_ids"] == prepared.metadata["item_ids"]
    assert recommender.extra["test_metrics"] == result.test_metrics
    scores = recommender.predict(prepared.train[:50])
    assert scores.shape == (50, prepared.n_items)
    assert torch.isfinite(scores).all()
    if name == "sae":
        assert 0.5 < result.test_metrics["test_rmse"] < 1.5
        assert scores.min() >= 1.0 and scores.max() <= 5.0
    else:
        assert scores.min() > 0.0 and scores.max() < 1.0
