"""What the DVC stages hand to DVC: headline figures as metrics, learning curves as plots.

``dvc metrics show`` lists every metrics file's figures side by side, so those files hold the
headline figures only (the full evaluation report is data/reports/evaluation.json); the
per-epoch figures are CSV plots whose columns dvc.yaml's plot definitions name.
"""

from __future__ import annotations

import csv
import json

import pytest
import torch
import yaml

from training.config import REPO_ROOT, load_params
from training.evaluate import evaluate_scores, flat_figures, write_metrics
from training.models.base import History
from training.served_evaluation import served_metrics
from training.train import (
    CURVE_FILE,
    MODEL_NAMES,
    TrainResult,
    build_recommender,
    learning_curve,
    train_summary,
    write_learning_curve,
)

TRAIN = torch.tensor([[5.0, 0, 0, 0, 0], [0, 0, 3, 0, 0], [0, 5, 0, 0, 0]])
TEST = torch.tensor([[0.0, 4, 0, 5, 2], [0, 0, 0, 0, 4], [3, 0, 0, 0, 0]])
SCORES = torch.tensor([[4.0, 1.1, 2.5, 3.8, 3.9], [1.2, 3.9, 4.0, 1.1, 2.5], [1, 2, 3, 4, 5]])
AT_4 = {"precision@4", "ndcg@4", "coverage@4", "median_popularity@4"}


def test_evaluation_metrics_are_each_models_headline_figures(tmp_path):
    settings = {"k_values": [2, 4], "threshold": 4.0}
    models = {
        "sae": evaluate_scores(SCORES, TRAIN, TEST, rating_scores=True, **settings),
        "most_popular": evaluate_scores(SCORES.flip(1), TRAIN, TEST, **settings),
    }
    report = {"protocol": {"headline_k": 4}, "models": models}

    saved = json.loads(write_metrics(report, tmp_path / "evaluation.json").read_text())

    assert set(saved) == {"sae", "most_popular"}
    assert set(saved["sae"]) == {"rmse", "mae"} | AT_4
    assert set(saved["most_popular"]) == AT_4
    for name, figures in saved.items():
        full = flat_figures(models[name])
        assert figures == {figure: full[figure] for figure in figures}
        assert len(full) > len(figures)  # the report keeps the rest


def test_served_metrics_keep_every_figure_but_not_the_weights():
    figures = {"ndcg@10": 0.4, "precision@10": 0.3, "median_popularity@10": 200.0}
    report = {
        "n_users": 456,
        "k": 10,
        "graphs": {
            variant: {
                "sae": {**figures, "rmse": 0.92},
                "rbm": dict(figures),
                "hybrid": {**figures, "weights": {"sae": 0.5, "rbm": 0.5}},
            }
            for variant in ("float32", "int8")
        },
    }
    assert served_metrics(report) == {
        variant: {"sae": {**figures, "rmse": 0.92}, "rbm": figures, "hybrid": figures}
        for variant in ("float32", "int8")
    }


def _result(test_metrics: dict[str, float]) -> TrainResult:
    history = History(train_loss=[1.0, 0.9], validation=[{"val_rmse": 1.1}, {"val_rmse": 1.0}])
    history.best_epoch, history.best_value = 2, 1.0
    return TrainResult("sae", REPO_ROOT / "sae.pt", history, test_metrics, None)


def test_train_summary_is_the_best_epoch_and_the_headline_test_figures():
    test = {f"test_{name}_at_{k}": 0.1 for name in ("precision", "ndcg", "map") for k in (5, 10)}
    summary = train_summary(_result({**test, "test_rmse": 0.9, "test_mae": 0.7, "test_r2": 0.3}))
    assert summary == {
        "best_epoch": 2,
        "best_validation": 1.0,
        "epochs_run": 2,
        "seconds_to_best": 0.0,
        "seconds_total": 0.0,
        "test_rmse": 0.9,
        "test_mae": 0.7,
        "test_precision_at_10": 0.1,
        "test_ndcg_at_10": 0.1,
    }
    # Without K 10, the nearest K evaluated; without rating figures, none.
    nearest = train_summary(_result({"test_ndcg_at_2": 0.2, "test_ndcg_at_20": 0.4}))
    assert {k: v for k, v in nearest.items() if k.startswith("test_")} == {"test_ndcg_at_2": 0.2}


def _plotted_fields(path: str) -> set[str]:
    """The columns of ``path`` that dvc.yaml's plots draw (stage plot outputs and top level)."""
    pipeline = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8"))
    fields: set[str] = set()
    for stage in pipeline["stages"].values():
        for out in stage.get("plots", []):
            for name, config in out.items():
                if name == path:
                    fields |= {config["x"], config["y"]}
    for definition in pipeline.get("plots", []):
        for config in definition.values():
            for name, ys in config["y"].items():
                if name == path:
                    fields |= {config["x"], *([ys] if isinstance(ys, str) else ys)}
    return fields


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_learning_curve_has_every_column_dvc_plots(name, tmp_path):
    params = load_params(REPO_ROOT / "params.yaml")
    params = params.model_copy(
        update={
            "sae": params.sae.model_copy(update={"hidden_layers": [8], "n_members": 1}),
            "rbm": params.rbm.model_copy(update={"n_hidden": 8}),
        }
    )
    generator = torch.Generator().manual_seed(0)
    ratings = torch.randint(1, 6, (40, 30), generator=generator).float()
    ratings *= torch.rand(40, 30, generator=generator) < 0.4
    held_out = torch.rand(40, 30, generator=generator) < 0.2
    train, val = ratings * ~held_out, ratings * held_out
    recommender = build_recommender(name, params, 30, torch.device("cpu"))
    history = recommender.train(train, val, 3, params.train.early_stopping, progress=False)

    path = write_learning_curve(history, tmp_path / CURVE_FILE.format(model=name))

    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["epoch"]) for row in rows] == list(range(1, len(history.train_loss) + 1))
    assert len(rows) == len(learning_curve(history)) >= 1
    plotted = _plotted_fields(f"data/plots/{path.name}")
    assert {"epoch", "train_loss"} < plotted, plotted
    assert plotted <= set(rows[0]), f"dvc.yaml plots {plotted - set(rows[0])} not in {path.name}"
