"""The one place the web app reports to monitoring (``web.metrics``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from flask import Flask
from sqlalchemy import Engine

from training.config import Paths
from training.monitoring import logging_config as _logging
from training.monitoring.pipeline_metrics import PIPELINE_METRICS, PIPELINE_TEXTFILE
from training.monitoring.tuning_metrics import TUNING_METRICS, TUNING_TEXTFILE
from web import metrics as _metrics
from web.catalog import Catalog
from web.db_metrics import instrument_engine
from web.rating_activity_metrics import FilmsBeingRatedCollector
from web.served_list_metrics import ServedListCollector
from web.session_metrics import SessionCollector


def init_app(app: Flask) -> None:
    """/metrics, per-route latency and errors, request ids (X-Request-ID) and access logs."""
    _metrics.init_app(app)


def init_database_metrics(app: Flask, engine: Engine, catalog: Catalog) -> None:
    """Query latency on ``engine``; at each scrape, what the database holds (served lists,
    sessions, films being rated) and the pipeline and tuning textfiles
    (``MOVIEREC_PIPELINE_TEXTFILE``, ``MOVIEREC_TUNING_TEXTFILE``; default
    ``data/metrics/pipeline.prom`` and ``tuning.prom``). After ``init_app``."""
    found = app.extensions[_metrics.EXTENSION_KEY]

    def popularity() -> dict[int, int] | None:
        return found.drift.reference.item_popularity if found.drift is not None else None

    def title_of(movie_id: int) -> str | None:
        movie = catalog.get(movie_id)
        return movie.title if movie is not None else None

    instrument_engine(engine, found.registry)
    found.live_collectors += [
        ServedListCollector(engine, len(catalog), popularity),
        SessionCollector(engine),
        FilmsBeingRatedCollector(engine, title_of),
    ]
    textfiles = (
        ("MOVIEREC_PIPELINE_TEXTFILE", PIPELINE_TEXTFILE, PIPELINE_METRICS),
        ("MOVIEREC_TUNING_TEXTFILE", TUNING_TEXTFILE, TUNING_METRICS),
    )
    for setting, name, families in textfiles:
        textfile = app.config.get(setting, Paths().data / "metrics" / name)
        if textfile:
            found.live_collectors.append(_metrics.TextfileCollector(Path(textfile), families))


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
