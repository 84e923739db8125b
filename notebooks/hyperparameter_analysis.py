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
# # Hyper-parameter analysis
#
# The Optuna studies `movierec tune` (`make tune MODEL=sae TRIALS=20`) keeps in `optuna.db`
# (`training/tune.py`): optimisation history, parameter importances, slices and contours drawn
# by Optuna's own visualisation module, pruned against complete trials, and the MLflow child
# runs each trial logged under its `tune-<model>` parent run. `MOVIEREC_HOME` picks another
# project root, `MLFLOW_TRACKING_URI` another tracking server.

# %%
import warnings

import matplotlib.pyplot as plt
import optuna
import pandas as pd
from IPython.display import display
from mlflow import MlflowClient
from optuna.trial import TrialState
from optuna.visualization import matplotlib as optuna_plots

from training.config import Paths, load_params
from training.tracking import resolve_tracking
from training.tune import STUDY_DB, decode_params

# Optuna marks its matplotlib plots experimental; the warning says nothing about the study.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
optuna.logging.set_verbosity(optuna.logging.WARNING)

paths = Paths()
params = load_params()
database = paths.root / STUDY_DB
storage = f"sqlite:///{database}"
print(f"project root: {paths.root}")
summaries = optuna.get_all_study_summaries(storage) if database.is_file() else []
if not summaries:
    print(f"{database}: no study yet; run `make tune MODEL=sae TRIALS=20` first")
pd.DataFrame(
    [
        {
            "study": s.study_name,
            "trials": s.n_trials,
            "best value": s.best_trial.value if s.best_trial else None,
            "started": s.datetime_start,
        }
        for s in summaries
    ]
)

# %%
studies = [optuna.load_study(study_name=s.study_name, storage=storage) for s in summaries]


def complete(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


# %% [markdown]
# ## Trials: complete, pruned, failed
# Median pruning stops a trial whose validation figure lags the median of earlier trials at the
# same epoch (after the first trials and epochs, `training.tune.PRUNER_*`).

# %%
for study in studies:
    frame = study.trials_dataframe(attrs=("number", "value", "state", "params", "duration"))
    print(f"{study.study_name}: {frame['state'].value_counts().to_dict()}")
    display(frame)
    if complete(study):
        best = study.best_trial
        print(f"best: trial {best.number}, value {best.value:.4f}")
        model = study.study_name.split("-")[1]  # tune-<model>[-<layers>]
        print(f"  as params.yaml reads it: {decode_params(model, best.params)}")

# %% [markdown]
# ## Optimisation history and intermediate values
# The validation figure each trial reached (lower is better), and its per-epoch reports: the
# curves the pruner compares.

# %%
for study in studies:
    optuna_plots.plot_optimization_history(study).set_title(f"{study.study_name}: history")
    optuna_plots.plot_intermediate_values(study).set_title(f"{study.study_name}: per epoch")
    plt.show()

# %% [markdown]
# ## Parameter importances, slices and contours
# Importances (fANOVA) need two complete trials; a contour needs two parameters that varied.

# %%
for study in studies:
    if len(complete(study)) < 2:
        print(f"{study.study_name}: fewer than two complete trials; nothing to compare")
        continue
    importances = optuna.importance.get_param_importances(study)
    display(pd.Series(importances, name="importance").to_frame())
    optuna_plots.plot_param_importances(study).set_title(f"{study.study_name}: importance")
    optuna_plots.plot_slice(study)
    top = list(importances)[:2]
    if len(top) == 2:
        optuna_plots.plot_contour(study, params=top)
    plt.show()

# %% [markdown]
# ## The MLflow runs behind the trials
# Every trial is a child run (`trial-<n>`, tags `optuna.trial`, `optuna.state`) of the study's
# `tune-<model>` run, which holds the trials table and the importance plot.

# %%
client = MlflowClient(resolve_tracking(paths).tracking_uri)
experiment = client.get_experiment_by_name(params.mlflow.experiment_name)
for study in studies:
    if experiment is None:
        print(f"no MLflow experiment {params.mlflow.experiment_name!r} at {client.tracking_uri}")
        break
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`optuna.study` = '{study.study_name}'",
        order_by=["attributes.start_time ASC"],
    )
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    print(f"{study.study_name}: {len(parents)} tune run(s), {len(children)} trial run(s)")
    display(
        pd.DataFrame(
            [
                {
                    "run": run.info.run_name,
                    "trial": run.data.tags.get("optuna.trial"),
                    "state": run.data.tags.get("optuna.state"),
                    "status": run.info.status,
                    "parent": run.data.tags["mlflow.parentRunId"][:8],
                    **{k: v for k, v in run.data.metrics.items() if k.startswith("best_")},
                    **run.data.params,
                }
                for run in children
            ]
        )
    )
