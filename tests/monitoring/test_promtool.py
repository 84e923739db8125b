"""promtool checks of the Prometheus configuration, the alert rules (syntax and unit tests) and
every dashboard query, plus thresholds that must match the code.

promtool comes with Debian's ``prometheus`` package (CI: ``apt-get install prometheus``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import yaml

from tests.monitoring.promql import (
    PROMETHEUS_DIR,
    RULES,
    dashboard_expressions,
    metric_names,
    rule_expressions,
    without_grafana_variables,
)
from training.monitoring import drift

PROMTOOL_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        message = "promtool not found: apt-get install prometheus (Debian ships promtool with it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def run(promtool: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [promtool, *args],
        cwd=PROMETHEUS_DIR,
        capture_output=True,
        text=True,
        timeout=PROMTOOL_TIMEOUT_S,
    )


def test_config_is_valid(promtool):
    result = run(promtool, "check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rules_are_valid(promtool):
    result = run(promtool, "check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rule_expressions())} rules found" in result.stdout


def test_rules_fire_on_synthetic_series(promtool):
    result = run(promtool, "test", "rules", "alert_rules_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_dashboard_query_parses(promtool, tmp_path):
    """promtool parses each query as a recording rule; a typo in any panel fails here."""
    expressions = dashboard_expressions()
    assert len(expressions) > 40
    rules = [
        {"record": f"dashboard:query_{i}", "expr": without_grafana_variables(expr)}
        for i, expr in enumerate(expressions.values())
    ]
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = run(promtool, "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_seed_alerts_are_all_there():
    assert {
        "ModelAccuracyDrop",
        "HighApiErrorRate",
        "HighP99Latency",
        "FeatureDrift",
        "PredictionDrift",
        "GpuMemoryHigh",
    } <= set(rule_expressions())


def test_drift_alert_thresholds_match_the_code():
    rules = rule_expressions()
    for alert in ("FeatureDrift", "PredictionDrift"):
        threshold = float(re.search(r">\s*([0-9.]+)", rules[alert]).group(1))
        assert threshold == drift.PSI_DRIFT_THRESHOLD, alert


def test_metric_names_are_found_in_queries():
    expr = (
        "histogram_quantile(0.99, sum by (le, endpoint) (rate(http_request_duration_seconds"
        '_bucket{job="web", status=~"5.."}[5m]))) > 1 and on (job) up offset 1h'
    )
    assert metric_names(expr) == {"http_request_duration_seconds_bucket", "up"}
    assert metric_names("(time() - training_last_run_timestamp_seconds) / 3600") == {
        "training_last_run_timestamp_seconds"
    }
