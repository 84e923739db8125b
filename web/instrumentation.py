"""The one place the web app reports to monitoring (``web.metrics``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from flask import Flask

from training.monitoring import logging_config as _logging
from web import metrics as _metrics


def init_app(app: Flask) -> None:
    """/metrics, per-route latency and errors, request ids (X-Request-ID) and access logs."""
    _metrics.init_app(app)


def request_id() -> str:
    """This request's id (taken from X-Request-ID or made up); forwarded to the model server."""
    return _logging.current_request_id() or _logging.new_request_id()


def observe_prediction(model: str, endpoint: str, seconds: float) -> None:
    _metrics.observe_prediction(model, endpoint, seconds)


def record_cache(hit: bool) -> None:
    _metrics.record_cache(hit)


def record_impressions(model: str, arm: str, count: int) -> None:
    _metrics.record_impressions(model, arm, count)


def record_feedback(model: str, arm: str, kind: str) -> None:
    _metrics.record_feedback(model, arm, kind)


def set_offline_metrics(report: dict) -> None:
    _metrics.set_offline_metrics(report)


def record_request_for_drift(
    ratings: Mapping[int, float], scores: Sequence[float], model: str
) -> None:
    _metrics.record_request_for_drift(dict(ratings), list(scores), model)
