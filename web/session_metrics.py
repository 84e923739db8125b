"""How long people stay and how much they rate: browser sessions read from the web app's database
at scrape time (``web.db_collector``), over the sessions active in the last ``SESSION_WINDOW``.

* ``web_sessions_active``: sessions seen in the window.
* ``web_session_length_seconds{quantile}``: their length so far, last visit minus start (the last
  visit is stored to the minute: ``web.profiles.LAST_SEEN_RESOLUTION_S``).
* ``web_session_ratings{quantile}``: ratings their visitor has given (a browser's anonymous user
  lives in one session).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import Metric
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import Engine, func, select

from web.db_collector import REFRESH_S, DatabaseCollector
from web.tables import Rating, WebSession, utcnow

SESSION_WINDOW = timedelta(hours=1)
QUANTILES = (0.5, 0.9)
# The busiest hour's sessions a scrape reads at most (newest first).
MAX_SESSIONS = 10_000


def quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _utc(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; they were stored as UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class SessionCollector(DatabaseCollector):
    def __init__(
        self, engine: Engine, window: timedelta = SESSION_WINDOW, refresh_s: float = REFRESH_S
    ) -> None:
        super().__init__(engine, refresh_s)
        self.window = window

    def read(self, engine: Engine) -> list[Metric]:
        since = utcnow() - self.window
        # Correlated: counted through the ratings' user index, for the window's sessions only.
        given_count = (
            select(func.count(Rating.id))
            .where(Rating.user_id == WebSession.user_id)
            .scalar_subquery()
        )
        query = (
            select(WebSession.created_at, WebSession.last_seen, given_count)
            .where(WebSession.last_seen >= since)
            .order_by(WebSession.last_seen.desc())
            .limit(MAX_SESSIONS)
        )
        with engine.connect() as conn:
            rows = conn.execute(query).all()
        lengths = [
            max(0.0, (_utc(last_seen) - _utc(created)).total_seconds())
            for created, last_seen, _given in rows
        ]
        given = [float(count or 0) for _created, _last, count in rows]
        active = GaugeMetricFamily(
            "web_sessions_active", f"Browser sessions seen in the last {self.window}"
        )
        active.add_metric([], len(rows))
        length = GaugeMetricFamily(
            "web_session_length_seconds",
            f"Length so far of the sessions seen in the last {self.window}",
            labels=["quantile"],
        )
        rated = GaugeMetricFamily(
            "web_session_ratings",
            f"Ratings given in the sessions seen in the last {self.window}",
            labels=["quantile"],
        )
        if rows:
            for q in QUANTILES:
                length.add_metric([f"{q:g}"], quantile(lengths, q))
                rated.add_metric([f"{q:g}"], quantile(given, q))
        return [active, length, rated]
