"""The web app's /metrics: request metrics by route, errors by type, model, cache, feedback and
offline figures, each app with its own registry."""

from __future__ import annotations

import math

import pytest
from flask import Flask

from tests.monitoring.helpers import minimal_app, samples, value
from web import metrics


@pytest.fixture
def app() -> Flask:
    return minimal_app()


def scrape(app: Flask) -> str:
    response = app.test_client().get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    return response.get_data(as_text=True)


def test_requests_are_counted_per_route_not_per_path(app):
    client = app.test_client()
    for movie_id in (5, 6, 7):
        assert client.get(f"/movies/{movie_id}").status_code == 200
    text = scrape(app)
    route = "/movies/<int:movie_id>"
    assert value(text, "http_requests_total", endpoint=route, method="GET", status="200") == 3
    assert value(text, "http_request_duration_seconds_count", endpoint=route, method="GET") == 3
    assert not any("/movies/5" in str(labels) for _, labels in samples(text))


def test_errors_are_counted_by_route_and_type(app):
    client = app.test_client()
    assert client.get("/movies/0").status_code == 404
    assert client.get("/movies/1").status_code == 500
    assert client.get("/no/such/page/42").status_code == 404
    text = scrape(app)
    route = "/movies/<int:movie_id>"
    assert value(text, "api_errors_total", endpoint=route, error_type="not_found") == 1
    # An unhandled exception is named by its class, which says more than "500".
    assert value(text, "api_errors_total", endpoint=route, error_type="RuntimeError") == 1
    # Unknown paths share one label value, so scanners cannot blow up the series count.
    assert value(text, "api_errors_total", endpoint="<unmatched>", error_type="not_found") == 1
    assert value(text, "http_requests_total", endpoint=route, method="GET", status="500") == 1


def test_predictions_cache_and_clicks(app):
    app.test_client().get("/movies/9")
    with app.app_context():
        metrics.observe_prediction("rbm", "recommend", 0.004)
        metrics.record_cache(True)
        metrics.record_cache(True)
        metrics.record_cache(False)
        metrics.record_impressions("sae", "a", 10)
        metrics.record_feedback("sae", "a", "up")
        metrics.record_feedback("sae", "a", "watched")
        metrics.record_feedback("sae", "a", "down")
    text = scrape(app)
    assert value(text, "predictions_total", model_type="sae", endpoint="movie") == 1
    assert value(text, "predictions_total", model_type="rbm", endpoint="recommend") == 1
    assert (
        value(text, "prediction_latency_seconds_count", model_type="rbm", endpoint="recommend") == 1
    )
    assert (
        value(
            text,
            "prediction_latency_seconds_bucket",
            model_type="rbm",
            endpoint="recommend",
            le="0.005",
        )
        == 1
    )
    assert value(text, "cache_requests_total", result="hit") == 2
    assert value(text, "cache_requests_total", result="miss") == 1
    assert value(text, "recommendation_impressions_total", model_type="sae", arm="a") == 10
    assert value(text, "recommendation_feedback_total", model_type="sae", arm="a", kind="down") == 1
    # A click is positive feedback (contract.CLICK_KINDS): "up" and "watched", not "down".
    assert value(text, "recommendation_clicks_total", model_type="sae", arm="a") == 2


def test_label_values_are_guarded():
    assert metrics.label_value("sae") == "sae"
    assert metrics.label_value("user 42's <script>") == "other"
    assert metrics.label_value("x" * 65) == "other"
    assert metrics.rating_label(4) == "4" and metrics.rating_label(3.5) == "3.5"
    assert metrics.rating_label(7) == "other"


def test_each_app_has_its_own_registry():
    first, second = minimal_app(), minimal_app()
    first.test_client().get("/movies/3")
    route = "/movies/<int:movie_id>"
    assert (
        value(scrape(first), "http_requests_total", endpoint=route, method="GET", status="200") == 1
    )
    assert (
        value(scrape(second), "http_requests_total", endpoint=route, method="GET", status="200")
        is None
    )


def test_calls_outside_a_request_go_to_the_latest_app():
    app = minimal_app()
    metrics.record_cache(False)  # no app context: e.g. called while create_app runs
    assert value(scrape(app), "cache_requests_total", result="miss") == 1


REPORT = {
    "models": {
        "sae": {
            "rating": {"rmse": 0.951, "mae": 0.75, "r2": 0.2},
            "ranking": {
                "precision@5": 0.31,
                "precision@10": 0.27,
                "ndcg@10": 0.31,
                "hit_rate@10": 0.8,
                "n_users": 459,
            },
            "beyond_accuracy": {"coverage@10": 0.12, "novelty@10": 4.2},
            "business": {"click_through@10": 0.6, "satisfaction@10": None},
        },
        # The RBM scores are not ratings: no rating section at all.
        "rbm": {"ranking": {"precision@10": 0.2, "ndcg@10": float("nan")}},
        "broken": "not a dict",
    },
}


def test_offline_metrics_from_the_evaluation_report(app):
    with app.app_context():
        metrics.set_offline_metrics(REPORT)
    text = scrape(app)
    assert value(text, "model_rmse", model_type="sae") == pytest.approx(0.951)
    assert value(text, "model_mae", model_type="sae") == pytest.approx(0.75)
    assert value(text, "precision_at_k", model_type="sae", k="5") == pytest.approx(0.31)
    assert value(text, "precision_at_k", model_type="rbm", k="10") == pytest.approx(0.2)
    assert value(text, "hit_rate_at_k", model_type="sae", k="10") == pytest.approx(0.8)
    assert value(text, "catalog_coverage", model_type="sae", k="10") == pytest.approx(0.12)
    assert value(text, "recommendation_novelty", model_type="sae", k="10") == pytest.approx(4.2)
    assert value(text, "offline_click_through", model_type="sae", k="10") == pytest.approx(0.6)
    # Missing or not-a-number figures are skipped, not exported as NaN.
    assert value(text, "model_rmse", model_type="rbm") is None
    assert value(text, "ndcg_at_k", model_type="rbm", k="10") is None
    assert value(text, "offline_satisfaction", model_type="sae", k="10") is None
    assert not any(math.isnan(v) for v in samples(text).values())


def test_offline_metrics_from_the_flat_dvc_figures_replace_older_ones(app):
    with app.app_context():
        metrics.set_offline_metrics(REPORT)
        metrics.set_offline_metrics({"sae": {"rmse": 0.93, "precision@10": 0.28}})
    text = scrape(app)
    assert value(text, "model_rmse", model_type="sae") == pytest.approx(0.93)
    assert value(text, "precision_at_k", model_type="rbm", k="10") is None
    with app.app_context():
        metrics.set_offline_metrics({})  # an empty or odd report changes nothing else
    assert value(scrape(app), "model_rmse", model_type="sae") is None


def test_training_textfile_is_re_exposed(tmp_path):
    from training.monitoring.training_metrics import write_training_textfile

    textfile = tmp_path / "training.prom"
    app = minimal_app(MOVIEREC_TRAINING_TEXTFILE=textfile)
    assert value(scrape(app), "training_epochs_run", model_type="sae") is None
    history = {
        "train_loss": [1.0, 0.5],
        "validation": [{"rmse": 1.1}, {"rmse": 0.9}],
        "best_epoch": 2,
        "seconds_total": 3.5,
        "seconds_to_best": 3.0,
    }
    write_training_textfile(textfile, "sae", history, monitor="rmse")
    text = scrape(app)
    assert value(text, "training_epochs_run", model_type="sae") == 2
    assert value(text, "training_loss", model_type="sae", epoch="2") == 0.5
