"""The evaluation protocol applied to what Triton serves: the exported ONNX graphs' own outputs.

``evaluate`` scores the checkpoints; this scores ``triton_repo/<model>/1/model*.onnx`` the way a
client sees them: NDCG@k and precision@k from the graph's ``top_ids`` (not from a top-k taken
here), RMSE from the SAE's ``scores``, the median popularity of the served lists, and the hybrid as
the ensemble chains it (sae and rbm, then hybrid_blend at the default weights). Float32 graphs are
what production serves on the GPU; the int8 twins are what the CPU configs serve. The DVC metrics
file (``data/metrics/served.json``) holds those figures per graph and model; the users scored,
K and the hybrid's weights are printed with them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
import typer

from handlers import recommendation as rec
from training.config import Paths, load_params
from training.data.preprocess import load_prepared
from training.export.onnx import onnx_path, run_onnx
from training.metrics.beyond_accuracy import item_popularity, median_popularity
from training.metrics.ranking import headline_k, rating_metrics
from training.serving import triton_names as tn
from training.serving.triton_client import hybrid_weights

METRICS_FILE = "served.json"
BATCH = 256  # users per graph call (the configs' max_batch_size)


def list_figures(
    top_ids: np.ndarray,
    item_ids: list[int],
    relevant: torch.Tensor,
    popularity: torch.Tensor,
    k: int,
) -> dict[str, float]:
    """NDCG@k, precision@k and the median popularity of served id lists [users, >= k]."""
    column_of = {movie: column for column, movie in enumerate(item_ids)}
    columns = torch.tensor([[column_of[int(m)] for m in row[:k]] for row in top_ids])
    hits = relevant.gather(1, columns).float()
    discounts = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float32))
    ideal = torch.clamp(relevant.sum(dim=1), max=k)
    idcg = torch.stack([discounts[: int(n)].sum() for n in ideal])
    return {
        f"ndcg@{k}": float(((hits * discounts).sum(dim=1) / idcg).mean()),
        f"precision@{k}": float(hits.mean(dim=1).mean()),
        f"median_popularity@{k}": median_popularity(columns, popularity),
    }


def evaluate_served(repo: Path, prepared: Path, k: int, threshold: float) -> dict[str, Any]:
    """Figures of every served model, float32 and int8 graphs, on the test users."""
    data = load_prepared(prepared)
    item_ids = [int(i) for i in data.metadata["item_ids"]]
    users = (data.test >= threshold).any(dim=1)
    train, test = data.train[users], data.test[users]
    relevant = test >= threshold
    popularity = item_popularity(data.train)
    ratings = train.numpy().astype(np.float32)
    weights = rec.parse_weights(None, rec.HYBRID_PARTS)
    blend_weights = hybrid_weights(weights[rec.SAE], weights[rec.RBM], len(ratings))
    result: dict[str, Any] = {"n_users": int(users.sum()), "k": k, "graphs": {}}
    for variant, filename in (("float32", tn.ONNX_FILENAME), ("int8", tn.ONNX_INT8_FILENAME)):
        outputs = {
            model: run_onnx(
                onnx_path(repo, model).with_name(filename), {tn.RATINGS.name: ratings}, BATCH
            )
            for model in tn.SCORING_MODELS
        }
        blend = run_onnx(
            onnx_path(repo, tn.HYBRID_BLEND),
            {
                tn.RATINGS.name: ratings,
                tn.SAE_RANKING.name: outputs[tn.SAE][tn.RANKING.name],
                tn.RBM_RANKING.name: outputs[tn.RBM][tn.RANKING.name],
                tn.WEIGHTS.name: blend_weights,
            },
            BATCH,
        )
        figures: dict[str, dict[str, Any]] = {
            model: list_figures(outputs[model][tn.TOP_IDS.name], item_ids, relevant, popularity, k)
            for model in tn.SCORING_MODELS
        }
        figures[tn.HYBRID] = list_figures(blend[tn.TOP_IDS.name], item_ids, relevant, popularity, k)
        figures[tn.HYBRID]["weights"] = weights
        # RMSE over every test rating (all users with one), as the checkpoints' report.
        every = run_onnx(
            onnx_path(repo, tn.SAE).with_name(filename),
            {tn.RATINGS.name: data.train.numpy().astype(np.float32)},
            BATCH,
        )
        predicted = torch.from_numpy(every[tn.SCORES.name])
        figures[tn.SAE]["rmse"] = rating_metrics(predicted, data.test)["rmse"]
        result["graphs"][variant] = figures
    return result


def served_metrics(report: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """The figures of ``evaluate_served``'s report, {graph: {model: {figure: value}}}, for DVC."""
    return {
        variant: {
            model: {name: value for name, value in values.items() if name != "weights"}
            for model, values in figures.items()
        }
        for variant, figures in report["graphs"].items()
    }


def evaluate_served_command(
    params: Annotated[Path, typer.Option("--params", help="params.yaml to read.")] = Path(
        "params.yaml"
    ),
    metrics: Annotated[
        Path | None, typer.Option(help="Figures for DVC; default data/metrics/served.json.")
    ] = None,
) -> None:
    """Score the exported ONNX graphs (what Triton serves) with the evaluation protocol."""
    loaded = load_params(params)
    paths = Paths()
    k = headline_k(loaded.evaluate.k_values)
    report = evaluate_served(
        paths.triton_repo,
        paths.prepared(loaded.data.dataset),
        k,
        float(loaded.evaluate.relevance_threshold),
    )
    target = metrics or paths.data / "metrics" / METRICS_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    figures = served_metrics(report)
    target.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    weights = next(iter(report["graphs"].values()))[tn.HYBRID]["weights"]
    typer.echo(f"{report['n_users']} test users, k {report['k']}, hybrid weights {weights}")
    for variant, models in figures.items():
        for model, shown in models.items():
            typer.echo(
                f"{variant:8} {model:7} " + "  ".join(f"{n} {v:.4f}" for n, v in shown.items())
            )
    typer.echo(f"metrics: {target}")
