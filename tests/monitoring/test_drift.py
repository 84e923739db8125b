"""Drift: PSI and KS on hand-checkable cases, the training-time reference, synthetic traffic
with and without a shift, the gauges, the request log and the ``movierec monitor drift`` CLI."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tests.monitoring.helpers import minimal_app, value
from training.config import ConfigError
from training.monitoring import drift
from web import metrics

N_REQUESTS = 200
SEED = 7
# Served scores of the "sae" in the reference, and of a model that went wrong.
SCORE_MEAN, SCORE_SD, SHIFTED_SCORE_MEAN = 3.8, 0.4, 2.6
START = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


# -- statistics on cases checkable by hand ---------------------------------------------------------
def test_psi_of_known_proportions():
    assert drift.psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    # (0.25 - 0.5) ln(0.25 / 0.5) + (0.75 - 0.5) ln(0.75 / 0.5) = 0.25 ln 2 + 0.25 ln 1.5
    assert drift.psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.25 * math.log(2 * 1.5))
    # An empty bin is floored at epsilon, so the index stays finite (and large).
    eps = drift.PSI_EPSILON
    expected = (eps - 0.5) * math.log(eps / 0.5) + 0.5 * math.log(2)
    assert drift.psi([0.5, 0.5], [0.0, 1.0]) == pytest.approx(expected)
    with pytest.raises(ValueError, match="bins differ"):
        drift.psi([0.5, 0.5], [1.0])


def test_ks_of_known_samples():
    statistic, p_value = drift.ks([1, 2, 3, 4], [3, 4, 5, 6])
    assert statistic == pytest.approx(0.5)  # the CDFs differ most at 2: 2/4 vs 0/4
    assert drift.ks([1, 2, 3], [1, 2, 3]) == (0.0, 1.0)
    assert 0 < p_value < 1


def test_discrete_distribution_bins_one_value_each():
    reference = drift.Distribution.from_values([1, 1, 2, 3, 3, 3], discrete=True)
    assert reference.edges == [1.5, 2.5]
    assert reference.proportions == pytest.approx([2 / 6, 1 / 6, 3 / 6], abs=1e-6)
    assert list(reference.bin_proportions([3, 3, 1, 5])) == [0.25, 0.0, 0.75]


def test_continuous_distribution_has_quantile_bins_and_a_bounded_sample():
    values = np.arange(10_000, dtype=float)
    reference = drift.Distribution.from_values(values, sample_size=100)
    assert len(reference.edges) == drift.PSI_QUANTILE_BINS - 1
    assert reference.proportions == pytest.approx([0.1] * drift.PSI_QUANTILE_BINS, abs=1e-6)
    assert len(reference.sample) == 100
    index, statistic, _ = reference.compare(values)
    assert index == pytest.approx(0.0) and statistic < 0.1


# -- the reference and synthetic traffic ----------------------------------------------------------
class FixedScores:
    """Stands in for a recommender: predicts the same scores for every user."""

    def __init__(self, n_items: int) -> None:
        self.row = torch.linspace(1, 5, n_items)

    def predict(self, ratings: torch.Tensor) -> torch.Tensor:
        return self.row.expand(ratings.shape[0], -1).clone()


@pytest.fixture(scope="module")
def reference_dict(prepared) -> dict:
    scores = np.random.default_rng(SEED).normal(SCORE_MEAN, SCORE_SD, 10_000)
    return drift.build_reference(prepared, {"sae": scores})


@pytest.fixture(scope="module")
def reference(reference_dict) -> drift.Reference:
    return drift.Reference.from_dict(reference_dict)


def test_served_scores_are_the_top_k_unseen(prepared):
    scores = drift.served_scores(FixedScores(prepared.n_items), prepared.train, k=3)
    assert scores.shape == (prepared.train.shape[0] * 3,)
    assert scores.max() <= 5.0 and scores.min() > 4.9  # the three best columns, when unrated


def test_reference_describes_the_training_data(prepared, reference_dict, tmp_path):
    features = reference_dict["features"]
    assert set(features) == set(drift.FEATURES)
    assert features["rating_value"]["edges"] == [1.5, 2.5, 3.5, 4.5]
    rated = prepared.train[prepared.train > 0]
    expected = [float((rated == star).float().mean()) for star in range(1, 6)]
    assert features["rating_value"]["proportions"] == pytest.approx(expected, abs=1e-5)
    assert len(reference_dict["item_popularity"]) == prepared.n_items
    assert set(reference_dict["scores"]) == {"sae"}
    path = drift.save_reference(reference_dict, tmp_path / "ref" / drift.REFERENCE_FILE)
    loaded = drift.load_reference(path)
    assert loaded.features["profile_size"].edges == features["profile_size"]["edges"]


def test_a_broken_reference_is_named(tmp_path):
    path = tmp_path / "drift_reference.json"
    path.write_text('{"format": 1, "features": {}}')
    with pytest.raises(ConfigError, match="drift_reference.json: not a drift reference"):
        drift.load_reference(path)
    with pytest.raises(FileNotFoundError, match="monitor reference"):
        drift.load_reference(tmp_path / "missing.json")


def unshifted_traffic(prepared, n: int = N_REQUESTS, start: datetime = START):
    """Requests drawn like the training data: real training profiles, reference-like scores."""
    rng = np.random.default_rng(SEED + 1)
    item_ids = prepared.metadata["item_ids"]
    train = prepared.train
    users = rng.choice(np.flatnonzero((train > 0).any(dim=1).numpy()), n, replace=False)
    requests = []
    for i, user in enumerate(users):
        columns = torch.nonzero(train[user]).flatten().tolist()
        ratings = {item_ids[c]: float(train[user, c]) for c in columns}
        scores = rng.normal(SCORE_MEAN, SCORE_SD, drift.REFERENCE_TOP_K).tolist()
        requests.append(drift.LoggedRequest(start + timedelta(minutes=i), "sae", ratings, scores))
    return requests


def shifted_traffic(prepared, n: int = N_REQUESTS, start: datetime = START):
    """New users with a handful of low ratings on obscure films, and a model scoring low."""
    rng = np.random.default_rng(SEED + 2)
    popularity = (prepared.train > 0).sum(dim=0).numpy()
    obscure = np.asarray(prepared.metadata["item_ids"])[np.argsort(popularity)[:200]]
    requests = []
    for i in range(n):
        items = rng.choice(obscure, rng.integers(3, 8), replace=False)
        ratings = {int(item): float(rng.integers(1, 3)) for item in items}
        scores = rng.normal(SHIFTED_SCORE_MEAN, SCORE_SD, drift.REFERENCE_TOP_K).tolist()
        requests.append(drift.LoggedRequest(start + timedelta(minutes=i), "sae", ratings, scores))
    return requests


def by_name(report: drift.DriftReport) -> dict[str, drift.Comparison]:
    return {c.name: c for c in report.comparisons}


def test_unshifted_traffic_shows_no_drift(prepared, reference):
    report = drift.compare_requests(reference, unshifted_traffic(prepared))
    assert not report.drifted, report.to_text()
    assert report.recommendation()["retrain"] is False and "retrain" not in report.to_text()
    for comparison in report.comparisons:
        assert comparison.psi < 0.1, comparison


def test_shifted_traffic_is_detected(prepared, reference):
    report = drift.compare_requests(reference, shifted_traffic(prepared))
    assert report.drifted
    found = by_name(report)
    for name in (*drift.FEATURES, "sae"):
        assert found[name].drifted, found[name]
        assert found[name].psi > drift.PSI_DRIFT_THRESHOLD
    assert "DRIFT DETECTED" in report.to_text()
    recommendation = report.recommendation()  # a tripped threshold recommends a retrain
    assert recommendation["retrain"] and "prediction sae" in recommendation["because"]
    assert "recommendation: retrain (movierec retrain)" in report.to_text()


def test_a_model_without_reference_is_reported_not_flagged(prepared, reference):
    requests = [
        drift.LoggedRequest(r.timestamp, "hybrid", r.ratings, r.scores)
        for r in unshifted_traffic(prepared, n=30)
    ]
    found = by_name(drift.compare_requests(reference, requests))
    assert found["hybrid"].note == "no reference" and not found["hybrid"].drifted


def test_the_monitor_waits_for_enough_requests_and_slides(prepared, reference):
    monitor = drift.DriftMonitor(reference, window=50, min_requests=20)
    for request in unshifted_traffic(prepared, n=19):
        monitor.add(request)
    assert monitor.report() is None
    for request in shifted_traffic(prepared, n=60):
        monitor.add(request)
    assert len(monitor) == 50  # only shifted requests remain in the window
    report = monitor.report()
    assert report.n_requests == 50 and report.drifted


# -- the web app's gauges and request log --------------------------------------------------------
def test_drift_gauges_and_request_log(prepared, reference_dict, tmp_path):
    path = drift.save_reference(reference_dict, tmp_path / drift.REFERENCE_FILE)
    log_path = tmp_path / "logs" / drift.REQUEST_LOG_FILE
    app = minimal_app(MOVIEREC_DRIFT_REFERENCE=path, MOVIEREC_REQUEST_LOG=log_path)
    client = app.test_client()
    with app.app_context():
        for request in shifted_traffic(prepared, n=drift.MIN_WINDOW_REQUESTS):
            metrics.record_request_for_drift(request.ratings, request.scores, "sae")
    text = client.get("/metrics").get_data(as_text=True)
    assert value(text, "drift_window_requests") == drift.MIN_WINDOW_REQUESTS
    assert value(text, "feature_drift_score", feature="profile_size", statistic="psi") > 0.2
    assert value(text, "feature_drift_score", feature="rating_value", statistic="ks") > 0.1
    assert value(text, "prediction_drift_score", model_type="sae", statistic="psi") > 0.2
    assert value(text, "drift_detected", scope="prediction", subject="sae") == 1
    assert value(text, "request_profile_size_count", model_type="sae") == drift.MIN_WINDOW_REQUESTS
    assert value(text, "request_ratings_total", value="1") > 0
    lines = log_path.read_text().splitlines()
    assert len(lines) == drift.MIN_WINDOW_REQUESTS
    assert json.loads(lines[0])["model"] == "sae"


def test_without_reference_the_gauges_stay_empty(tmp_path):
    app = minimal_app(MOVIEREC_DRIFT_REFERENCE=tmp_path / "absent.json")
    with app.app_context():
        metrics.record_request_for_drift({1: 4.0}, [4.2], "sae")
    text = app.test_client().get("/metrics").get_data(as_text=True)
    assert value(text, "feature_drift_score", feature="profile_size", statistic="psi") is None
    assert value(text, "request_profile_size_count", model_type="sae") == 1


# -- the CLI --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def logged_day(prepared, reference_dict, tmp_path_factory):
    """A request log: a calm morning (08:00-) and a shifted afternoon (14:00-)."""
    folder = tmp_path_factory.mktemp("drift-cli")
    reference_path = drift.save_reference(reference_dict, folder / drift.REFERENCE_FILE)
    log = drift.RequestLog(folder / drift.REQUEST_LOG_FILE)
    morning = START.replace(hour=8)
    afternoon = START.replace(hour=14)
    for request in [
        *unshifted_traffic(prepared, start=morning),
        *shifted_traffic(prepared, start=afternoon),
    ]:
        log.write(request, request_id="test")
    log.close()
    return folder / drift.REQUEST_LOG_FILE, reference_path


def run_cli(*args: str):
    from training.cli import app

    return CliRunner().invoke(app, ["monitor", "drift", *args])


def test_cli_reports_a_calm_range_and_a_shifted_range(logged_day):
    log, reference_path = logged_day
    common = ["--log", str(log), "--reference", str(reference_path)]
    calm = run_cli("--since", "2024-05-01T08:00:00", "--until", "2024-05-01T12:00:00", *common)
    assert calm.exit_code == 0, calm.output
    assert f"{N_REQUESTS} requests" in calm.output and "no drift detected" in calm.output
    shifted = run_cli("--since", "2024-05-01T14:00:00", *common, "--json")
    assert shifted.exit_code == 0, shifted.output
    report = json.loads(shifted.output)
    assert report["n_requests"] == N_REQUESTS and report["drifted"] is True
    assert {c["name"] for c in report["comparisons"] if c["drifted"]} >= {"profile_size", "sae"}
    assert report["recommendation"]["retrain"] is True


def test_cli_errors_are_clear(logged_day, tmp_path):
    log, reference_path = logged_day
    common = ["--reference", str(reference_path)]
    empty = run_cli("--since", "2030-01-01", "--log", str(log), *common)
    assert empty.exit_code == 4 and "no logged requests" in empty.output
    missing = run_cli("--log", str(tmp_path / "none.jsonl"), *common)
    assert missing.exit_code == 4 and "no request log" in missing.output
    broken = tmp_path / "requests.jsonl"
    broken.write_text(log.read_text().splitlines()[0] + "\n{not json\n")
    bad = run_cli("--log", str(broken), *common)
    assert bad.exit_code == 3 and f"{broken}:2: not JSON" in bad.output
    backwards = run_cli(
        "--since", "2024-05-02", "--until", "2024-05-01", "--log", str(log), *common
    )
    assert backwards.exit_code == 2


def test_rotated_logs_are_read_oldest_first(tmp_path, prepared):
    path = tmp_path / drift.REQUEST_LOG_FILE
    requests = unshifted_traffic(prepared, n=30)
    log = drift.RequestLog(path, max_bytes=4000, backup_count=50)
    for request in requests:
        log.write(request)
    log.close()
    assert len(drift.log_files(path)) > 2
    read = drift.read_request_log(path)
    assert [r.timestamp for r in read] == [r.timestamp for r in requests]
    since, until = requests[10].timestamp, requests[20].timestamp
    assert len(drift.read_request_log(path, since, until)) == 10
