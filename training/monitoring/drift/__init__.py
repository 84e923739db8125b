"""Data and prediction drift: reference distributions saved at training time, PSI and a KS
statistic over a sliding window of logged requests, and the ``movierec monitor drift`` report.

Features of a request (a user's ratings sent for recommendations): the rating values, the
training popularity of the rated items, and the profile size (how many items were rated).
Predictions: the scores the served model returned. Each is compared with the same quantity
measured on the training data (for scores: the top-k unseen scores of every training user).

PSI (population stability index) over bins fixed by the reference; rule of thumb: < 0.1 stable,
0.1-0.2 moderate, > 0.2 significant shift. KS: the largest distance between the two empirical
CDFs (scipy's two-sample test). A distribution is flagged when PSI exceeds its threshold or the
KS statistic exceeds its threshold with a small p-value.

One job per module, each importing only those below it:

- ``statistics``: PSI, KS, a reference ``Distribution`` (bins + sample), one ``Comparison``;
- ``reference``: building the reference from the training data and checkpoints, saving, loading;
- ``request_log``: the logged requests (``logs/requests.jsonl``): writing, reading a time range;
- ``report``: a batch of requests against the reference (``DriftReport``, text and JSON);
- ``window``: the web app's sliding window of the last requests (``DriftMonitor``);
- ``commands``: ``movierec monitor drift`` and ``movierec monitor reference``.

The names used elsewhere (web/metrics.py, the tests) are importable from this package; the
commands are not (they need typer), training/cli.py loads them from ``commands``.
"""

from __future__ import annotations

from training.monitoring.drift.reference import (
    DISCRETE_FEATURES,
    FEATURES,
    REFERENCE_FILE,
    REFERENCE_FORMAT,
    REFERENCE_TOP_K,
    Reference,
    build_reference,
    load_reference,
    reference_for_checkpoints,
    save_reference,
    served_scores,
)
from training.monitoring.drift.report import DriftReport, compare_requests, feature_values
from training.monitoring.drift.request_log import (
    REQUEST_LOG_BACKUPS,
    REQUEST_LOG_FILE,
    REQUEST_LOG_MAX_BYTES,
    LoggedRequest,
    RequestLog,
    log_files,
    read_request_log,
)
from training.monitoring.drift.statistics import (
    KS_DRIFT_THRESHOLD,
    KS_MAX_P_VALUE,
    PSI_DRIFT_THRESHOLD,
    PSI_EPSILON,
    PSI_QUANTILE_BINS,
    REFERENCE_SAMPLE_SIZE,
    REFERENCE_SEED,
    ROUND_DIGITS,
    Comparison,
    Distribution,
    is_drift,
    ks,
    psi,
)
from training.monitoring.drift.window import MIN_WINDOW_REQUESTS, WINDOW_REQUESTS, DriftMonitor

__all__ = [
    "DISCRETE_FEATURES",
    "FEATURES",
    "KS_DRIFT_THRESHOLD",
    "KS_MAX_P_VALUE",
    "MIN_WINDOW_REQUESTS",
    "PSI_DRIFT_THRESHOLD",
    "PSI_EPSILON",
    "PSI_QUANTILE_BINS",
    "REFERENCE_FILE",
    "REFERENCE_FORMAT",
    "REFERENCE_SAMPLE_SIZE",
    "REFERENCE_SEED",
    "REFERENCE_TOP_K",
    "REQUEST_LOG_BACKUPS",
    "REQUEST_LOG_FILE",
    "REQUEST_LOG_MAX_BYTES",
    "ROUND_DIGITS",
    "WINDOW_REQUESTS",
    "Comparison",
    "Distribution",
    "DriftMonitor",
    "DriftReport",
    "LoggedRequest",
    "Reference",
    "RequestLog",
    "build_reference",
    "compare_requests",
    "feature_values",
    "is_drift",
    "ks",
    "load_reference",
    "log_files",
    "psi",
    "read_request_log",
    "reference_for_checkpoints",
    "save_reference",
    "served_scores",
]
