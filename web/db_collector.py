"""Prometheus figures read from the web app's database when Prometheus scrapes ``/metrics``.

The database is shared by every gunicorn worker, so a figure read from it is the whole app's,
whichever worker answers the scrape (a ratio each worker kept in memory would be its own only).
Queries run at most once per ``refresh_s``: several scrapers, or a scrape landing on each worker,
reuse the last answer. A failing query logs and leaves its figures out of that scrape; it never
fails ``/metrics``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from prometheus_client import Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from training.config import get_logger

log = get_logger("api")

# Prometheus scrapes every 15 s (docker/prometheus/prometheus.yml); a fresher figure buys nothing.
REFRESH_S = 10.0


class DatabaseCollector(Collector):
    """Subclasses implement ``read(engine)``: the metric families, from a few queries."""

    def __init__(self, engine: Engine, refresh_s: float = REFRESH_S) -> None:
        self.engine = engine
        self.refresh_s = refresh_s
        self._families: list[Metric] = []
        self._read_at = -float("inf")
        self._lock = threading.Lock()

    def read(self, engine: Engine) -> list[Metric]:
        raise NotImplementedError

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            now = time.monotonic()
            if now - self._read_at >= self.refresh_s:
                self._read_at = now
                try:
                    self._families = self.read(self.engine)
                except SQLAlchemyError as exc:
                    log.warning("%s: database figures left out: %s", type(self).__name__, exc)
                    self._families = []
            families = list(self._families)
        yield from families
