"""Writes the Grafana dashboards in docker/grafana/dashboards/ (run it after editing this file).

The JSON files are generated so every panel has the same shape and every query is written once;
the panel list in docs/operations.md is written with them. ``make monitor-check`` checks both
match this script; ``tests/monitoring/test_dashboard_metrics.py`` that every metric a query names
is exposed, and ``tests/monitoring/test_dashboard_queries.py`` that every panel shows data
under load. Each dashboard picks its Prometheus through a ``datasource`` variable, so it works
both provisioned and imported by hand (no uid to edit).

    python docker/grafana/generate_dashboards.py          # rewrite the files and the panel list
    python docker/grafana/generate_dashboards.py --check  # exit 1 when one of them is stale
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from handlers import contract

DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboards"
SCHEMA_VERSION = 39
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRID_WIDTH = 24
RATE = "$__rate_interval"
# A click is positive feedback (contract.CLICK_KINDS); the web app counts clicks and
# impressions, the ratio is PromQL (docker/prometheus/alert_rules.yml records the last hour's).
CLICKS = "recommendation_clicks_total"
CLICK_THROUGH_1H = "model_arm:recommendation_click_through:ratio_1h"


class Layout:
    """Places panels left to right, wrapping at the grid width."""

    def __init__(self) -> None:
        self.x = self.y = self.row_height = 0
        self.next_id = 1

    def place(self, panel: dict, width: int, height: int) -> dict:
        if self.x + width > GRID_WIDTH:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0
        panel["gridPos"] = {"x": self.x, "y": self.y, "w": width, "h": height}
        panel["id"] = self.next_id
        self.next_id += 1
        self.x += width
        self.row_height = max(self.row_height, height)
        return panel

    def row(self, title: str) -> dict:
        if self.x:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0
        panel = {"type": "row", "title": title, "collapsed": False, "panels": []}
        placed = self.place(panel, GRID_WIDTH, 1)
        self.x, self.y, self.row_height = 0, self.y + 1, 0
        return placed


# A per-epoch series as a matrix: one row per epoch, one column per model (the trend panels).
EPOCH_BY_MODEL = [
    {
        "id": "groupingToMatrix",
        "options": {"columnField": "model_type", "rowField": "epoch", "valueField": "Value"},
    },
    {
        "id": "convertFieldType",
        "options": {
            "conversions": [{"targetField": "epoch\\model_type", "destinationType": "number"}]
        },
    },
    {"id": "sortBy", "options": {"sort": [{"field": "epoch\\model_type"}]}},
]


def target(expr: str, legend: str = "", instant: bool = False, ref: str = "A") -> dict:
    found: dict[str, object] = {
        "datasource": DATASOURCE,
        "expr": expr,
        "legendFormat": legend or "__auto",
        "refId": ref,
    }
    if instant:
        found.update(instant=True, range=False, format="table")
    return found


def _targets(queries: list[tuple[str, str]], instant: bool = False) -> list[dict]:
    return [
        target(expr, legend, instant, chr(ord("A") + i)) for i, (expr, legend) in enumerate(queries)
    ]


def timeseries(
    title: str, queries: list[tuple[str, str]], unit: str = "short", description: str = ""
) -> dict:
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": _targets(queries),
        "fieldConfig": {
            "defaults": {"unit": unit, "custom": {"lineWidth": 2, "fillOpacity": 10}},
            "overrides": [],
        },
        "options": {
            "legend": {
                "displayMode": "table",
                "placement": "bottom",
                "calcs": ["lastNotNull", "max"],
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def stat(
    title: str,
    queries: list[tuple[str, str]],
    unit: str = "short",
    decimals: int = 3,
    description: str = "",
    thresholds: list[tuple[float | None, str]] | None = None,
) -> dict:
    steps = [{"value": value, "color": color} for value, color in (thresholds or [(None, "blue")])]
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": _targets(queries),
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "decimals": decimals,
                "thresholds": {"mode": "absolute", "steps": steps},
            },
            "overrides": [],
        },
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
            "textMode": "value_and_name",
            "orientation": "auto",
            "justifyMode": "auto",
        },
    }


def bars(
    title: str,
    queries: list[tuple[str, str]],
    unit: str = "percentunit",
    description: str = "",
    maximum: float | None = 1,
) -> dict:
    defaults: dict = {
        "unit": unit,
        "min": 0,
        "decimals": 3,
        "thresholds": {"mode": "absolute", "steps": [{"value": None, "color": "blue"}]},
    }
    if maximum is not None:
        defaults["max"] = maximum
    return {
        "type": "bargauge",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": _targets(queries),
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "orientation": "horizontal",
            "displayMode": "gradient",
            "showUnfilled": True,
        },
    }


def dashboard(
    uid: str, title: str, description: str, panels: list[dict], variables: list[dict] | None = None
) -> dict:
    datasource_var = {
        "name": "datasource",
        "label": "Prometheus",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "refresh": 1,
        "regex": "",
        "options": [],
    }
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["movierec"],
        "timezone": "browser",
        "editable": True,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "graphTooltip": 1,
        "annotations": {"list": []},
        "links": [],
        "templating": {"list": [datasource_var, *(variables or [])]},
        "panels": panels,
    }


def quantile(q: float, metric: str, by: str, selector: str = "") -> str:
    return f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket{selector}[{RATE}])))"


def rate_sum(metric: str, by: str = "") -> str:
    group = f" by ({by})" if by else ""
    return f"sum{group} (rate({metric}[{RATE}]))"


def ratio(numerator: str, denominator: str, by: str = "") -> str:
    group = f" by ({by})" if by else ""
    return f"sum{group} (rate({numerator}[{RATE}])) / sum{group} (rate({denominator}[{RATE}]))"


# -- the dashboards -------------------------------------------------------------------------------
# Every panel is titled by the question it answers. Models are compared SAE / RBM / hybrid side by
# side (the hybrid too wherever models are compared); time series wherever time matters.
SERVED = "|".join(contract.SERVED_MODELS)
BY_MODEL = f'model_type=~"{SERVED}"'
# Panels that can only show data where CUDA is present: the one list the query test exempts from
# "returns at least one series" (it still checks their PromQL).
GPU_PANELS = ("How much GPU memory is in use?", "How busy is the GPU?")


def trend(title: str, queries: list[tuple[str, str]], description: str = "") -> dict:
    """A curve over epochs (x: the epoch label), one line per model: learning curves."""
    return {
        "type": "trend",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": _targets(queries, instant=True),
        "transformations": EPOCH_BY_MODEL,
        "fieldConfig": {
            "defaults": {"custom": {"lineWidth": 2, "showPoints": "never"}},
            "overrides": [],
        },
        "options": {
            "xField": "epoch\\model_type",
            "legend": {"displayMode": "list", "placement": "bottom"},
            "tooltip": {"mode": "multi", "sort": "none"},
        },
    }


def alert_list(title: str, description: str = "") -> dict:
    """Grafana's own list of the alerts Prometheus evaluates (no PromQL of its own)."""
    return {
        "type": "alertlist",
        "title": title,
        "description": description,
        "options": {
            "viewMode": "list",
            "groupMode": "default",
            "maxItems": 20,
            "sortOrder": 1,
            "stateFilter": {"firing": True, "pending": True, "noData": False, "normal": False},
            "datasource": "${datasource}",
        },
    }


def none_is_zero(expr: str) -> str:
    """Counters born at their first event (errors): no series yet means none happened."""
    return f"({expr}) or on() vector(0)"


def model_performance() -> dict:
    grid = Layout()
    panels = [grid.row("Online: what people make of each model's lists (SAE / RBM / hybrid)")]
    panels += [
        grid.place(
            timeseries(
                "Is the SAE still better than the RBM this week?",
                [(f"recommendation_accuracy{{{BY_MODEL}}}", "{{model_type}}")],
                unit="percentunit",
                description="recommendation_accuracy: share of the served films people judged "
                "that they liked (rated >= 4 stars afterwards, or up / watched feedback). Set the "
                "time range to 7 days to compare the week.",
            ),
            12,
            8,
        ),
        grid.place(
            timeseries(
                "Does each model's accuracy rest on enough judgements?",
                [(f"recommendation_accuracy_judgements{{{BY_MODEL}}}", "{{model_type}}")],
                description="Ratings and feedback on served films behind each accuracy figure.",
            ),
            12,
            8,
        ),
    ]
    panels.append(grid.row("Offline (evaluation report): SAE / RBM / hybrid side by side"))
    panels += [
        grid.place(
            bars(
                "Which model ranks best offline (NDCG@10, precision@10)?",
                [
                    (f'ndcg_at_k{{{BY_MODEL}, k="10"}}', "NDCG@10 {{model_type}}"),
                    (f'precision_at_k{{{BY_MODEL}, k="10"}}', "precision@10 {{model_type}}"),
                ],
            ),
            8,
            9,
        ),
        grid.place(
            bars(
                "Does each model find the films people rate next (recall, MAP, hit rate @10)?",
                [
                    (f'recall_at_k{{{BY_MODEL}, k="10"}}', "recall@10 {{model_type}}"),
                    (f'map_at_k{{{BY_MODEL}, k="10"}}', "MAP@10 {{model_type}}"),
                    (f'hit_rate_at_k{{{BY_MODEL}, k="10"}}', "hit rate@10 {{model_type}}"),
                ],
            ),
            8,
            9,
        ),
        grid.place(
            bars(
                "How far off are the predicted ratings (RMSE, MAE)?",
                [
                    (f"model_rmse{{{BY_MODEL}}}", "RMSE {{model_type}}"),
                    (f"model_mae{{{BY_MODEL}}}", "MAE {{model_type}}"),
                ],
                unit="short",
                maximum=None,
                description="Models that predict ratings only: the RBM ranks films and predicts "
                "no rating, so it has no RMSE or MAE.",
            ),
            8,
            9,
        ),
    ]
    panels.append(grid.row("Online serving: latency, volume and drift per model"))
    panels += [
        grid.place(
            timeseries(
                "How fast does each model answer the web app (p50 / p99)?",
                [
                    (
                        quantile(0.5, "prediction_latency_seconds", "model_type"),
                        "p50 {{model_type}}",
                    ),
                    (
                        quantile(0.99, "prediction_latency_seconds", "model_type"),
                        "p99 {{model_type}}",
                    ),
                ],
                unit="s",
            ),
            12,
            8,
        ),
        grid.place(
            timeseries(
                "How many predictions does each model make?",
                [
                    (
                        rate_sum("predictions_total", "model_type, endpoint"),
                        "{{model_type}} {{endpoint}}",
                    ),
                ],
                unit="reqps",
            ),
            12,
            8,
        ),
        grid.place(
            timeseries(
                "Have the served scores drifted from the training-time scores (PSI, KS)?",
                [("prediction_drift_score", "{{model_type}} {{statistic}}")],
                description="PSI > 0.2 or KS > 0.1 means the served scores moved away from the "
                "training-time scores (movierec monitor drift reports details).",
            ),
            12,
            8,
        ),
        grid.place(
            timeseries(
                "How long does each model take inside TorchServe and Triton (mean)?",
                [
                    (
                        ratio(
                            "ts_inference_latency_microseconds",
                            "ts_inference_requests_total",
                            "model_name",
                        ),
                        "TorchServe {{model_name}}",
                    ),
                    (
                        ratio(
                            "nv_inference_request_duration_us",
                            "nv_inference_request_success",
                            "model",
                        ),
                        "Triton {{model}}",
                    ),
                ],
                unit="µs",
            ),
            12,
            8,
        ),
    ]
    panels.append(grid.row("Training runs (data/metrics/training.prom, re-exposed by the web app)"))
    panels += [
        grid.place(
            trend(
                "How did the training loss fall, epoch by epoch?",
                [("training_loss", "")],
                description="The last run of each model; each model's own loss (not comparable "
                "across models).",
            ),
            12,
            9,
        ),
        grid.place(
            trend(
                "How did the validation figure move, epoch by epoch?",
                [("validation_loss", "")],
                description="The figure that picks the best epoch (lower is better).",
            ),
            12,
            9,
        ),
        grid.place(
            timeseries(
                "Did the last training run do better than the one before?",
                [
                    ("training_best_validation", "best validation {{model_type}}"),
                    ("training_final_loss", "final loss {{model_type}}"),
                ],
                description="One step per training run: the kept epoch's validation figure and "
                "the last epoch's loss.",
            ),
            8,
            8,
        ),
        grid.place(
            bars(
                "How long did training take?",
                [
                    ("model_training_duration_seconds", "{{model_type}} total"),
                    ("training_seconds_to_best", "{{model_type}} to best epoch"),
                ],
                unit="s",
                maximum=None,
            ),
            8,
            8,
        ),
        grid.place(
            bars(
                "How many epochs did each run need?",
                [
                    ("training_epochs_run", "{{model_type}} run"),
                    ("training_best_epoch", "{{model_type}} best"),
                ],
                unit="short",
                maximum=None,
            ),
            8,
            8,
        ),
        grid.place(
            bars(
                "Which hyperparameters move the validation figure most?",
                [("tuning_parameter_importance", "{{model_type}} {{parameter}}")],
                description="Each hyperparameter's share of the objective's variance over the "
                "model's Optuna study (fANOVA, `movierec tune`; data/metrics/tuning.prom).",
            ),
            12,
            8,
        ),
        grid.place(
            bars(
                "How good was tuning's best trial, and how many trials ran?",
                [
                    ("tuning_best_value", "{{model_type}} best validation"),
                    ("tuning_trials", "{{model_type}} {{state}} trials"),
                ],
                unit="short",
                maximum=None,
            ),
            12,
            8,
        ),
    ]
    panels.append(grid.row("GPU (only where CUDA is present)"))
    panels += [
        grid.place(
            timeseries(
                GPU_PANELS[0],
                [
                    ("nv_gpu_memory_used_bytes", "Triton {{gpu_uuid}}"),
                    ("gpu_memory_used_bytes", "{{job}} device {{device}}"),
                    ("GPUMemoryUsed * 1024 * 1024", "TorchServe device {{DeviceId}}"),
                    ("training_gpu_memory_peak_bytes", "training peak {{model_type}}"),
                ],
                unit="bytes",
            ),
            12,
            8,
        ),
        grid.place(
            timeseries(
                GPU_PANELS[1],
                [
                    ("nv_gpu_utilization", "Triton {{gpu_uuid}}"),
                    ("gpu_utilization_ratio", "{{job}} device {{device}}"),
                    ("GPUUtilization / 100", "TorchServe device {{DeviceId}}"),
                ],
                unit="percentunit",
            ),
            12,
            8,
        ),
    ]
    return dashboard(
        "movierec-model-performance",
        "MovieRec / Model performance",
        "SAE, RBM and hybrid side by side: online accuracy, offline figures, serving, training.",
        panels,
    )


def system_health() -> dict:
    grid = Layout()
    panels = [grid.row("Web app")]
    panels += [
        grid.place(
            stat(
                "How many requests per second?",
                [("sum(rate(http_requests_total[$__rate_interval]))", "")],
                unit="reqps",
                decimals=2,
            ),
            6,
            5,
        ),
        grid.place(
            stat(
                "What share of requests fail (5xx)?",
                [
                    (
                        none_is_zero(
                            'sum(rate(http_requests_total{status=~"5.."}[$__rate_interval]))'
                        )
                        + " / sum(rate(http_requests_total[$__rate_interval]))",
                        "",
                    )
                ],
                unit="percentunit",
                thresholds=[(None, "green"), (0.01, "orange"), (0.05, "red")],
            ),
            6,
            5,
        ),
        grid.place(
            stat(
                "How often does the cache answer?",
                [
                    (
                        none_is_zero(rate_sum('cache_requests_total{result="hit"}'))
                        + f" / {rate_sum('cache_requests_total')}",
                        "",
                    )
                ],
                unit="percentunit",
            ),
            6,
            5,
        ),
        grid.place(
            stat(
                "Is every service up?",
                [('up{job=~"web|torchserve|triton"}', "{{job}}")],
                decimals=0,
                thresholds=[(None, "red"), (1, "green")],
            ),
            6,
            5,
        ),
        grid.place(
            timeseries(
                "Which pages and API routes are busiest?",
                [(rate_sum("http_requests_total", "endpoint"), "{{endpoint}}")],
                unit="reqps",
            ),
            12,
            8,
        ),
        grid.place(
            timeseries(
                "Which routes are slow (p50 / p99)?",
                [
                    (
                        quantile(0.5, "http_request_duration_seconds", "endpoint"),
                        "p50 {{endpoint}}",
                    ),
                    (
                        quantile(0.99, "http_request_duration_seconds", "endpoint"),
                        "p99 {{endpoint}}",
                    ),
                ],
                unit="s",
            ),
            12,
            8,
        ),
        grid.place(
            timeseries(
                "Which routes answer with errors, and which?",
                [
                    (
                        none_is_zero(rate_sum("api_errors_total", "endpoint, error_type")),
                        "{{endpoint}} {{error_type}}",
                    ),
                ],
                unit="reqps",
            ),
            12,
            8,
        ),
        grid.place(
            timeseries(
                "How much memory do the web app and the model server hosts use?",
                [
                    ('process_resident_memory_bytes{job="web"}', "web {{instance}}"),
                    ("nv_cpu_memory_used_bytes", "Triton host"),
                    ("MemoryUsed * 1024 * 1024", "TorchServe host"),
                ],
                unit="bytes",
            ),
            12,
            8,
        ),
    ]
    panels.append(grid.row("Database"))
    panels += [
        grid.place(
            timeseries(
                "Are database queries slow (p50 / p99 by operation)?",
                [
                    (quantile(0.5, "db_query_duration_seconds", "operation"), "p50 {{operation}}"),
                    (quantile(0.99, "db_query_duration_seconds", "operation"), "p99 {{operation}}"),
                ],
                unit="s",
            ),
            12,
            8,
        ),
        grid.place(
            timeseries(
                "How many queries does the web app send?",
                [(rate_sum("db_query_duration_seconds_count", "operation"), "{{operation}}")],
                unit="reqps",
            ),
            12,
            8,
        ),
    ]
    panels.append(grid.row("Model servers"))
    panels += [
        grid.place(
            timeseries(
                "Is the model server batching?",
                [
                    (
                        ratio("model_batch_size_sum", "model_batch_size_count", "ModelName"),
                        "TorchServe {{ModelName}}: requests per forward pass",
                    ),
                    (
                        # An ensemble (hybrid) executes nothing itself; idle models have no ratio.
                        f"{rate_sum('nv_inference_request_success', 'model')} / "
                        f"({rate_sum('nv_inference_exec_count', 'model')} > 0)",
                        "Triton {{model}}: requests per execution",
                    ),
                ],
                description="1 means every request ran alone; more means requests shared a "
                "forward pass (TorchServe: the handlers' model_batch_size; Triton: requests over "
                "executions).",
            ),
            12,
            8,
        ),
        grid.place(
            timeseries(
                "How full are TorchServe's batches (p50 / p90)?",
                [
                    (quantile(0.5, "model_batch_size", "ModelName"), "p50 {{ModelName}}"),
                    (quantile(0.9, "model_batch_size", "ModelName"), "p90 {{ModelName}}"),
                ],
            ),
            12,
            8,
        ),
        grid.place(
            timeseries(
                "How much memory does each model hold?",
                [
                    (
                        "max by (ModelName) (model_memory_usage_bytes)",
                        "TorchServe {{ModelName}} (a worker)",
                    ),
                    ("nv_cpu_memory_used_bytes", "Triton host"),
                ],
                unit="bytes",
                description="model_memory_usage_bytes: resident memory of the TorchServe worker "
                "serving the model (a model with N workers holds about N times this). Triton "
                "reports its host's memory (and its GPU's, in the GPU panels).",
            ),
            12,
            8,
        ),
        grid.place(
            timeseries(
                "Is TorchServe answering (requests by status)?",
                [
                    ("sum(rate(Requests2XX[$__rate_interval]))", "2xx"),
                    (none_is_zero("sum(rate(Requests4XX[$__rate_interval]))"), "4xx"),
                    (none_is_zero("sum(rate(Requests5XX[$__rate_interval]))"), "5xx"),
                ],
                unit="reqps",
            ),
            12,
            8,
        ),
        grid.place(
            timeseries(
                "Where does TorchServe spend the time (queue vs prediction)?",
                [
                    ("QueueTime", "queue"),
                    # Not HandlerTime: TorchServe declares it, but our handlers leave it unsent
                    # (PredictionTime times the same call; handlers/recommender_handler.py).
                    ("PredictionTime", "prediction {{ModelName}}"),
                ],
                unit="ms",
            ),
            12,
            8,
        ),
        grid.place(
            timeseries(
                "Is Triton answering?",
                [
                    (rate_sum("nv_inference_request_success", "model"), "ok {{model}}"),
                    (rate_sum("nv_inference_request_failure", "model"), "failed {{model}}"),
                ],
                unit="reqps",
            ),
            12,
            8,
        ),
        grid.place(
            timeseries(
                "Where does Triton spend the time (queue vs compute, per request)?",
                [
                    (
                        ratio(
                            "nv_inference_queue_duration_us",
                            "nv_inference_request_success",
                            "model",
                        ),
                        "queue {{model}}",
                    ),
                    (
                        ratio(
                            "nv_inference_compute_infer_duration_us",
                            "nv_inference_request_success",
                            "model",
                        ),
                        "compute {{model}}",
                    ),
                ],
                unit="µs",
            ),
            12,
            8,
        ),
    ]
    panels.append(grid.row("Alerts and pipeline"))
    panels += [
        grid.place(
            alert_list(
                "Which alerts are firing?",
                "Prometheus' alerts (docker/prometheus/alert_rules.yml), firing or pending.",
            ),
            8,
            8,
        ),
        grid.place(
            stat(
                "How many alerts are firing?",
                [(none_is_zero('count(ALERTS{alertstate="firing"})'), "")],
                decimals=0,
                thresholds=[(None, "green"), (1, "red")],
            ),
            4,
            8,
        ),
        grid.place(
            stat(
                "How many requests does the drift check read?",
                [("drift_window_requests", "")],
                decimals=0,
            ),
            4,
            8,
        ),
        grid.place(
            stat(
                "How long ago did each model train?",
                [("(time() - training_last_run_timestamp_seconds) / 3600", "{{model_type}}")],
                unit="h",
                decimals=1,
            ),
            8,
            8,
        ),
        grid.place(
            bars(
                "How long ago did each pipeline stage last succeed?",
                [
                    (
                        "(time() - pipeline_stage_last_success_timestamp_seconds) / 3600",
                        "{{stage}}",
                    )
                ],
                unit="h",
                maximum=None,
            ),
            8,
            9,
        ),
        grid.place(
            bars(
                "How long did each stage's last successful run take?",
                [("pipeline_stage_duration_seconds", "{{stage}}")],
                unit="s",
                maximum=None,
            ),
            8,
            9,
        ),
        grid.place(
            stat(
                "Has a stage failed since it last succeeded?",
                [
                    (
                        "(pipeline_stage_last_failure_timestamp_seconds > bool "
                        "pipeline_stage_last_success_timestamp_seconds) "
                        "or (pipeline_stage_last_success_timestamp_seconds * 0)",
                        "{{stage}}",
                    )
                ],
                decimals=0,
                thresholds=[(None, "green"), (1, "red")],
                description="1: the stage's command failed after its last success "
                "(data/metrics/pipeline.prom, written under dvc repro).",
            ),
            8,
            9,
        ),
    ]
    return dashboard(
        "movierec-system-health",
        "MovieRec / System health",
        "Web app, database, TorchServe and Triton: traffic, latency, errors, batching, memory, "
        "alerts, pipeline.",
        panels,
    )


def user_behaviour() -> dict:
    grid = Layout()
    click = CLICKS
    panels = [grid.row("A/B test: arms side by side")]
    panels += [
        grid.place(
            stat(
                "Which arm do people click more (last hour)?",
                [(CLICK_THROUGH_1H, "{{arm}} ({{model_type}})")],
                unit="percentunit",
            ),
            12,
            5,
        ),
        grid.place(
            bars(
                "How is the traffic split between the arms?",
                [
                    (
                        "sum by (arm) (increase(recommendation_impressions_total[$__range])) / "
                        "scalar(sum(increase(recommendation_impressions_total[$__range])))",
                        "{{arm}}",
                    )
                ],
            ),
            12,
            5,
        ),
        grid.place(
            timeseries(
                "Is click-through moving, per model and arm?",
                [
                    (
                        ratio(click, "recommendation_impressions_total", "model_type, arm"),
                        "{{model_type}} / {{arm}}",
                    ),
                ],
                unit="percentunit",
            ),
            12,
            8,
        ),
        grid.place(
            timeseries(
                "How many recommendations does each arm show?",
                [
                    (
                        rate_sum("recommendation_impressions_total", "model_type, arm"),
                        "{{model_type}} / {{arm}}",
                    ),
                ],
                unit="reqps",
            ),
            12,
            8,
        ),
        grid.place(
            timeseries(
                "What feedback do people give?",
                [(rate_sum("recommendation_feedback_total", "kind, arm"), "{{kind}} ({{arm}})")],
                unit="reqps",
            ),
            12,
            8,
        ),
        grid.place(
            timeseries(
                "Do people like what each model recommends (mean stars given afterwards)?",
                [
                    (f"user_satisfaction_score{{{BY_MODEL}}}", "online {{model_type}}"),
                    (f'offline_satisfaction{{{BY_MODEL}, k="10"}}', "offline @10 {{model_type}}"),
                ],
                description="Online: user_satisfaction_score, the mean stars people gave films a "
                "model had shown them. Offline: the evaluation's simulation (mean rating of "
                "simulated clicks).",
            ),
            12,
            8,
        ),
    ]
    panels.append(grid.row("Ratings and popular films"))
    panels += [
        grid.place(
            timeseries(
                "Which films are people rating right now?",
                [("topk(10, films_being_rated)", "{{title}}")],
                description="Ratings each film got among the latest ratings (top 10).",
            ),
            12,
            9,
        ),
        grid.place(
            bars(
                "Which star values do recommendation requests carry?",
                [("sum by (value) (increase(request_ratings_total[$__range]))", "{{value}} stars")],
                unit="short",
                maximum=None,
            ),
            12,
            9,
        ),
        grid.place(
            timeseries(
                "How many ratings does a recommendation request carry (median, p90)?",
                [
                    (quantile(0.5, "request_profile_size", "model_type"), "median {{model_type}}"),
                    (quantile(0.9, "request_profile_size", "model_type"), "p90 {{model_type}}"),
                ],
            ),
            8,
            8,
        ),
        grid.place(
            timeseries(
                "What share of requests come from new users (at most 5 ratings)?",
                [
                    (
                        'sum(rate(request_profile_size_bucket{le="5.0"}[$__rate_interval])) / '
                        "sum(rate(request_profile_size_count[$__rate_interval]))",
                        "share",
                    )
                ],
                unit="percentunit",
            ),
            8,
            8,
        ),
        grid.place(
            timeseries(
                "Has what users send drifted from the training data (PSI)?",
                [('feature_drift_score{statistic="psi"}', "{{feature}}")],
            ),
            8,
            8,
        ),
    ]
    panels.append(grid.row("Sessions and engagement"))
    panels += [
        grid.place(
            timeseries(
                "How many people are on the site?",
                [("web_sessions_active", "sessions seen in the last hour")],
            ),
            8,
            8,
        ),
        grid.place(
            timeseries(
                "How long do people stay?",
                [("web_session_length_seconds", "q{{quantile}}")],
                unit="s",
                description="Session length so far (last visit minus start, to the minute), "
                "over the sessions seen in the last hour.",
            ),
            8,
            8,
        ),
        grid.place(
            timeseries(
                "How much do people rate per visit?",
                [("web_session_ratings", "q{{quantile}}")],
            ),
            8,
            8,
        ),
    ]
    return dashboard(
        "movierec-user-behaviour",
        "MovieRec / User behaviour and A/B",
        "Click-through and satisfaction per model and arm, feedback, ratings, sessions.",
        panels,
    )


def business() -> dict:
    grid = Layout()
    click = CLICKS
    panels = [grid.row("Volume")]
    panels += [
        grid.place(
            stat(
                "How many recommendations did we show?",
                [("sum(increase(recommendation_impressions_total[$__range]))", "")],
                decimals=0,
            ),
            6,
            5,
        ),
        grid.place(
            stat(
                "How many of them were clicked?",
                [(f"sum(increase({click}[$__range]))", "")],
                decimals=0,
            ),
            6,
            5,
        ),
        grid.place(
            stat(
                "What share of what we showed was clicked?",
                [
                    (
                        f"sum(increase({click}[$__range])) / "
                        "sum(increase(recommendation_impressions_total[$__range]))",
                        "",
                    )
                ],
                unit="percentunit",
            ),
            6,
            5,
        ),
        grid.place(
            stat(
                "How many predictions did the models make?",
                [("sum(increase(predictions_total[$__range]))", "")],
                decimals=0,
            ),
            6,
            5,
        ),
        grid.place(
            timeseries(
                "When do people ask for recommendations (per hour, by model)?",
                [("sum by (model_type) (increase(predictions_total[1h]))", "{{model_type}}")],
            ),
            24,
            8,
        ),
    ]
    panels.append(
        grid.row("Coverage and long tail: what is served (live) next to the offline figures")
    )
    panels += [
        grid.place(
            timeseries(
                "How much of the catalogue do we really show?",
                [
                    (f"served_catalog_coverage{{{BY_MODEL}}}", "served {{model_type}}"),
                    (f'catalog_coverage{{{BY_MODEL}, k="10"}}', "offline @10 {{model_type}}"),
                ],
                unit="percentunit",
                description="Served: share of the catalogue among the latest 10,000 films shown "
                "(impressions). Offline: share recommended in some test user's top 10.",
            ),
            12,
            8,
        ),
        grid.place(
            timeseries(
                "Do we show long-tail films, or only the most-rated ones?",
                [(f"served_long_tail_share{{{BY_MODEL}}}", "served {{model_type}}")],
                unit="percentunit",
                description="Share of the films shown that lie outside the most-rated fifth of "
                "the catalogue (training popularity). Offline counterpart: novelty, beside.",
            ),
            12,
            8,
        ),
        grid.place(
            bars(
                "Offline: how obscure are each model's lists (novelty @k)?",
                [(f"recommendation_novelty{{{BY_MODEL}}}", "{{model_type}} @{{k}}")],
                unit="short",
                maximum=None,
            ),
            8,
            9,
        ),
        grid.place(
            bars(
                "Offline: how much of the catalogue could each model recommend (coverage @k)?",
                [(f"catalog_coverage{{{BY_MODEL}}}", "{{model_type}} @{{k}}")],
            ),
            8,
            9,
        ),
        grid.place(
            bars(
                "Offline: how varied are the lists (genre diversity @k)?",
                [(f"recommendation_diversity{{{BY_MODEL}}}", "{{model_type}} @{{k}}")],
            ),
            8,
            9,
        ),
        grid.place(
            bars(
                "Offline: would simulated users click, and love what they clicked (@10)?",
                [
                    (
                        f'offline_click_through{{{BY_MODEL}, k="10"}}',
                        "click-through {{model_type}}",
                    ),
                    (f'offline_conversion{{{BY_MODEL}, k="10"}}', "conversion {{model_type}}"),
                ],
            ),
            12,
            8,
        ),
        grid.place(
            bars(
                "Offline: how often does a list hold a film the user rated next (hit rate @k)?",
                [(f"hit_rate_at_k{{{BY_MODEL}}}", "{{model_type}} @{{k}}")],
            ),
            12,
            8,
        ),
        grid.place(
            timeseries(
                "Are users rating more obscure (or more popular) films than the training data?",
                [('feature_drift_score{feature="item_popularity", statistic="psi"}', "PSI")],
                description="Popularity drift of the films in requests: coverage of the "
                "catalogue changes with it.",
            ),
            24,
            7,
        ),
    ]
    return dashboard(
        "movierec-business",
        "MovieRec / Business and coverage",
        "Volume, click-through, served and offline coverage, long tail and diversity.",
        panels,
    )


DASHBOARDS = {
    "model_performance.json": model_performance,
    "system_health.json": system_health,
    "user_behaviour_ab.json": user_behaviour,
    "business_coverage.json": business,
}
# docs/operations.md lists every dashboard's panels between these markers (kept by --check).
DOCS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
DOCS_START = "<!-- dashboard panels: generated by docker/grafana/generate_dashboards.py -->"
DOCS_END = "<!-- end of dashboard panels -->"


def render() -> dict[str, str]:
    return {name: json.dumps(build(), indent=2) + "\n" for name, build in DASHBOARDS.items()}


def panel_list(rendered: dict[str, str]) -> str:
    """Markdown: per dashboard, its rows and the question each panel answers."""
    lines = []
    for name, text in rendered.items():
        board = json.loads(text)
        lines += ["", f"**{board['title']}** (`{name}`): {board['description']}", ""]
        for panel in board["panels"]:
            if panel["type"] == "row":
                lines.append(f"- *{panel['title']}*")
            else:
                gpu = " (GPU only)" if panel["title"] in GPU_PANELS else ""
                lines.append(f"  - {panel['title']}{gpu}")
    return "\n".join(lines) + "\n"


def with_panel_list(docs: str, listing: str) -> str:
    if DOCS_START not in docs or DOCS_END not in docs:
        raise SystemExit(f"{DOCS}: the markers {DOCS_START!r} ... {DOCS_END!r} are missing")
    before, rest = docs.split(DOCS_START, 1)
    _, after = rest.split(DOCS_END, 1)
    return f"{before}{DOCS_START}\n{listing}\n{DOCS_END}{after}"


def main(argv: list[str]) -> int:
    rendered = render()
    docs = DOCS.read_text(encoding="utf-8")
    documented = with_panel_list(docs, panel_list(rendered))
    if "--check" in argv:
        stale = [
            name
            for name, text in rendered.items()
            if not (DASHBOARD_DIR / name).is_file()
            or (DASHBOARD_DIR / name).read_text(encoding="utf-8") != text
        ]
        for name in stale:
            print(f"{DASHBOARD_DIR / name} is stale: run {Path(__file__).name}", file=sys.stderr)
        if documented != docs:
            print(f"{DOCS}: the panel list is stale: run {Path(__file__).name}", file=sys.stderr)
        return 1 if stale or documented != docs else 0
    DASHBOARD_DIR.mkdir(parents=True, exist_ok=True)
    for name, text in rendered.items():
        (DASHBOARD_DIR / name).write_text(text, encoding="utf-8")
        print(DASHBOARD_DIR / name)
    DOCS.write_text(documented, encoding="utf-8")
    print(DOCS)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
