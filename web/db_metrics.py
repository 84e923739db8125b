"""Database query latency, timed by SQLAlchemy's cursor events on the app's engine.

``db_query_duration_seconds{operation}``: the time a statement spends in the database driver
(execute, not fetching the rows afterwards), by its first SQL keyword; the app's own queries,
the scrape-time figures of ``web.served_list_metrics`` and ``web.session_metrics`` included.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from sqlalchemy import Engine, event

from web.metrics import OTHER

METRIC = "db_query_duration_seconds"
# An indexed lookup takes well under a millisecond; a slow scan or a lock wait, up to seconds.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
OPERATIONS = frozenset({"select", "insert", "update", "delete", "pragma", "begin", "commit"})
# conn.info key of the start times (a stack: a statement may run while another is open).
STARTED_KEY = "movierec_query_started"


def operation(statement: str) -> str:
    """The statement's first keyword, lower case; ``other`` when it is not a known one."""
    words = statement.lstrip().split(None, 1)
    word = words[0].lower() if words else ""
    return word if word in OPERATIONS else OTHER


def instrument_engine(engine: Engine, registry: CollectorRegistry) -> Histogram:
    """Time every statement ``engine`` runs into a histogram registered in ``registry``."""
    histogram = Histogram(
        METRIC,
        "Database statement latency by SQL operation (SQLAlchemy cursor events)",
        ["operation"],
        buckets=BUCKETS,
        registry=registry,
    )

    @event.listens_for(engine, "before_cursor_execute")
    def _started(conn: Any, _cursor: Any, _statement: str, *_args: Any) -> None:
        conn.info.setdefault(STARTED_KEY, []).append(time.perf_counter())

    @event.listens_for(engine, "after_cursor_execute")
    def _finished(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        started = conn.info.get(STARTED_KEY)
        if started:
            histogram.labels(operation(statement)).observe(time.perf_counter() - started.pop())

    @event.listens_for(engine, "handle_error")
    def _failed(context: Any) -> None:
        # A failed statement never reaches after_cursor_execute: drop its start time.
        connection = context.connection
        started = connection.info.get(STARTED_KEY) if connection is not None else None
        if started:
            started.pop()

    return histogram
