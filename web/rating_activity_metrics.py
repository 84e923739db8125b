"""Which films people are rating right now, read from the web app's database at scrape time
(``web.db_collector``).

``films_being_rated{movie_id, title}``: ratings each film got among the latest ``RECENT_RATINGS``
ratings, for the ``TOP_FILMS`` films with most (a bounded label set: the catalogue's films,
ten at a time).
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Metric
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import Engine, func, select

from web.db_collector import REFRESH_S, DatabaseCollector
from web.tables import Rating

# "Right now": the latest thousand ratings (an hour or two of a busy site).
RECENT_RATINGS = 1_000
TOP_FILMS = 10

TitleOf = Callable[[int], str | None]


class FilmsBeingRatedCollector(DatabaseCollector):
    def __init__(
        self,
        engine: Engine,
        title_of: TitleOf,
        recent: int = RECENT_RATINGS,
        top: int = TOP_FILMS,
        refresh_s: float = REFRESH_S,
    ) -> None:
        super().__init__(engine, refresh_s)
        self.title_of = title_of
        self.recent = recent
        self.top = top

    def read(self, engine: Engine) -> list[Metric]:
        family = GaugeMetricFamily(
            "films_being_rated",
            f"Ratings each film got among the latest {self.recent} (the {self.top} with most)",
            labels=["movie_id", "title"],
        )
        with engine.connect() as conn:
            top = conn.scalar(select(func.max(Rating.id)))
            if top is None:
                return [family]
            given = func.count(Rating.id)
            rows = conn.execute(
                select(Rating.movie_id, given)
                .where(Rating.id > int(top) - self.recent)
                .group_by(Rating.movie_id)
                .order_by(given.desc(), Rating.movie_id)
                .limit(self.top)
            ).all()
        for movie, count in rows:
            family.add_metric([str(movie), self.title_of(movie) or str(movie)], count)
        return [family]
