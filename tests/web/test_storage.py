"""Both storage backends for real: an SQLite file and a throw-away PostgreSQL database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, func, inspect, select, text
from sqlalchemy.orm import Session

from web import db
from web.experiment import arm_stats, assign
from web.profiles import get_or_create_user, ratings_of, remove_rating, set_rating
from web.services import services
from web.tables import Assignment, Event, Feedback, Impression
from web.views.serving import store_feedback

POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TABLES = {"users", "sessions", "ratings", "ab_assignments", "impressions", "feedback", "events"}


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A uniquely named database on the local server, dropped afterwards."""
    name = f"movierec_web_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = db.make_engine(url, pool_size=2)
    db.upgrade(engine)
    yield engine
    if request.param == "postgresql":  # the downgrade path works too (the file just goes)
        from alembic import command

        command.downgrade(db.alembic_config(engine), "base")
    engine.dispose()


def test_migrations_create_every_table(engine):
    assert TABLES <= set(inspect(engine).get_table_names())
    db.upgrade(engine)  # idempotent


def test_ratings_round_trip_and_unique_per_movie(engine):
    with Session(engine) as session:
        user = get_or_create_user(session, "web:storage-test")
        assert get_or_create_user(session, "web:storage-test").id == user.id
        set_rating(session, user.id, 50, 5)
        set_rating(session, user.id, 50, 3)  # an edit, not a second row
        set_rating(session, user.id, 1, 4)
        assert ratings_of(session, user.id) == {50: 3, 1: 4}
        assert remove_rating(session, user.id, 50) is True
        assert remove_rating(session, user.id, 50) is False
        assert ratings_of(session, user.id) == {1: 4}


def test_assignment_feedback_and_stats(engine):
    arms = ("sae", "rbm")
    with Session(engine) as session:
        user = get_or_create_user(session, "web:ab-test")
        arm = assign(session, user, "exp", arms)
        assert assign(session, user, "exp", arms) == arm
        assert session.scalar(select(func.count()).select_from(Assignment)) == 1
        session.add_all(
            Impression(user_id=user.id, model=arm, arm=arm, movie_id=m, position=m, request_id="r")
            for m in range(4)
        )
        session.commit()
        store_feedback(session, user.id, arm, arm, 2, "up")
        store_feedback(session, user.id, arm, arm, 3, "down")  # not a click
        stats = {row.arm: row for row in arm_stats(session, "exp", arms)}
        assert stats[arm].impressions == 4 and stats[arm].clicks == 1 and stats[arm].users == 1
        assert stats[arm].ctr == pytest.approx(0.25)
        assert session.scalar(select(func.count()).select_from(Feedback)) == 2


def test_the_app_runs_on_postgresql(web_app_factory, postgres_url):
    app = web_app_factory(database_url=postgres_url.replace("+psycopg", ""))
    client = app.test_client()
    client.post("/ratings", data={"movie_id": 50, "rating": 5}, headers={"HX-Request": "true"})
    page = client.get("/recommendations?model=sae")
    assert page.status_code == 200 and page.text.count('class="rec"') == 10
    assert services(app).engine.dialect.name == "postgresql"
    with Session(services(app).engine) as session:
        assert session.scalar(select(func.count()).select_from(Event)) >= 2
