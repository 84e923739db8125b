# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Model comparison
#
# Every model of the evaluation report (`data/reports/evaluation.json`, written by
# `movierec evaluate`) side by side, their learning curves from the MLflow training runs, a few
# real users' lists, and where the hybrid's weights put it between precision and novelty. The
# figures come from the project's own code: `training.evaluate`, `training.report`,
# `training.metrics`, the checkpoints through `training.models.load_checkpoint`.
# `MOVIEREC_HOME` picks another project root, `MLFLOW_TRACKING_URI` another tracking server.

# %%
import json
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import torch
from IPython.display import Image, display
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from handlers import recommendation as rec
from training.config import Paths, load_params
from training.data.preprocess import load_prepared
from training.evaluate import (
    HYBRID,
    HYBRID_TUNED,
    HYBRID_WEIGHT_GRID,
    NEURAL_MODELS,
    flat_figures,
    hybrid_ranking,
    mlflow_name,
)
from training.metrics.beyond_accuracy import item_popularity, novelty
from training.metrics.ranking import ranking_metrics, top_k
from training.models import load_checkpoint
from training.report import PLOTS_DIR, REPORT_JSON, write_plots
from training.report import display as display_name
from training.tracking import resolve_tracking

paths = Paths()
params = load_params()
report = json.loads((paths.reports / REPORT_JSON).read_text(encoding="utf-8"))
k = report["protocol"]["headline_k"]
threshold = report["protocol"]["relevance_threshold"]
print(f"project root: {paths.root}; {report['dataset']} split {report['split']}, K = {k}")

# %% [markdown]
# ## Every model, every figure at K
# Accuracy (rating models only), ranking, coverage, diversity and novelty: `flat_figures`, what
# DVC and the MLflow `evaluate` run get.

# %%
figures = pd.DataFrame(
    {display_name(name): flat_figures(result) for name, result in report["models"].items()}
).T
columns = [
    "rmse",
    "mae",
    *(f"{name}@{k}" for name in ("precision", "recall", "ndcg", "map", "hit_rate")),
    *(f"{name}@{k}" for name in ("coverage", "diversity", "novelty", "median_popularity")),
]
figures[[c for c in columns if c in figures]].round(4)

# %% [markdown]
# The report's own plots (`training.report.write_plots`), redrawn from the JSON:

# %%
plot_folder = Path(tempfile.mkdtemp(prefix="model-comparison-")) / PLOTS_DIR
for plot in write_plots(report, plot_folder):
    if plot.stem.startswith(("ranking_at", "beyond_accuracy", "cold_start")):
        display(Image(filename=str(plot), width=720))
# write_plots renders files with matplotlib's Agg backend; the figures below display inline
# %matplotlib inline

# %% [markdown]
# ## Cold start
# Users bucketed by their number of training ratings (ranking at K, RMSE for rating models).

# %%
pd.concat(
    {
        display_name(name): pd.DataFrame(result["cold_start"]["users"]).set_index("bucket")
        for name, result in report["models"].items()
    },
    names=["model"],
).round(4)

# %% [markdown]
# ## Learning curves of the training runs
# From the MLflow run each checkpoint names (`training_runs` in the report); a checkpoint trained
# without tracking shows the curve it carries itself.

# %%
tracking_uri = resolve_tracking(paths).tracking_uri
client = MlflowClient(tracking_uri)
recommenders = {name: load_checkpoint(paths.checkpoints / f"{name}.pt") for name in NEURAL_MODELS}


def learning_curve(name: str) -> tuple[pd.DataFrame, str]:
    """Per-epoch train loss and validation monitor, from MLflow when the run is there."""
    recommender = recommenders[name]
    run_id = report["training_runs"].get(name)
    metrics = {"train_loss": "train_loss", recommender.monitor: mlflow_name(recommender.monitor)}
    if run_id:
        try:
            curves = {
                label: pd.Series({m.step: m.value for m in client.get_metric_history(run_id, key)})
                for label, key in metrics.items()
            }
            return pd.DataFrame(curves).sort_index(), f"MLflow run {run_id[:8]}"
        except MlflowException as exc:
            print(
                f"{name}: run {run_id} unreadable at {tracking_uri} ({exc}); using the checkpoint"
            )
    history = recommender.history
    frame = pd.DataFrame(
        {
            "train_loss": history.train_loss,
            recommender.monitor: [v[recommender.monitor] for v in history.validation],
        },
        index=range(1, len(history.train_loss) + 1),
    )
    return frame, "checkpoint"


fig, axes = plt.subplots(1, len(NEURAL_MODELS), figsize=(12, 3.8), squeeze=False)
for ax, name in zip(axes[0], NEURAL_MODELS, strict=True):
    curve, source = learning_curve(name)
    print(f"{name}: learning curve from the {source}")
    ax.plot(curve.index, curve["train_loss"], label="train loss", color="tab:blue")
    ax.set(title=f"{display_name(name)} ({source})", xlabel="epoch", ylabel="train loss")
    twin = ax.twinx()
    monitor = curve.columns[1]
    twin.plot(curve.index, curve[monitor], label=monitor, color="tab:orange")
    twin.set_ylabel(monitor)
    ax.axvline(recommenders[name].history.best_epoch, color="grey", linestyle="--", linewidth=1)
fig.tight_layout()

# %% [markdown]
# ## A few real users
# The three test users with the most relevant test ratings: what they rated highest in train,
# then each model's top 10 over the films they had not rated, with the star they gave in the
# test period beside it (★) when they did.

# %%
data = load_prepared(paths.prepared(report["dataset"]))
titles = [movie["title"] for movie in data.movies]
relevant = (data.test >= threshold).sum(dim=1)
users = relevant.argsort(descending=True, stable=True)[:3]
rankings = {name: recommenders[name].rank_scores(data.train) for name in rec.HYBRID_PARTS}
default_weights = rec.parse_weights(None, rec.HYBRID_PARTS)
rankings[HYBRID] = hybrid_ranking(rankings, data.train > 0, default_weights)


def shown(user: int, item: torch.Tensor) -> str:
    star = int(data.test[user, item])
    title = titles[int(item)]
    return f"{title} ★{star}" if star else title


for user in users.tolist():
    favourites = data.train[user].argsort(descending=True, stable=True)[:5].tolist()
    print(
        f"user {data.metadata['user_ids'][user]}: liked "
        + "; ".join(f"{titles[i]} ({int(data.train[user, i])})" for i in favourites)
    )
    row = slice(user, user + 1)
    lists = {
        display_name(name): [shown(user, i) for i in top_k(scores[row], data.train[row] > 0, 10)[0]]
        for name, scores in rankings.items()
    }
    display(pd.DataFrame(lists, index=range(1, 11)))

# %% [markdown]
# ## The hybrid between precision and novelty
# Each weight of the grid the evaluation tunes on (`HYBRID_WEIGHT_GRID`, w_sae; w_rbm = 1 -
# w_sae) scored on test with the evaluation's own ranking and novelty functions; the served
# default and the validation-tuned weights of the report are marked.

# %%
popularity = item_popularity(data.train)
evaluated = (data.test >= threshold).any(dim=1)
points = []
for w_sae in HYBRID_WEIGHT_GRID:
    weights = rec.parse_weights({rec.SAE: w_sae, rec.RBM: 1.0 - w_sae}, rec.HYBRID_PARTS)
    mixed = hybrid_ranking({n: rankings[n] for n in rec.HYBRID_PARTS}, data.train > 0, weights)
    lists = top_k(mixed[evaluated], data.train[evaluated] > 0, k)
    points.append(
        {
            "w_sae": w_sae,
            f"precision@{k}": ranking_metrics(mixed, data.train, data.test, [k], threshold)[
                f"precision@{k}"
            ],
            f"novelty@{k}": novelty(lists, popularity, data.train.shape[0]),
        }
    )
curve = pd.DataFrame(points)
fig, ax = plt.subplots(figsize=(7, 4.5))
ax.plot(curve[f"novelty@{k}"], curve[f"precision@{k}"], marker="o", color="tab:blue")
for row in curve.itertuples(index=False):
    ax.annotate(f"{row[0]:.1f}", (row[2], row[1]), textcoords="offset points", xytext=(4, 4))
for name, marker in ((HYBRID, "s"), (HYBRID_TUNED, "*"), *((n, "^") for n in NEURAL_MODELS)):
    result = report["models"][name]
    ax.scatter(
        result["beyond_accuracy"][f"novelty@{k}"],
        result["ranking"][f"precision@{k}"],
        marker=marker,
        s=120,
        label=f"{display_name(name)} (report)",
        zorder=3,
    )
ax.set(
    title="Hybrid weights (labels: w_sae)",
    xlabel=f"novelty@{k} (higher = less popular films)",
    ylabel=f"precision@{k}",
)
ax.grid(alpha=0.3)
ax.legend(fontsize=8)
curve.round(4)
