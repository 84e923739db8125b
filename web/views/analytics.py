"""The analytics / model performance page; its live part refreshes itself with htmx."""

from __future__ import annotations

from flask import Blueprint, render_template

from web import db
from web.analytics import (
    PERCENTILES,
    live_figures,
    load_offline_report,
    offline_charts,
    offline_table,
)
from web.htmx import is_htmx
from web.services import services

bp = Blueprint("analytics", __name__)

LIVE_REFRESH_S = 10


def _live_context() -> dict:
    return {
        "live": live_figures(db.get_session()),
        "percentiles": PERCENTILES,
        "refresh_s": LIVE_REFRESH_S,
    }


@bp.get("/analytics")
def analytics() -> str:
    report_path = services().settings.evaluation_report
    offline = offline_table(load_offline_report(report_path))
    return render_template(
        "analytics.html",
        offline=offline,
        offline_charts=offline_charts(offline),
        report_path=report_path,
        **_live_context(),
    )


@bp.get("/analytics/live")
def analytics_live() -> str:
    template = "partials/analytics_live.html" if is_htmx() else "analytics.html"
    if is_htmx():
        return render_template(template, **_live_context())
    return analytics()
