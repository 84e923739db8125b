"""Writes the Grafana dashboards in docker/grafana/dashboards/ (run it after editing this file).

The JSON files are generated so every panel has the same shape and every query is written once;
``tests/monitoring/test_dashboard_metrics.py`` checks the files match this script and that
every metric a query names is really exposed. Each dashboard picks its Prometheus through a
``datasource`` variable, so it works both provisioned and imported by hand (no uid to edit).

    python docker/grafana/generate_dashboards.py          # rewrite the files
    python docker/grafana/generate_dashboards.py --check  # exit 1 when a file is stale
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
MODELS = contract.SCORING_MODELS
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


# A per-epoch series shown as a table: one row per epoch, one column per model.
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
    found = {
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


def table(
    title: str,
    queries: list[tuple[str, str]],
    transformations: list[dict] | None = None,
    description: str = "",
) -> dict:
    return {
        "type": "table",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": _targets(queries, instant=True),
        "transformations": transformations or [],
        "fieldConfig": {"defaults": {}, "overrides": []},
        "options": {"showHeader": True},
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
def model_performance() -> dict:
    grid = Layout()
    models = "|".join(MODELS)
    panels = [grid.row("Offline figures (evaluation report): SAE vs RBM")]
    for model in MODELS:
        panels.append(
            grid.place(
                stat(
                    f"{model.upper()}: test RMSE",
                    [(f'model_rmse{{model_type="{model}"}}', "RMSE")],
                    description="Rating error on the test split (lower is better).",
                    thresholds=[(None, "green"), (1.0, "red")],
                ),
                4,
                5,
            )
        )
        panels.append(
            grid.place(
                stat(
                    f"{model.upper()}: precision@10 / NDCG@10",
                    [
                        (f'precision_at_k{{model_type="{model}", k="10"}}', "precision@10"),
                        (f'ndcg_at_k{{model_type="{model}", k="10"}}', "NDCG@10"),
                    ],
                ),
                8,
                5,
            )
        )
    for name, title in (
        ("precision_at_k", "Precision@k"),
        ("recall_at_k", "Recall@k"),
        ("ndcg_at_k", "NDCG@k"),
        ("map_at_k", "MAP@k"),
    ):
        panels.append(
            grid.place(
                bars(
                    f"{title} by model",
                    [(f'{name}{{model_type=~"{models}"}}', "{{model_type}} @{{k}}")],
                ),
                6,
                8,
            )
        )
    panels.append(grid.row("Online: latency, volume and drift of predictions"))
    panels += [
        grid.place(
            timeseries(
                "Prediction latency p50 / p99 by model",
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
                "Predictions per second by model and endpoint",
                [
                    (
                        "sum by (model_type, endpoint) (rate(predictions_total[$__rate_interval]))",
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
                "Prediction drift (PSI, KS) by model",
                [
                    ("prediction_drift_score", "{{model_type}} {{statistic}}"),
                ],
                description="PSI > 0.2 or KS > 0.1 means the served scores moved away from the "
                "training-time scores (movierec monitor drift reports details).",
            ),
            12,
            8,
        ),
        grid.place(
            timeseries(
                "TorchServe / Triton model latency (mean)",
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
    panels.append(grid.row("Training (data/metrics/training.prom, re-exposed by the web app)"))
    panels += [
        grid.place(
            table(
                "Training loss per epoch (SAE | RBM)",
                [("training_loss", "")],
                EPOCH_BY_MODEL,
            ),
            8,
            10,
        ),
        grid.place(
            table(
                "Validation figure per epoch (SAE | RBM)",
                [("validation_loss", "")],
                EPOCH_BY_MODEL,
            ),
            8,
            10,
        ),
        grid.place(
            bars(
                "Training time by model",
                [
                    ("model_training_duration_seconds", "{{model_type}} total"),
                    ("training_seconds_to_best", "{{model_type}} to best epoch"),
                ],
                unit="s",
                maximum=None,
            ),
            8,
            5,
        ),
        grid.place(
            bars(
                "Epochs by model",
                [
                    ("training_epochs_run", "{{model_type}} run"),
                    ("training_best_epoch", "{{model_type}} best"),
                ],
                unit="short",
                maximum=None,
            ),
            8,
            5,
        ),
    ]
    panels.append(grid.row("GPU (only where CUDA is present)"))
    panels += [
        grid.place(
            timeseries(
                "GPU memory used",
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
                "GPU utilisation",
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
        "SAE vs RBM: offline figures, online latency and drift, training, GPU.",
        panels,
    )


def system_health() -> dict:
    grid = Layout()
    panels = [grid.row("Web app")]
    panels += [
        grid.place(
            stat(
                "Requests / s",
                [("sum(rate(http_requests_total[$__rate_interval]))", "")],
                unit="reqps",
                decimals=2,
            ),
            6,
            5,
        ),
        grid.place(
            stat(
                "5xx share",
                [
                    (
                        'sum(rate(http_requests_total{status=~"5.."}[$__rate_interval])) / '
                        "sum(rate(http_requests_total[$__rate_interval]))",
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
                "Cache hit ratio",
                [(ratio('cache_requests_total{result="hit"}', "cache_requests_total"), "")],
                unit="percentunit",
            ),
            6,
            5,
        ),
        grid.place(
            stat(
                "Targets up",
                [('up{job=~"web|torchserve|triton"}', "{{job}}")],
                decimals=0,
                thresholds=[(None, "red"), (1, "green")],
            ),
            6,
            5,
        ),
        grid.place(
            timeseries(
                "Requests / s by route",
                [
                    (
                        "sum by (endpoint) (rate(http_requests_total[$__rate_interval]))",
                        "{{endpoint}}",
                    ),
                ],
                unit="reqps",
            ),
            12,
            8,
        ),
        grid.place(
            timeseries(
                "Latency p50 / p99 by route",
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
                "Errors / s by route and type",
                [
                    (
                        "sum by (endpoint, error_type) (rate(api_errors_total[$__rate_interval]))",
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
                "Process memory and CPU",
                [
                    ('process_resident_memory_bytes{job="web"}', "web {{instance}}"),
                    ("nv_cpu_memory_used_bytes", "Triton"),
                    ("MemoryUsed * 1024 * 1024", "TorchServe host"),
                ],
                unit="bytes",
            ),
            12,
            8,
        ),
    ]
    panels.append(grid.row("Model servers"))
    panels += [
        grid.place(
            timeseries(
                "TorchServe requests / s by status",
                [
                    ("sum(rate(Requests2XX[$__rate_interval]))", "2xx"),
                    ("sum(rate(Requests4XX[$__rate_interval]))", "4xx"),
                    ("sum(rate(Requests5XX[$__rate_interval]))", "5xx"),
                    (
                        "sum by (model_name) (rate(ts_inference_requests_total[$__rate_interval]))",
                        "inferences {{model_name}}",
                    ),
                ],
                unit="reqps",
            ),
            12,
            8,
        ),
        grid.place(
            timeseries(
                "TorchServe queue and prediction time",
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
                "Triton inferences / s",
                [
                    (
                        "sum by (model) (rate(nv_inference_request_success[$__rate_interval]))",
                        "ok {{model}}",
                    ),
                    (
                        "sum by (model) (rate(nv_inference_request_failure[$__rate_interval]))",
                        "failed {{model}}",
                    ),
                ],
                unit="reqps",
            ),
            12,
            8,
        ),
        grid.place(
            timeseries(
                "Triton queue / compute time per request",
                [
                    (
                        "sum by (model) (rate(nv_inference_queue_duration_us[$__rate_interval])) / "
                        "sum by (model) (rate(nv_inference_request_success[$__rate_interval]))",
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
    panels.append(grid.row("Alerts, drift and pipeline"))
    panels += [
        grid.place(
            table(
                "Firing alerts",
                [('ALERTS{alertstate="firing"}', "")],
                [
                    {
                        "id": "organize",
                        "options": {
                            "excludeByName": {"Time": True, "Value": True, "__name__": True}
                        },
                    },
                ],
            ),
            12,
            8,
        ),
        grid.place(
            timeseries(
                "Feature drift (PSI, KS)",
                [
                    ("feature_drift_score", "{{feature}} {{statistic}}"),
                ],
            ),
            12,
            8,
        ),
        grid.place(
            stat(
                "Hours since the last training run",
                [
                    ("(time() - training_last_run_timestamp_seconds) / 3600", "{{model_type}}"),
                ],
                unit="h",
                decimals=1,
            ),
            12,
            5,
        ),
        grid.place(
            stat("Drift window (requests)", [("drift_window_requests", "")], decimals=0), 12, 5
        ),
    ]
    return dashboard(
        "movierec-system-health",
        "MovieRec / System health",
        "Web app, TorchServe and Triton: traffic, latency, errors, cache, memory, alerts.",
        panels,
    )


def user_behaviour() -> dict:
    grid = Layout()
    click = CLICKS
    panels = [grid.row("A/B test: arms side by side")]
    panels += [
        grid.place(
            stat(
                "Click-through by arm (last hour)",
                [(CLICK_THROUGH_1H, "{{arm}} ({{model_type}})")],
                unit="percentunit",
            ),
            12,
            5,
        ),
        grid.place(
            bars(
                "Traffic share by arm",
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
                "Click-through by model and arm",
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
                "Recommendations shown / s by arm",
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
                "Feedback / s by kind",
                [
                    (
                        rate_sum("recommendation_feedback_total", "kind, arm"),
                        "{{kind}} ({{arm}})",
                    ),
                ],
                unit="reqps",
            ),
            12,
            8,
        ),
        grid.place(
            bars(
                "Offline satisfaction (mean rating of simulated clicks)",
                [('offline_satisfaction{k="10"}', "{{model_type}}")],
                unit="short",
                maximum=5,
            ),
            12,
            8,
        ),
    ]
    panels.append(grid.row("Users: ratings, profiles and cold start"))
    panels += [
        grid.place(
            bars(
                "Rating values in requests (time range)",
                [("sum by (value) (increase(request_ratings_total[$__range]))", "{{value}} stars")],
                unit="short",
                maximum=None,
            ),
            8,
            8,
        ),
        grid.place(
            timeseries(
                "Ratings per request (median, p90)",
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
                "Cold-start share (requests with at most 5 ratings)",
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
                "Drift of what users send (PSI)",
                [('feature_drift_score{statistic="psi"}', "{{feature}}")],
            ),
            24,
            7,
        ),
    ]
    return dashboard(
        "movierec-user-behaviour",
        "MovieRec / User behaviour and A/B",
        "Click-through per model and arm, feedback, ratings and cold start.",
        panels,
    )


def business() -> dict:
    grid = Layout()
    click = CLICKS
    panels = [grid.row("Volume")]
    panels += [
        grid.place(
            stat(
                "Recommendations shown (time range)",
                [("sum(increase(recommendation_impressions_total[$__range]))", "")],
                decimals=0,
            ),
            6,
            5,
        ),
        grid.place(
            stat("Clicks (time range)", [(f"sum(increase({click}[$__range]))", "")], decimals=0),
            6,
            5,
        ),
        grid.place(
            stat(
                "Click-through (time range)",
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
                "Predictions (time range)",
                [("sum(increase(predictions_total[$__range]))", "")],
                decimals=0,
            ),
            6,
            5,
        ),
        grid.place(
            timeseries(
                "Predictions per hour by model",
                [("sum by (model_type) (increase(predictions_total[1h]))", "{{model_type}}")],
            ),
            24,
            8,
        ),
    ]
    panels.append(grid.row("Coverage, long tail and diversity (evaluation report)"))
    panels += [
        grid.place(
            bars(
                "Catalogue coverage by model and k", [("catalog_coverage", "{{model_type}} @{{k}}")]
            ),
            8,
            9,
        ),
        grid.place(
            bars(
                "Novelty (long tail) by model and k",
                [("recommendation_novelty", "{{model_type}} @{{k}}")],
                unit="short",
                maximum=None,
            ),
            8,
            9,
        ),
        grid.place(
            bars(
                "Genre diversity by model and k",
                [("recommendation_diversity", "{{model_type}} @{{k}}")],
            ),
            8,
            9,
        ),
        grid.place(
            bars(
                "Simulated click-through and conversion @10",
                [
                    ('offline_click_through{k="10"}', "click-through {{model_type}}"),
                    ('offline_conversion{k="10"}', "conversion {{model_type}}"),
                ],
            ),
            12,
            8,
        ),
        grid.place(
            bars("Hit rate@k by model", [("hit_rate_at_k", "{{model_type}} @{{k}}")]), 12, 8
        ),
        grid.place(
            timeseries(
                "Popularity of what users rate (drift, PSI)",
                [('feature_drift_score{feature="item_popularity", statistic="psi"}', "PSI")],
                description="Users rating more obscure (or only blockbuster) films than the "
                "training data: coverage of the catalogue changes with it.",
            ),
            24,
            7,
        ),
    ]
    return dashboard(
        "movierec-business",
        "MovieRec / Business and coverage",
        "Volume, click-through, catalogue coverage, long tail and diversity.",
        panels,
    )


DASHBOARDS = {
    "model_performance.json": model_performance,
    "system_health.json": system_health,
    "user_behaviour_ab.json": user_behaviour,
    "business_coverage.json": business,
}


def render() -> dict[str, str]:
    return {name: json.dumps(build(), indent=2) + "\n" for name, build in DASHBOARDS.items()}


def main(argv: list[str]) -> int:
    rendered = render()
    if "--check" in argv:
        stale = [
            name
            for name, text in rendered.items()
            if not (DASHBOARD_DIR / name).is_file()
            or (DASHBOARD_DIR / name).read_text(encoding="utf-8") != text
        ]
        for name in stale:
            print(f"{DASHBOARD_DIR / name} is stale: run {Path(__file__).name}", file=sys.stderr)
        return 1 if stale else 0
    DASHBOARD_DIR.mkdir(parents=True, exist_ok=True)
    for name, text in rendered.items():
        (DASHBOARD_DIR / name).write_text(text, encoding="utf-8")
        print(DASHBOARD_DIR / name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
