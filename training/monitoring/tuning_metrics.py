"""What hyperparameter tuning found, as a Prometheus textfile (``data/metrics/tuning.prom``)
beside the training figures': each hyperparameter's importance for the study's objective, the
best objective value and the trials by state, per model.

``movierec tune`` (``training.tune.run_study``) rewrites the model's samples after every study;
the web app re-exposes the file at each scrape (``web.instrumentation``), as it does
``training.prom`` and ``pipeline.prom``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from training.monitoring.training_metrics import MODEL_LABEL, Samples, replace_samples

TUNING_TEXTFILE = "tuning.prom"
PARAMETER_LABEL = "parameter"
STATE_LABEL = "state"
IMPORTANCE = "tuning_parameter_importance"
BEST_VALUE = "tuning_best_value"
TRIALS = "tuning_trials"
TUNING_METRICS = {
    IMPORTANCE: "Share of the objective's variance a hyperparameter explains over the model's "
    "study (Optuna's fANOVA importance; the shares sum to 1)",
    BEST_VALUE: "Objective of the study's best trial (the validation figure; lower is better)",
    TRIALS: "Trials of the model's study, by state (complete, pruned, fail)",
}


def record_study(
    path: Path,
    model_type: str,
    importances: Mapping[str, float],
    best_value: float | None,
    states: Mapping[str, int],
) -> Path:
    """Replace ``model_type``'s samples with this study's (other models' stay); atomic write."""
    label = {MODEL_LABEL: model_type}
    fresh: Samples = {
        IMPORTANCE: [
            ({**label, PARAMETER_LABEL: name}, float(share)) for name, share in importances.items()
        ],
        BEST_VALUE: [] if best_value is None else [(label, float(best_value))],
        TRIALS: [({**label, STATE_LABEL: state}, float(n)) for state, n in states.items()],
    }
    return replace_samples(path, TUNING_METRICS, MODEL_LABEL, model_type, fresh)
