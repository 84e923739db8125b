"""Train the SAE and/or the RBM: validation carved from train, early stopping, best checkpoint,
every run tracked in MLflow (params, per-epoch curves, test metrics, plots, registered model).
"""

from __future__ import annotations

import csv
import json
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.config import Params, Paths, RBMParams, SAEParams, get_logger
from training.data.holdout import holdout
from training.data.preprocess import PreparedData, load_prepared
from training.metrics.ranking import ranking_metrics, rating_metrics
from training.models import RECOMMENDERS
from training.models.base import BaseRecommender, EpochCallback, History
from training.models.rbm import RBMRecommender
from training.models.sae import SAERecommender
from training.monitoring.training_metrics import TEXTFILE_NAME, write_training_textfile

log = get_logger("training")
MODEL_NAMES = tuple(RECOMMENDERS)


def resolve_device(choice: str) -> torch.device:
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is 'cuda' but no CUDA device is available")
    return torch.device(choice)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_recommender(
    name: str, params: Params, n_items: int, device: torch.device
) -> BaseRecommender:
    if name == SAERecommender.name:
        return SAERecommender(params.sae, n_items, device)
    if name == RBMRecommender.name:
        return RBMRecommender(params.rbm, n_items, device, threshold=params.data.rbm_threshold)
    raise KeyError(name)


def model_params(name: str, params: Params) -> SAEParams | RBMParams:
    return getattr(params, name)


@dataclass
class TrainResult:
    name: str
    checkpoint: Path
    history: History
    test_metrics: dict[str, float]
    run_id: str | None


def quick_test_metrics(
    recommender: BaseRecommender, data: PreparedData, params: Params
) -> dict[str, float]:
    """The headline test figures logged with every run (the full report is `evaluate`'s job)."""
    scores, ranking = recommender.predict_both(data.train)
    figures = ranking_metrics(
        ranking,
        data.train,
        data.test,
        params.evaluate.k_values,
        params.evaluate.relevance_threshold,
    )
    figures.pop("n_users", None)
    if recommender.rating_scores:
        figures.update(rating_metrics(scores, data.test))
    return {f"test_{k.replace('@', '_at_')}": v for k, v in figures.items()}


def train_model(
    name: str,
    params: Params,
    paths: Paths | None = None,
    track: bool = True,
    progress: bool = True,
    on_epoch: EpochCallback | None = None,
    epochs: int | None = None,
    checkpoint: Path | None = None,
) -> TrainResult:
    """Train one model on the prepared dataset; returns where its best checkpoint went."""
    paths = paths or Paths()
    seed_everything(params.train.seed)
    if params.train.torch_threads:
        torch.set_num_threads(params.train.torch_threads)
    data = load_prepared(paths.prepared(params.data.dataset))
    fit_part, val_part = holdout(data.train, params.train.val_fraction, params.train.seed)
    device = resolve_device(params.train.device)
    recommender = build_recommender(name, params, data.n_items, device)
    n_epochs = epochs or model_params(name, params).epochs
    checkpoint = checkpoint or paths.checkpoints / f"{name}.pt"

    run = None
    if track:
        import mlflow

        from training.tracking import configure_mlflow

        configure_mlflow(params.mlflow.experiment_name, paths)
        run = mlflow.start_run(run_name=f"train-{name}", nested=mlflow.active_run() is not None)
        mlflow.set_tags(
            {
                "model": name,
                "dataset": data.metadata["dataset"],
                "split": data.metadata["split"],
                "device": str(device),
                "subset": data.metadata.get("subset") or "full",
            }
        )
        mlflow.log_params(
            {f"{name}.{k}": v for k, v in model_params(name, params).model_dump().items()}
        )
        mlflow.log_params(
            {
                "train.seed": params.train.seed,
                "train.val_fraction": params.train.val_fraction,
                "epochs": n_epochs,
            }
        )

    def epoch_hook(epoch: int, loss: float, figures: dict[str, float]) -> None:
        recommender.log_metrics({"train_loss": loss, **_metric_names(figures)}, step=epoch)
        if on_epoch is not None:
            on_epoch(epoch, loss, figures)

    try:
        history = recommender.train(
            fit_part,
            val_part,
            n_epochs,
            params.train.early_stopping,
            seed=params.train.seed,
            on_epoch=epoch_hook,
            progress=progress,
        )
        test_metrics = quick_test_metrics(recommender, data, params)
        extra = {
            "dataset": data.metadata["dataset"],
            "subset": data.metadata.get("subset"),
            "split": data.metadata["split"],
            "item_ids": data.metadata["item_ids"],
            "test_metrics": test_metrics,
            "mlflow_run_id": run.info.run_id if run else None,
        }
        recommender.save_model(checkpoint, extra)
        write_training_textfile(
            paths.data / "metrics" / TEXTFILE_NAME,
            name,
            history,
            monitor=recommender.monitor,
            device=device,
        )
        if run is not None:
            _log_run_outputs(recommender, history, test_metrics, checkpoint, params)
    finally:
        if run is not None:
            import mlflow

            mlflow.end_run()
    return TrainResult(name, checkpoint, history, test_metrics, run.info.run_id if run else None)


def _metric_names(figures: dict[str, float]) -> dict[str, float]:
    """MLflow metric names may not contain '@'."""
    return {k.replace("@", "_at_"): v for k, v in figures.items()}


def _log_run_outputs(
    recommender: BaseRecommender,
    history: History,
    test_metrics: dict[str, float],
    checkpoint: Path,
    params: Params,
) -> None:
    import mlflow

    from training.registry import register_model
    from training.tracking import log_model_description

    mlflow.log_metrics(
        {
            **test_metrics,
            "best_epoch": history.best_epoch,
            "seconds_to_best": history.seconds_to_best,
            "seconds_total": history.seconds_total,
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        plot = Path(tmp) / f"{recommender.name}_loss_curve.png"
        plot_history(history, recommender.monitor, plot, title=recommender.name.upper())
        mlflow.log_artifact(str(plot), artifact_path="plots")
        summary = Path(tmp) / "history.json"
        summary.write_text(json.dumps(history.to_dict(), indent=1), encoding="utf-8")
        mlflow.log_artifact(str(summary))
    mlflow.log_artifact(str(checkpoint), artifact_path="checkpoint")
    log_model_description(recommender.name, recommender.model, history)
    register_model(recommender, params, test_metrics)


def plot_history(history: History, monitor: str, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = range(1, len(history.train_loss) + 1)
    fig, left = plt.subplots(figsize=(7, 4))
    left.plot(epochs, history.train_loss, label="train loss", color="tab:blue")
    left.set_xlabel("epoch")
    left.set_ylabel("train loss")
    right = left.twinx()
    right.plot(epochs, [v[monitor] for v in history.validation], label=monitor, color="tab:orange")
    right.set_ylabel(monitor)
    right.axvline(history.best_epoch, color="grey", linestyle="--", linewidth=1)
    fig.suptitle(f"{title}: best epoch {history.best_epoch}")
    fig.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# The K of a training stage's headline test figures (the nearest one evaluated when not 10).
SUMMARY_K = 10
SUMMARY_TEST_FIGURES = ("test_rmse", "test_mae", "test_precision_at_{k}", "test_ndcg_at_{k}")
CURVE_FILE = "train_{model}.csv"  # the learning curve a training stage writes (a DVC plot)


def train_summary(result: TrainResult) -> dict[str, Any]:
    """The figures DVC tracks for a training stage (``data/metrics/train_<model>.json``): the
    best epoch and its time, and the headline test figures (those the model has) at SUMMARY_K.
    Every test figure is in the checkpoint and the MLflow run; the per-epoch figures are the
    learning curve (``write_learning_curve``)."""
    test = result.test_metrics
    ks = {int(name.rsplit("_at_", 1)[1]) for name in test if "_at_" in name}
    k = min(ks, key=lambda k: (abs(k - SUMMARY_K), k)) if ks else SUMMARY_K
    names = [name.format(k=k) for name in SUMMARY_TEST_FIGURES]
    return {
        "best_epoch": result.history.best_epoch,
        "best_validation": result.history.best_value,
        "epochs_run": len(result.history.train_loss),
        "seconds_to_best": round(result.history.seconds_to_best, 2),
        "seconds_total": round(result.history.seconds_total, 2),
        **{name: test[name] for name in names if name in test},
    }


def learning_curve(history: History) -> list[dict[str, float]]:
    """One row per epoch: the epoch (from 1), its training loss and its validation figures."""
    return [
        {"epoch": epoch, "train_loss": round(loss, 6)}
        | {name: round(float(value), 6) for name, value in figures.items()}
        for epoch, (loss, figures) in enumerate(
            zip(history.train_loss, history.validation, strict=True), start=1
        )
    ]


def write_learning_curve(history: History, path: Path) -> Path:
    """The learning curve as CSV (``dvc plots show`` draws it; dvc.yaml names the columns)."""
    rows = learning_curve(history)
    columns = list(dict.fromkeys(name for row in rows for name in row)) or ["epoch", "train_loss"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)
    return path
