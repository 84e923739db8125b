"""How good and how varied the lists the web app really served are, read from its database
(impressions, feedback, ratings) at scrape time (``web.db_collector``).

Per model (``model_type``: sae, rbm, hybrid), over the latest ``WINDOW_ROWS`` rows of each table:

* ``recommendation_accuracy``: share of judged served films the person liked. A film a model
  showed a user is judged liked when the user afterwards rated it at least
  ``contract.LIKED_RATING`` stars or gave it positive feedback (``contract.CLICK_KINDS``), and
  missed when rated lower or given the other feedback (down).
* ``user_satisfaction_score``: mean stars people gave afterwards to films a model showed them.
* ``recommendation_accuracy_judgements``: how many judgements the accuracy rests on.
* ``served_catalog_coverage``: share of the catalogue among the films shown (the live
  counterpart of the evaluation report's ``catalog_coverage``).
* ``served_long_tail_share``: share of the films shown that lie outside the most-rated
  ``LONG_TAIL_HEAD_SHARE`` of the catalogue (training popularity, from the drift reference;
  left out without one).
* ``served_window_impressions``: how many films shown the two figures above read.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping

from prometheus_client import Metric
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import Connection, Engine, and_, func, select

from handlers import contract
from web.db_collector import REFRESH_S, DatabaseCollector
from web.metrics import label_value
from web.tables import Feedback, Impression, Rating

# Rows of each table a figure reads: recent enough to follow a change of model within the hour
# on a busy site, enough to be more than noise on a quiet one.
WINDOW_ROWS = 10_000
# The head of the catalogue: its most-rated fifth (the Pareto cut the long-tail literature uses).
LONG_TAIL_HEAD_SHARE = 0.2
LIKED_FEEDBACK = frozenset(contract.CLICK_KINDS)
MODEL = "model_type"

Popularity = Callable[[], Mapping[int, int] | None]


def head_of(popularity: Mapping[int, int], catalogue_size: int) -> frozenset[int]:
    """The most-rated ``LONG_TAIL_HEAD_SHARE`` of the catalogue (ties broken by id)."""
    size = math.ceil(LONG_TAIL_HEAD_SHARE * catalogue_size)
    ranked = sorted(popularity, key=lambda movie: (-popularity[movie], movie))
    return frozenset(ranked[:size])


def _latest(conn: Connection, id_column: object, window: int) -> int | None:
    """The lowest id inside the window of the latest ``window`` rows (None: empty table)."""
    top = conn.scalar(select(func.max(id_column)))
    return None if top is None else int(top) - window


class ServedListCollector(DatabaseCollector):
    def __init__(
        self,
        engine: Engine,
        catalogue_size: int,
        popularity: Popularity = lambda: None,
        window: int = WINDOW_ROWS,
        refresh_s: float = REFRESH_S,
    ) -> None:
        super().__init__(engine, refresh_s)
        self.catalogue_size = catalogue_size
        self.popularity = popularity
        self.window = window
        self._head: tuple[int, frozenset[int]] | None = None

    def _head_films(self) -> frozenset[int] | None:
        popularity = self.popularity()
        if not popularity:
            return None
        if self._head is None or self._head[0] != id(popularity):
            self._head = (id(popularity), head_of(popularity, self.catalogue_size))
        return self._head[1]

    def read(self, engine: Engine) -> list[Metric]:
        with engine.connect() as conn:
            return [*self._judgements(conn), *self._served(conn)]

    def _judgements(self, conn: Connection) -> list[Metric]:
        liked: dict[str, int] = defaultdict(int)
        judged: dict[str, int] = defaultdict(int)
        stars: dict[str, list[int]] = defaultdict(list)
        low = _latest(conn, Rating.id, self.window)
        if low is not None:
            shown_before = and_(
                Impression.user_id == Rating.user_id,
                Impression.movie_id == Rating.movie_id,
                Impression.created_at <= Rating.updated_at,
            )
            rows = conn.execute(
                select(Rating.id, Rating.rating, Impression.model)
                .join(Impression, shown_before)
                .where(Rating.id > low)
                .distinct()
            )
            for _id, rating, model in rows:
                stars[model].append(rating)
                judged[model] += 1
                liked[model] += rating >= contract.LIKED_RATING
        low = _latest(conn, Feedback.id, self.window)
        if low is not None:
            for model, kind in conn.execute(
                select(Feedback.model, Feedback.kind).where(Feedback.id > low)
            ):
                judged[model] += 1
                liked[model] += kind in LIKED_FEEDBACK
        accuracy = GaugeMetricFamily(
            "recommendation_accuracy",
            "Share of judged served films liked afterwards (rated >= "
            f"{contract.LIKED_RATING:g} stars or positive feedback), latest {self.window} "
            "ratings and feedback",
            labels=[MODEL],
        )
        count = GaugeMetricFamily(
            "recommendation_accuracy_judgements",
            "Ratings and feedback on served films that recommendation_accuracy rests on",
            labels=[MODEL],
        )
        satisfaction = GaugeMetricFamily(
            "user_satisfaction_score",
            f"Mean stars given afterwards to served films, latest {self.window} ratings",
            labels=[MODEL],
        )
        for model, total in judged.items():
            accuracy.add_metric([label_value(model)], liked[model] / total)
            count.add_metric([label_value(model)], total)
        for model, given in stars.items():
            satisfaction.add_metric([label_value(model)], sum(given) / len(given))
        return [accuracy, count, satisfaction]

    def _served(self, conn: Connection) -> list[Metric]:
        shown: dict[str, list[int]] = defaultdict(list)
        low = _latest(conn, Impression.id, self.window)
        if low is not None:
            for model, movie in conn.execute(
                select(Impression.model, Impression.movie_id).where(Impression.id > low)
            ):
                shown[model].append(movie)
        coverage = GaugeMetricFamily(
            "served_catalog_coverage",
            f"Share of the catalogue among the latest {self.window} films shown",
            labels=[MODEL],
        )
        tail = GaugeMetricFamily(
            "served_long_tail_share",
            "Share of the films shown outside the most-rated "
            f"{LONG_TAIL_HEAD_SHARE:.0%} of the catalogue",
            labels=[MODEL],
        )
        volume = GaugeMetricFamily(
            "served_window_impressions",
            "Films shown that served_catalog_coverage and served_long_tail_share read",
            labels=[MODEL],
        )
        head = self._head_films()
        for model, movies in shown.items():
            labels = [label_value(model)]
            volume.add_metric(labels, len(movies))
            if self.catalogue_size:
                coverage.add_metric(labels, len(set(movies)) / self.catalogue_size)
            if head is not None:
                tail.add_metric(labels, sum(movie not in head for movie in movies) / len(movies))
        return [coverage, tail, volume]
