"""What a request records about itself (impressions, analytics events, a session's last visit),
written in one short transaction as the request ends.

A commit per row group cost a page view four write transactions; on SQLite every one of them
takes the database's single write lock and waits in SQLite's sleep-and-retry busy handler while
another thread holds it, which is where the recommendations page's tail latency went. Rows are
staged here as plain values during the request and inserted together at the end (Core
``executemany``, no ORM bookkeeping), so the write lock is held for one short burst per request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from flask import g
from sqlalchemy import Update, insert
from sqlalchemy.orm import Session

from web.tables import Base

G_KEY = "request_journal"


@dataclass
class Journal:
    """Rows to insert, statements to run and callbacks to call once they are committed."""

    rows: dict[type[Base], list[dict]] = field(default_factory=dict)
    statements: list[Update] = field(default_factory=list)
    after_commit: list[Callable[[], None]] = field(default_factory=list)
    # Set by rows the answer depends on (impressions): losing them must fail the request,
    # while a lost analytics event is only logged.
    essential: bool = False

    def add(self, table: type[Base], rows: list[dict], essential: bool = False) -> None:
        self.rows.setdefault(table, []).extend(rows)
        self.essential = self.essential or (essential and bool(rows))

    def execute(self, statement: Update) -> None:
        self.statements.append(statement)

    def on_commit(self, callback: Callable[[], None]) -> None:
        self.after_commit.append(callback)

    def __bool__(self) -> bool:
        return bool(self.rows or self.statements)

    def write(self, session: Session) -> None:
        """One transaction for everything staged; the caller rolls back if it raises."""
        for statement in self.statements:
            session.execute(statement)
        for table, rows in self.rows.items():
            if rows:
                session.execute(insert(table), rows)
        session.commit()
        for callback in self.after_commit:
            callback()


def current() -> Journal:
    """This request's journal (made on first use)."""
    if G_KEY not in g:
        setattr(g, G_KEY, Journal())
    return getattr(g, G_KEY)


def take() -> Journal:
    """This request's journal, detached from the request so it is written at most once."""
    return g.pop(G_KEY, None) or Journal()
