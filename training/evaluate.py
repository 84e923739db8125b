"""One evaluation protocol for every model: the SAE, the RBM and the two baselines.

Candidates are the items a user did not rate in train; relevant items are their test ratings >=
the threshold; users are the test users with at least one relevant item. ``evaluate`` writes
the full report (JSON, Markdown, HTML, plots), the flat figures DVC tracks, and an MLflow run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import torch
import typer

from handlers import recommendation as rec
from training.baselines import fit_baselines
from training.config import ConfigError, Params, Paths, get_logger, load_params
from training.data.holdout import holdout
from training.data.preprocess import PreparedData, load_prepared
from training.metrics.beyond_accuracy import (
    business_figures,
    catalog_coverage,
    genre_matrix,
    hit_rate,
    intra_list_diversity,
    item_cold_start,
    item_popularity,
    median_popularity,
    novelty,
    user_cold_start,
)
from training.metrics.ranking import headline_k, ranking_metrics, rating_metrics, top_k
from training.models import load_checkpoint
from training.models.base import BaseRecommender

log = get_logger("evaluation")
NEURAL_MODELS = ("sae", "rbm")
HYBRID = rec.HYBRID  # at the served default weights
HYBRID_TUNED = "hybrid_tuned"  # at the weights that scored best on validation
HYBRID_WEIGHT_GRID = tuple(step / 10 for step in range(11))  # w_sae; w_rbm = 1 - w_sae
METRICS_FILE = "evaluation.json"


def evaluate_scores(
    scores: torch.Tensor,
    train: torch.Tensor,
    test: torch.Tensor,
    rating_scores: bool = False,
    k_values: Sequence[int] = (5, 10, 20),
    threshold: float = 4.0,
    item_genres: Sequence[Sequence[str]] | None = None,
    ranking: torch.Tensor | None = None,
) -> dict[str, Any]:
    """Every figure of one model's scores [users, items] on the test matrix.

    Rating metrics (on ``scores``) only when they are predicted ratings; every ranking figure
    from ``ranking``, what the model serves its lists by (default: ``scores``); diversity only
    with genres.
    """
    ranking = scores if ranking is None else ranking
    if not (scores.shape == ranking.shape == train.shape == test.shape):
        raise ValueError(
            f"scores {tuple(scores.shape)}, ranking {tuple(ranking.shape)}, train "
            f"{tuple(train.shape)} and test {tuple(test.shape)} must have the same shape"
        )
    scores, train, test = scores.float().cpu(), train.float().cpu(), test.float().cpu()
    ranking = ranking.float().cpu()
    k_values = sorted(set(k_values))
    result: dict[str, Any] = {"rating_scores": rating_scores}
    if rating_scores:
        result["rating"] = rating_metrics(scores, test)
    result["ranking"] = ranking_metrics(ranking, train, test, k_values, threshold)

    users = (test >= threshold).any(dim=1)
    relevant = test[users] >= threshold
    recommended = top_k(ranking[users], train[users] > 0, max(k_values))
    popularity = item_popularity(train)
    genres = genre_matrix(item_genres) if item_genres is not None else None
    beyond: dict[str, float] = {}
    business: dict[str, float] = {}
    for k in k_values:
        lists = recommended[:, :k]
        beyond[f"coverage@{k}"] = catalog_coverage(lists, train.shape[1])
        beyond[f"novelty@{k}"] = novelty(lists, popularity, train.shape[0])
        beyond[f"median_popularity@{k}"] = median_popularity(lists, popularity)
        if genres is not None:
            beyond[f"diversity@{k}"] = intra_list_diversity(lists, genres)
        result["ranking"][f"hit_rate@{k}"] = hit_rate(lists, relevant)
        business.update(business_figures(lists, test[users], k))
    result["beyond_accuracy"] = beyond
    result["business"] = business
    k = headline_k(k_values)
    result["cold_start"] = {
        "k": k,
        "users": user_cold_start(ranking, train, test, k, threshold, rating_scores, scores),
        "items": item_cold_start(ranking, train, test, k, threshold, rating_scores, scores),
    }
    return result


def evaluate_model(
    recommender: BaseRecommender, train: torch.Tensor, test: torch.Tensor, **kwargs: Any
) -> dict[str, Any]:
    """``evaluate_scores`` of a recommender's (scores, ranking) for the train matrix; rating
    metrics when its scores are predicted ratings (``rating_scores``)."""
    scores, ranking = recommender.predict_both(train)
    return evaluate_scores(
        scores, train, test, rating_scores=recommender.rating_scores, ranking=ranking, **kwargs
    )


def flat_figures(result: dict[str, Any]) -> dict[str, float]:
    """The scalar figures of one model (rating, ranking, beyond-accuracy, business), for DVC."""
    flat: dict[str, float] = {}
    for section in ("rating", "ranking", "beyond_accuracy", "business"):
        for name, value in result.get(section, {}).items():
            if name != "n_users" and not (isinstance(value, float) and math.isnan(value)):
                flat[name] = round(float(value), 6)
    return flat


def mlflow_name(name: str) -> str:
    """MLflow metric names may not contain '@'."""
    return name.replace("@", "_at_")


def _check_catalogue(name: str, extra: dict, data: PreparedData, path: Path) -> None:
    item_ids = extra.get("item_ids")
    if item_ids is not None and item_ids != data.metadata["item_ids"]:
        raise ConfigError(
            f"{path}: the {name} checkpoint was trained on another catalogue "
            f"({extra.get('dataset')}) than data/preprocessed/{data.metadata['dataset']}; "
            "retrain it (`dvc repro`)"
        )


def hybrid_ranking(
    rankings: dict[str, torch.Tensor], seen: torch.Tensor, weights: dict[str, float]
) -> torch.Tensor:
    """The hybrid's served ranking for every row: the handlers' mix (``rec.hybrid_scores``)."""
    return rec.hybrid_scores(rankings, ~seen, [weights] * seen.shape[0])


def tune_hybrid_weights(
    recommenders: dict[str, Any], train: torch.Tensor, params: Params
) -> dict[str, Any]:
    """w_sae on HYBRID_WEIGHT_GRID by validation NDCG@k (held out of train as in training)."""
    fit, val = holdout(train, params.train.val_fraction, params.train.seed)
    rankings = {name: recommenders[name].rank_scores(fit) for name in rec.HYBRID_PARTS}
    k = headline_k(params.evaluate.k_values)
    figures = {}
    for w_sae in HYBRID_WEIGHT_GRID:
        weights = rec.parse_weights({rec.SAE: w_sae, rec.RBM: 1.0 - w_sae}, rec.HYBRID_PARTS)
        mixed = hybrid_ranking(rankings, fit > 0, weights)
        figures[w_sae] = ranking_metrics(mixed, fit, val, [k], params.evaluate.relevance_threshold)[
            f"ndcg@{k}"
        ]
    best = max(figures, key=lambda w: (figures[w], -abs(w - 0.5)))
    return {
        "weights": {rec.SAE: best, rec.RBM: round(1.0 - best, 6)},
        f"val_ndcg@{k}": {str(w): round(v, 6) for w, v in figures.items()},
    }


def evaluate_models(params: Params, paths: Paths) -> dict[str, Any]:
    """Score the SAE, the RBM, the hybrid (default and validation-tuned weights) and the
    baselines with one protocol; the full report."""
    data = load_prepared(paths.prepared(params.data.dataset))
    item_genres = [movie["genres"] for movie in data.movies]
    settings: dict[str, Any] = {  # evaluate_scores' keyword arguments
        "k_values": params.evaluate.k_values,
        "threshold": float(params.evaluate.relevance_threshold),
        "item_genres": item_genres,
    }
    models: dict[str, Any] = {}
    training_runs: dict[str, str | None] = {}
    recommenders: dict[str, Any] = {}
    for name in NEURAL_MODELS:
        path = paths.checkpoints / f"{name}.pt"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: no checkpoint; train it first (`movierec train --model {name}`)"
            )
        recommender = recommenders[name] = load_checkpoint(path)
        extra = getattr(recommender, "extra", {}) or {}
        _check_catalogue(name, extra, data, path)
        training_runs[name] = extra.get("mlflow_run_id")
        models[name] = evaluate_model(recommender, data.train, data.test, **settings)
        models[name]["best_epoch"] = recommender.history.best_epoch
        models[name]["seconds_to_best"] = round(recommender.history.seconds_to_best, 2)
        if recommender.history.choices:
            models[name]["choices"] = recommender.history.choices
    rankings = {name: recommenders[name].rank_scores(data.train) for name in rec.HYBRID_PARTS}
    tuned = tune_hybrid_weights(recommenders, data.train, params)
    for name, weights in (
        (HYBRID, rec.parse_weights(None, rec.HYBRID_PARTS)),
        (HYBRID_TUNED, tuned["weights"]),
    ):
        mixed = hybrid_ranking(rankings, data.train > 0, weights)
        models[name] = evaluate_scores(mixed, data.train, data.test, **settings)
        models[name]["weights"] = weights
    models[HYBRID_TUNED]["choices"] = {"weights": tuned}
    for baseline in fit_baselines(data.train):
        models[baseline.name] = evaluate_scores(
            baseline.predict(data.train),
            data.train,
            data.test,
            rating_scores=baseline.rating_scores,
            **settings,
        )
    meta = data.metadata
    return {
        "dataset": meta["dataset"],
        "split": meta["split"],
        "subset": meta.get("subset"),
        "n_users": meta["n_users"],
        "n_items": meta["n_items"],
        "n_train": meta["n_train"],
        "n_test": meta["n_test"],
        "protocol": {
            "k_values": list(params.evaluate.k_values),
            "relevance_threshold": params.evaluate.relevance_threshold,
            "headline_k": headline_k(params.evaluate.k_values),
            "candidates": "items the user did not rate in train",
            "relevant": f"test ratings >= {params.evaluate.relevance_threshold}",
            "users": "test users with at least one relevant item",
        },
        "training_runs": training_runs,
        "models": models,
    }


# What DVC tracks of each model (``dvc metrics show``): the rating figures where the model
# predicts ratings, and the ranking and beyond-accuracy headline at the headline K. Every other
# figure stays in the report (data/reports/evaluation.json) and the MLflow run.
HEADLINE_RATING = ("rmse", "mae")
HEADLINE_AT_K = ("precision", "ndcg", "coverage", "median_popularity")


def headline_figures(result: dict[str, Any], k: int) -> dict[str, float]:
    """One model's headline figures (those it has) out of its ``flat_figures``."""
    flat = flat_figures(result)
    names = [*HEADLINE_RATING, *(f"{name}@{k}" for name in HEADLINE_AT_K)]
    return {name: flat[name] for name in names if name in flat}


def write_metrics(report: dict[str, Any], path: Path) -> Path:
    """The DVC metrics file: every model's headline figures (the full report is elsewhere)."""
    k = report["protocol"]["headline_k"]
    figures = {name: headline_figures(result, k) for name, result in report["models"].items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return path


def log_evaluation_run(report: dict[str, Any], folder: Path, params: Params, paths: Paths) -> str:
    """One MLflow run "evaluate": every model's figures, the report and its plots, and tags
    pointing at each model's training run."""
    import mlflow

    from training.tracking import configure_mlflow

    configure_mlflow(params.mlflow.experiment_name, paths)
    with mlflow.start_run(run_name="evaluate") as run:
        tags = {
            "stage": "evaluate",
            "dataset": report["dataset"],
            "split": report["split"],
            "subset": report["subset"] or "full",
        }
        tags.update(
            {
                f"train_run.{name}": run_id
                for name, run_id in report["training_runs"].items()
                if run_id
            }
        )
        mlflow.set_tags(tags)
        mlflow.log_params({f"evaluate.{k}": v for k, v in params.evaluate.model_dump().items()})
        mlflow.log_metrics(
            {
                f"{model}.{mlflow_name(name)}": value
                for model, result in report["models"].items()
                for name, value in flat_figures(result).items()
            }
        )
        mlflow.log_artifacts(str(folder), artifact_path="report")
        return run.info.run_id


def evaluate_command(
    params: Annotated[Path, typer.Option("--params", help="params.yaml to read.")] = Path(
        "params.yaml"
    ),
    track: Annotated[bool, typer.Option(help="Log an MLflow run 'evaluate'.")] = True,
    reports: Annotated[
        Path | None, typer.Option(help="Report folder; default data/reports.")
    ] = None,
    metrics: Annotated[
        Path | None,
        typer.Option(help="Flat figures for DVC; default data/metrics/evaluation.json."),
    ] = None,
) -> None:
    """Score SAE, RBM and the baselines with one protocol; write the report and DVC metrics."""
    from training.report import summary_table, write_report

    loaded = load_params(params)
    paths = Paths()
    report = evaluate_models(loaded, paths)
    folder = reports or paths.reports
    write_report(report, folder)
    metrics_path = write_metrics(report, metrics or paths.data / "metrics" / METRICS_FILE)
    if track:
        run_id = log_evaluation_run(report, folder, loaded, paths)
        log.info("evaluation logged to MLflow run %s", run_id)
    typer.echo(summary_table(report))
    typer.echo(f"report: {folder / 'evaluation.md'}  metrics: {metrics_path}")
