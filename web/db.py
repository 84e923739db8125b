"""Database access: one pooled engine per app, a session per request, migrations with Alembic."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

from alembic import command
from alembic.config import Config
from flask import Flask, g
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from web.config import DEFAULT_SQLITE_SYNCHRONOUS, SqliteSynchronous

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Waiting for SQLite's write lock beats failing at once when gunicorn workers write together.
SQLITE_BUSY_TIMEOUT_MS = 5000
# PRAGMA synchronous: in WAL mode NORMAL syncs the log at checkpoints instead of at every
# commit, so a commit survives a crash of the app (not of the machine) and no longer waits for
# an fsync while it holds the database's one write lock. FULL (SQLite's default) syncs each.
SQLITE_SYNCHRONOUS_LEVELS = get_args(SqliteSynchronous)
POOL_RECYCLE_S = 1800


def make_engine(
    url: str, pool_size: int, sqlite_synchronous: str = DEFAULT_SQLITE_SYNCHRONOUS
) -> Engine:
    """A pooled engine; SQLite files get WAL (readers never block the writer), foreign keys and
    ``sqlite_synchronous`` (one of ``SQLITE_SYNCHRONOUS_LEVELS``)."""
    if sqlite_synchronous not in SQLITE_SYNCHRONOUS_LEVELS:
        raise ValueError(f"sqlite_synchronous must be one of {SQLITE_SYNCHRONOUS_LEVELS}")
    if url.startswith("sqlite"):
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        # No pre-ping: a file has no connection to lose, and a ping is a statement per checkout.
        engine = create_engine(url, pool_size=pool_size)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute(f"PRAGMA synchronous={sqlite_synchronous}")
            cursor.close()

        return engine
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=POOL_RECYCLE_S,
    )


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # configparser treats % as interpolation; URLs may hold %-escapes.
    url = engine.url.render_as_string(hide_password=False).replace("%", "%%")
    config.set_main_option("sqlalchemy.url", url)
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema up to ``revision`` (idempotent)."""
    command.upgrade(alembic_config(engine), revision)


def init_app(app: Flask, engine: Engine) -> None:
    app.extensions["db_engine"] = engine
    app.extensions["db_sessionmaker"] = sessionmaker(engine, expire_on_commit=False)

    @app.teardown_appcontext
    def _close_session(exc: BaseException | None) -> None:
        session: Session | None = g.pop("db_session", None)
        if session is not None:
            if exc is not None:
                session.rollback()
            session.close()


def get_session() -> Session:
    """The request's session (opened on first use, closed at teardown)."""
    from flask import current_app

    if "db_session" not in g:
        g.db_session = current_app.extensions["db_sessionmaker"]()
    return g.db_session
