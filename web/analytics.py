"""Figures for the analytics page: offline metrics, live request counts, latency percentiles,
cache hit rate and feedback totals. Computed from the stored events, so every worker agrees.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from web.tables import Event, Feedback, Impression

PERCENTILES = (50, 95, 99)
# Event kinds: every page/API request, and every recommendation served (with model, cache hit).
HTTP_EVENT = "http"
RECOMMEND_EVENT = "recommend"
# Latency percentiles look at the most recent events only, so the page stays fast.
LATENCY_WINDOW = 5000
# The analytics page lists these offline figures first when the report has them.
HEADLINE_METRICS = ("rmse", "mae", "precision@10", "recall@10", "ndcg@10", "map@10")


@dataclass
class LiveFigures:
    requests: dict[str, int] = field(default_factory=dict)
    requests_by_model: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, dict[int, float]] = field(default_factory=dict)
    model_latency_ms: dict[str, dict[int, float]] = field(default_factory=dict)
    cache_hits: int = 0
    cache_lookups: int = 0
    feedback: dict[str, dict[str, int]] = field(default_factory=dict)
    feedback_totals: dict[str, int] = field(default_factory=dict)
    impressions: dict[str, int] = field(default_factory=dict)

    @property
    def cache_hit_rate(self) -> float | None:
        return self.cache_hits / self.cache_lookups if self.cache_lookups else None


def live_figures(db: Session) -> LiveFigures:
    figures = LiveFigures()
    figures.requests = dict(
        db.execute(
            select(Event.endpoint, func.count())
            .where(Event.kind == HTTP_EVENT)
            .group_by(Event.endpoint)
        ).all()
    )
    # Recommendation events always name their model (the column is nullable for HTTP events).
    figures.requests_by_model = {
        model: count
        for model, count in db.execute(
            select(Event.model, func.count())
            .where(Event.kind == RECOMMEND_EVENT)
            .group_by(Event.model)
        ).all()
        if model is not None
    }
    figures.latency_ms = _percentiles(db, HTTP_EVENT, Event.endpoint)
    figures.model_latency_ms = _percentiles(db, RECOMMEND_EVENT, Event.model)
    hits = dict(
        db.execute(
            select(Event.cache_hit, func.count())
            .where(Event.cache_hit.is_not(None))
            .group_by(Event.cache_hit)
        ).all()
    )
    figures.cache_hits = hits.get(True, 0)
    figures.cache_lookups = hits.get(True, 0) + hits.get(False, 0)
    feedback: dict[str, dict[str, int]] = defaultdict(dict)
    for model, kind, count in db.execute(
        select(Feedback.model, Feedback.kind, func.count()).group_by(Feedback.model, Feedback.kind)
    ).all():
        feedback[model][kind] = count
        figures.feedback_totals[kind] = figures.feedback_totals.get(kind, 0) + count
    figures.feedback = dict(feedback)
    figures.impressions = dict(
        db.execute(select(Impression.model, func.count()).group_by(Impression.model)).all()
    )
    return figures


def _percentiles(
    db: Session, kind: str, column: InstrumentedAttribute[str | None]
) -> dict[str, dict[int, float]]:
    recent = db.execute(
        select(column, Event.latency_ms)
        .where(Event.kind == kind)
        .order_by(Event.id.desc())
        .limit(LATENCY_WINDOW)
    ).all()
    groups: dict[str, list[float]] = defaultdict(list)
    for name, latency in recent:
        if name is not None:  # sorted() below cannot order None among names
            groups[name].append(latency)
    return {
        name: dict(zip(PERCENTILES, np.percentile(values, PERCENTILES).tolist(), strict=True))
        for name, values in sorted(groups.items())
    }


# Report entries that hold numbers but are not test figures (the hybrid's weights).
NOT_FIGURES = frozenset({"weights", "choices", "cold_start"})
# The offline figures the compare page shows beside the three live panels.
COMPARE_METRICS = ("ndcg@10", "precision@10", "rmse", "median_popularity@10")


def compare_figures(table: dict[str, dict[str, float]], models: tuple[str, ...]) -> dict:
    """Per served model, its COMPARE_METRICS from the offline table (missing ones left out)."""
    return {
        model: {
            metric: table[model][metric] for metric in COMPARE_METRICS if metric in table[model]
        }
        for model in models
        if model in table
    }


def load_offline_report(path: Path) -> dict | None:
    """The evaluation report, or None when it has not been produced (or is unreadable)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def offline_table(report: dict | None) -> dict[str, dict[str, float]]:
    """Per model, its numeric test figures, whichever nesting the report uses.

    Accepts ``{"models": {name: {...}}}`` or ``{name: {...}}``; one level of nested dicts
    (e.g. ``{"test_metrics": {...}}``) is flattened.
    """
    if not report:
        return {}
    models = report.get("models", report)
    table = {}
    for name, body in models.items() if isinstance(models, dict) else ():
        if not isinstance(body, dict):
            continue
        flat = {}
        for key, value in body.items():
            if key in NOT_FIGURES:
                continue
            if isinstance(value, int | float) and not isinstance(value, bool):
                flat[key] = float(value)
            elif isinstance(value, dict):
                for inner, number in value.items():
                    if isinstance(number, int | float) and not isinstance(number, bool):
                        flat[inner] = float(number)
        if flat:
            table[name] = dict(
                sorted(flat.items(), key=lambda kv: (kv[0] not in HEADLINE_METRICS, kv[0]))
            )
    return table


def offline_charts(
    table: dict[str, dict[str, float]], count: int = len(HEADLINE_METRICS)
) -> list[tuple[str, list[str], list[float]]]:
    """(metric, models, values) for the headline metrics the report has, in that order."""
    charts = []
    for metric in HEADLINE_METRICS:
        models = [model for model, figures in table.items() if metric in figures]
        if models:
            charts.append((metric, models, [table[model][metric] for model in models]))
    return charts[:count]
