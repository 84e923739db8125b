"""Prometheus metrics of the web app: requests, predictions, cache, feedback, offline figures
and drift, served on ``/metrics`` with the training figures (``data/metrics/training.prom``,
written by ``training.monitoring.training_metrics``) and the GPU's, re-exposed at each scrape.

Each Flask app gets its own ``CollectorRegistry`` (``init_app``), not prometheus_client's global
one: the global registry refuses a second metric of the same name, so a process creating several
apps (the test suite, a dev reloader) would fail on the second ``create_app``. The module-level
functions (``observe_prediction`` ...) record into the current app's metrics when called inside
a request or app context, otherwise into the most recently initialised app's (so calls made
while ``create_app`` runs, before any context exists, still land where ``/metrics`` serves them).

Labels stay low in cardinality: routes are URL rules (``/movies/<int:movie_id>``, never the raw
path), models, arms, feedback kinds and error types are short names; no user ids.

Several gunicorn workers: set ``PROMETHEUS_MULTIPROC_DIR`` (an empty folder, before gunicorn
starts) and every worker writes its values there; ``/metrics`` then serves the sum over workers
(prometheus_client's multiprocess mode). Gauges keep the most recent value any worker set.
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Metric,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.gc_collector import GCCollector
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from werkzeug.http import HTTP_STATUS_CODES

from handlers import contract
from training.config import Paths, get_logger
from training.monitoring import drift as drift_module
from training.monitoring.gpu import GpuCollector
from training.monitoring.logging_config import current_request_id, install_request_logging
from training.monitoring.training_metrics import TEXTFILE_NAME, TRAINING_METRICS, read_textfile

if TYPE_CHECKING:
    from flask import Flask

log = get_logger("api")

EXTENSION_KEY = "movierec_metrics"
METRICS_ROUTE = "/metrics"
# The classic text format every Prometheus 2.x parses (the Debian package is 2.42).
METRICS_CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
UNMATCHED_ROUTE = "<unmatched>"
OTHER = "other"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
CACHE_RESULTS = ("hit", "miss")
# Label values come from code, but a guard keeps a mistake from exploding the series count.
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9_./:<>-]{1,64}$")
# Star ratings the web app accepts (half stars included); any other value is counted as "other".
RATING_LABELS = frozenset(f"{half / 2:g}" for half in range(1, 11))

# Web requests: ms for cached answers up to seconds for a cold model server.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# One model call: a forward pass over one user's vector.
PREDICTION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
PROFILE_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)

# Evaluation report (training/evaluate.py): rating figures, and "<name>@<k>" figures per section.
RATING_GAUGES = {"rmse": "model_rmse", "mae": "model_mae"}
AT_K_GAUGES = {
    "precision": "precision_at_k",
    "recall": "recall_at_k",
    "ndcg": "ndcg_at_k",
    "map": "map_at_k",
    "hit_rate": "hit_rate_at_k",
    "coverage": "catalog_coverage",
    "novelty": "recommendation_novelty",
    "diversity": "recommendation_diversity",
    "click_through": "offline_click_through",
    "conversion": "offline_conversion",
    "satisfaction": "offline_satisfaction",
}
REPORT_SECTIONS = ("ranking", "beyond_accuracy", "business")
OFFLINE_HELP = {
    "model_rmse": "Test RMSE of the model's predicted ratings (evaluation report)",
    "model_mae": "Test MAE of the model's predicted ratings (evaluation report)",
    "precision_at_k": "Test precision@k (evaluation report)",
    "recall_at_k": "Test recall@k (evaluation report)",
    "ndcg_at_k": "Test NDCG@k (evaluation report)",
    "map_at_k": "Test MAP@k (evaluation report)",
    "hit_rate_at_k": "Share of test users with a relevant item in the top k (evaluation report)",
    "catalog_coverage": "Share of the catalogue recommended in some top k (evaluation report)",
    "recommendation_novelty": "Mean self-information of top-k items (evaluation report)",
    "recommendation_diversity": "Intra-list genre diversity of the top k (evaluation report)",
    "offline_click_through": "Simulated click-through of the top k (evaluation report)",
    "offline_conversion": "Simulated share of clicks rated five stars (evaluation report)",
    "offline_satisfaction": "Simulated mean rating of clicked items (evaluation report)",
}
DRIFT_STATISTICS = ("psi", "ks")
# prometheus_client's own switch for multiprocess mode (gunicorn workers).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class TextfileCollector(Collector):
    """Re-exposes a textfile's training families at every scrape (the file changes between them);
    other names are ignored so a stray file cannot shadow the app's own metrics."""

    def __init__(self, path: Path, names: Collection[str] = tuple(TRAINING_METRICS)) -> None:
        self.path = Path(path)
        self.names = frozenset(names)

    def collect(self) -> Iterator[Metric]:
        yield from (f for f in read_textfile(self.path) if f.name in self.names)


def label_value(value: object) -> str:
    text = str(value)
    return text if _LABEL_VALUE.match(text) else OTHER


def rating_label(value: float) -> str:
    text = f"{float(value):g}"
    return text if text in RATING_LABELS else OTHER


class AppMetrics:
    """Every metric of one app, in its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry = registry if registry is not None else CollectorRegistry()
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        # Collectors read at scrape time, in this process (see ``exposition``).
        self.live_collectors: list = [GpuCollector()]
        if not self.multiprocess:
            # The default registry registers these itself; a dedicated one must ask for them.
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            GCCollector(registry=registry)
        # Across workers a gauge shows the latest value set; in one process "all" is the default.
        gauge_mode: Literal["mostrecent", "all"] = "mostrecent" if self.multiprocess else "all"

        def gauge(name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
            return Gauge(
                name, documentation, labels, registry=registry, multiprocess_mode=gauge_mode
            )

        self.request_latency = Histogram(
            "http_request_duration_seconds",
            "Web request latency by route",
            ["endpoint", "method"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self.requests = Counter(
            "http_requests",
            "Web requests by route and status",
            ["endpoint", "method", "status"],
            registry=registry,
        )
        self.api_errors = Counter(
            "api_errors",
            "Responses with status >= 400 by route and error type "
            "(exception class for unhandled errors, else the HTTP status name)",
            ["endpoint", "error_type"],
            registry=registry,
        )
        self.prediction_latency = Histogram(
            "prediction_latency_seconds",
            "Model call latency by model and endpoint",
            ["model_type", "endpoint"],
            buckets=PREDICTION_BUCKETS,
            registry=registry,
        )
        self.predictions = Counter(
            "predictions",
            "Predictions made by model and endpoint",
            ["model_type", "endpoint"],
            registry=registry,
        )
        self.cache = Counter(
            "cache_requests",
            "Recommendation cache lookups by result (hit, miss)",
            ["result"],
            registry=registry,
        )
        self.impressions = Counter(
            "recommendation_impressions",
            "Recommendations shown by model and A/B arm",
            ["model_type", "arm"],
            registry=registry,
        )
        self.feedback = Counter(
            "recommendation_feedback",
            "User feedback on recommendations by model, arm and kind",
            ["model_type", "arm", "kind"],
            registry=registry,
        )
        # The click-through rate is clicks / impressions in PromQL (the recording rule
        # model_arm:recommendation_click_through:ratio_1h): a ratio kept per worker would not add
        # up across gunicorn workers, two counters do.
        self.clicks = Counter(
            "recommendation_clicks",
            "Clicks on recommendations by model and A/B arm (a click is positive feedback: "
            + " or ".join(contract.CLICK_KINDS)
            + "; docs/decisions/0011-click-is-positive-feedback.md)",
            ["model_type", "arm"],
            registry=registry,
        )
        self.profile_size = Histogram(
            "request_profile_size",
            "Ratings a recommendation request carries (cold start: few)",
            ["model_type"],
            buckets=PROFILE_SIZE_BUCKETS,
            registry=registry,
        )
        self.request_ratings = Counter(
            "request_ratings",
            "Rating values carried by recommendation requests",
            ["value"],
            registry=registry,
        )
        self.offline = {
            name: gauge(
                name,
                OFFLINE_HELP[name],
                ["model_type"] if name in RATING_GAUGES.values() else ["model_type", "k"],
            )
            for name in OFFLINE_HELP
        }
        self.feature_drift = gauge(
            "feature_drift_score",
            "Drift of request features against the training data over the last requests",
            ["feature", "statistic"],
        )
        self.prediction_drift = gauge(
            "prediction_drift_score",
            "Drift of served scores against the training-time scores",
            ["model_type", "statistic"],
        )
        self.drift_detected = gauge(
            "drift_detected",
            "1 when a feature or the predictions drifted (PSI or KS rule)",
            ["scope", "subject"],
        )
        self.drift_window = gauge("drift_window_requests", "Requests in the drift window")

        self.drift: drift_module.DriftMonitor | None = None
        self.request_log: drift_module.RequestLog | None = None
        self._drift_dirty = False

    # -- recording ------------------------------------------------------------------------------
    def observe_prediction(self, model: str, endpoint: str, seconds: float) -> None:
        labels = (label_value(model), label_value(endpoint))
        self.prediction_latency.labels(*labels).observe(seconds)
        self.predictions.labels(*labels).inc()

    def record_cache(self, hit: bool) -> None:
        self.cache.labels(CACHE_RESULTS[0] if hit else CACHE_RESULTS[1]).inc()

    def start_click_series(self, models: Sequence[str], arms: Sequence[str]) -> None:
        """Zero-valued impression and click series for every model and arm, so the first click
        is an increase Prometheus sees (``increase`` has no start value for a series born at 1)
        and the ratio has a denominator before anything was shown."""
        for model in models:
            for arm in arms:
                key = (label_value(model), label_value(arm))
                self.impressions.labels(*key)
                self.clicks.labels(*key)

    def record_impressions(self, model: str, arm: str, count: int) -> None:
        self.impressions.labels(label_value(model), label_value(arm)).inc(count)

    def record_feedback(self, model: str, arm: str, kind: str) -> None:
        key = (label_value(model), label_value(arm))
        kind = label_value(kind).lower()
        self.feedback.labels(*key, kind).inc()
        if kind in contract.CLICK_KINDS:
            self.clicks.labels(*key).inc()

    def set_offline_metrics(self, report: Mapping[str, Any]) -> None:
        """Gauges from the evaluation report (``data/reports/evaluation.json``) or the flat DVC
        figures (``data/metrics/evaluation.json``); missing sections and NaNs are skipped."""
        for gauge in self.offline.values():
            gauge.clear()
        for model, result in _models_of(report).items():
            model_type = label_value(model)
            for figures in _figure_dicts(result):
                for key, value in figures.items():
                    number = _number(value)
                    if number is None:
                        continue
                    name, _, k = str(key).partition("@")
                    if not k and name in RATING_GAUGES:
                        self.offline[RATING_GAUGES[name]].labels(model_type).set(number)
                    elif k.isdigit() and name in AT_K_GAUGES:
                        self.offline[AT_K_GAUGES[name]].labels(model_type, k).set(number)

    def record_request_for_drift(
        self, ratings: Mapping[int, float], scores: Sequence[float], model: str
    ) -> None:
        request = drift_module.LoggedRequest(
            timestamp=datetime.now(UTC),
            model=label_value(model),
            ratings={int(item): float(value) for item, value in ratings.items()},
            scores=[float(score) for score in scores],
        )
        self.profile_size.labels(request.model).observe(len(request.ratings))
        for value in request.ratings.values():
            self.request_ratings.labels(rating_label(value)).inc()
        if self.drift is not None:
            self.drift.add(request)
            self._drift_dirty = True
        if self.request_log is not None:
            self.request_log.write(request, current_request_id())

    def refresh_drift(self) -> drift_module.DriftReport | None:
        """Recompute the drift gauges from the window (done before every scrape)."""
        if self.drift is None:
            return None
        self.drift_window.set(len(self.drift))
        if not self._drift_dirty:
            return None
        report = self.drift.report()
        if report is None:
            return None
        self._drift_dirty = False
        for c in report.comparisons:
            if c.psi is None or c.ks_statistic is None:  # both or neither (no figures)
                continue
            values = {"psi": c.psi, "ks": c.ks_statistic}
            for statistic in DRIFT_STATISTICS:
                if c.scope == "feature":
                    self.feature_drift.labels(c.name, statistic).set(values[statistic])
                else:
                    self.prediction_drift.labels(c.name, statistic).set(values[statistic])
            self.drift_detected.labels(c.scope, c.name).set(1 if c.drifted else 0)
        return report

    def exposition(self) -> bytes:
        """The text ``/metrics`` serves: this registry, or every worker's values summed."""
        self.refresh_drift()
        if self.multiprocess:
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
        else:
            registry = self.registry
        body = generate_latest(registry)
        live = CollectorRegistry()
        for collector in self.live_collectors:
            live.register(collector)
        return body + generate_latest(live)


def _models_of(report: Any) -> Mapping[str, Any]:
    """The per-model results of a report read from JSON (anything else has none)."""
    models = report.get("models") if isinstance(report, Mapping) else None
    if isinstance(models, Mapping):
        return models
    # The flat DVC figures: {model: {figure: value}}.
    if isinstance(report, Mapping):
        return {k: v for k, v in report.items() if isinstance(v, Mapping)}
    return {}


def _figure_dicts(result: Any) -> list[Mapping[str, Any]]:
    if not isinstance(result, Mapping):
        return []
    sections = [result.get("rating"), *(result.get(name) for name in REPORT_SECTIONS)]
    found = [s for s in sections if isinstance(s, Mapping)]
    return found or [result]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if math.isnan(value) or math.isinf(value) else float(value)


# -- Flask wiring ---------------------------------------------------------------------------------
def _setting(app: Flask, key: str, default: Any) -> Any:
    return app.config[key] if key in app.config else default


def init_app(app: Flask, registry: CollectorRegistry | None = None) -> AppMetrics:
    """Install request metrics, request ids and access logs, and ``GET /metrics`` on ``app``.

    ``app.config`` may set ``MOVIEREC_DRIFT_REFERENCE`` (default ``drift_reference.json`` beside
    the checkpoints: ``SETTINGS.checkpoints_dir`` or ``data/checkpoints/``; drift gauges stay
    empty without it),
    ``MOVIEREC_REQUEST_LOG`` (default ``logs/requests.jsonl``, off when ``app.testing``; a false
    value turns it off), ``MOVIEREC_TRAINING_TEXTFILE`` (default ``data/metrics/training.prom``)
    and ``MOVIEREC_DRIFT_WINDOW`` (requests, default 500).
    """
    global _latest
    from flask import Response, g, got_request_exception, request

    if EXTENSION_KEY in app.extensions:
        return app.extensions[EXTENSION_KEY]
    metrics = AppMetrics(registry)
    paths = Paths()
    textfile = _setting(app, "MOVIEREC_TRAINING_TEXTFILE", paths.data / "metrics" / TEXTFILE_NAME)
    if textfile:
        metrics.live_collectors.append(TextfileCollector(Path(textfile)))
    # The web app's settings name its checkpoint folder; the reference lies beside the checkpoints.
    checkpoints = getattr(app.config.get("SETTINGS"), "checkpoints_dir", None) or paths.checkpoints
    reference = _setting(
        app, "MOVIEREC_DRIFT_REFERENCE", Path(checkpoints) / drift_module.REFERENCE_FILE
    )
    if reference:
        window = int(_setting(app, "MOVIEREC_DRIFT_WINDOW", drift_module.WINDOW_REQUESTS))
        metrics.drift = _drift_monitor(Path(reference), window)
    request_log = _setting(
        app,
        "MOVIEREC_REQUEST_LOG",
        None if app.testing else paths.logs / drift_module.REQUEST_LOG_FILE,
    )
    if request_log:
        metrics.request_log = drift_module.RequestLog(Path(request_log))
    arms = getattr(app.config.get("SETTINGS"), "ab_arms", ())
    metrics.start_click_series(contract.SERVED_MODELS, arms)
    app.extensions[EXTENSION_KEY] = metrics
    install_request_logging(app)

    @app.before_request
    def _start_timer() -> None:
        g._movierec_metrics_started = time.perf_counter()

    @app.after_request
    def _observe_request(response: Response) -> Response:
        endpoint = request.url_rule.rule if request.url_rule is not None else UNMATCHED_ROUTE
        method = request.method if request.method in KNOWN_METHODS else OTHER
        started = g.pop("_movierec_metrics_started", None)
        if started is not None:
            metrics.request_latency.labels(endpoint, method).observe(time.perf_counter() - started)
        metrics.requests.labels(endpoint, method, str(response.status_code)).inc()
        if response.status_code >= 400:
            error = g.pop("_movierec_error_type", None) or _status_name(response.status_code)
            metrics.api_errors.labels(endpoint, error).inc()
        return response

    def _remember_exception(sender: object, exception: BaseException, **_extra: object) -> None:
        g._movierec_error_type = label_value(type(exception).__name__)

    got_request_exception.connect(_remember_exception, app, weak=False)

    def metrics_view() -> Response:
        return Response(metrics.exposition(), mimetype=None, content_type=METRICS_CONTENT_TYPE)

    app.add_url_rule(
        _setting(app, "MOVIEREC_METRICS_PATH", METRICS_ROUTE),
        "movierec_metrics",
        metrics_view,
        methods=["GET"],
    )
    with _latest_lock:
        _latest = metrics
    return metrics


def _status_name(status: int) -> str:
    name = HTTP_STATUS_CODES.get(status)
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") if name else str(status)


def _drift_monitor(path: Path, window: int) -> drift_module.DriftMonitor | None:
    try:
        reference = drift_module.load_reference(path)
    except FileNotFoundError:
        log.info("no drift reference at %s: drift gauges stay empty", path)
        return None
    except ValueError as exc:  # ConfigError: the file is there but unreadable
        log.warning("drift disabled: %s", exc)
        return None
    return drift_module.DriftMonitor(reference, window=window)


# -- the module-level API the web app calls -----------------------------------------------------
_latest: AppMetrics | None = None
_standalone: AppMetrics | None = None
_latest_lock = threading.Lock()


def current_metrics() -> AppMetrics:
    """The current app's metrics, else the last initialised app's, else a standalone set."""
    global _standalone
    from flask import current_app, has_app_context

    if has_app_context():
        found = current_app.extensions.get(EXTENSION_KEY)
        if found is not None:
            return found
    if _latest is not None:
        return _latest
    with _latest_lock:
        if _standalone is None:
            _standalone = AppMetrics()
        return _standalone


def observe_prediction(model: str, endpoint: str, seconds: float) -> None:
    current_metrics().observe_prediction(model, endpoint, seconds)


def record_cache(hit: bool) -> None:
    current_metrics().record_cache(hit)


def record_impressions(model: str, arm: str, count: int) -> None:
    current_metrics().record_impressions(model, arm, count)


def record_feedback(model: str, arm: str, kind: str) -> None:
    current_metrics().record_feedback(model, arm, kind)


def set_offline_metrics(report: dict) -> None:
    current_metrics().set_offline_metrics(report)


def record_request_for_drift(ratings: dict[int, float], scores: list[float], model: str) -> None:
    current_metrics().record_request_for_drift(ratings, scores, model)
