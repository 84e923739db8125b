"""The figures the web app reads from its database at scrape time, on a real SQLite database
migrated as the app migrates it: served-list accuracy and satisfaction, live coverage and long
tail, sessions, films being rated, and query latency from SQLAlchemy's events."""

from __future__ import annotations

from datetime import timedelta

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy.orm import Session

from tests.monitoring.helpers import value
from web import db
from web.db_metrics import instrument_engine, operation
from web.rating_activity_metrics import FilmsBeingRatedCollector
from web.served_list_metrics import ServedListCollector, head_of
from web.session_metrics import SessionCollector
from web.tables import Feedback, Impression, Rating, User, WebSession, utcnow

CATALOGUE = 10
# Films 1 and 2 are the most-rated fifth of a 10-film catalogue: the head.
POPULARITY = {1: 500, 2: 300, 3: 10, 4: 5, 5: 1}


@pytest.fixture
def engine(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'web.sqlite3'}", pool_size=2)
    db.upgrade(engine)
    yield engine
    engine.dispose()


def scrape(*collectors) -> str:
    registry = CollectorRegistry()
    for collector in collectors:
        registry.register(collector)
    return generate_latest(registry).decode()


def add_user(session: Session, name: str) -> User:
    user = User(external_id=name)
    session.add(user)
    session.commit()
    return user


def shown(user: User, model: str, *movies: int) -> list[Impression]:
    return [
        Impression(user_id=user.id, model=model, arm="sae", movie_id=m, position=i, request_id="r")
        for i, m in enumerate(movies)
    ]


def test_accuracy_and_satisfaction_of_what_was_served(engine):
    with Session(engine) as session:
        alice, bob = add_user(session, "web:a"), add_user(session, "web:b")
        session.add_all(
            [*shown(alice, "sae", 1, 3), *shown(alice, "rbm", 2), *shown(bob, "sae", 4)]
        )
        session.commit()
        session.add_all(
            [
                Rating(user_id=alice.id, movie_id=1, rating=5),  # sae: liked
                Rating(user_id=alice.id, movie_id=2, rating=2),  # rbm: missed
                Rating(user_id=bob.id, movie_id=4, rating=3),  # sae: missed
                Rating(user_id=bob.id, movie_id=9, rating=5),  # never shown: not a judgement
                Feedback(user_id=alice.id, model="sae", arm="sae", movie_id=3, kind="up"),
                Feedback(user_id=bob.id, model="hybrid", arm="sae", movie_id=4, kind="down"),
            ]
        )
        session.commit()
    text = scrape(ServedListCollector(engine, CATALOGUE, lambda: POPULARITY))
    assert value(text, "recommendation_accuracy", model_type="sae") == pytest.approx(2 / 3)
    assert value(text, "recommendation_accuracy", model_type="rbm") == 0
    assert value(text, "recommendation_accuracy", model_type="hybrid") == 0
    assert value(text, "recommendation_accuracy_judgements", model_type="sae") == 3
    assert value(text, "user_satisfaction_score", model_type="sae") == pytest.approx(4.0)
    assert value(text, "user_satisfaction_score", model_type="rbm") == 2
    assert value(text, "user_satisfaction_score", model_type="hybrid") is None  # no rating
    # Live coverage and long tail: sae showed 1, 3, 4 (1 in the head), rbm showed 2 (head).
    assert value(text, "served_catalog_coverage", model_type="sae") == pytest.approx(0.3)
    assert value(text, "served_long_tail_share", model_type="sae") == pytest.approx(2 / 3)
    assert value(text, "served_long_tail_share", model_type="rbm") == 0
    assert value(text, "served_window_impressions", model_type="sae") == 3


def test_a_rating_given_before_the_film_was_shown_is_no_judgement(engine):
    with Session(engine) as session:
        alice = add_user(session, "web:a")
        session.add(Rating(user_id=alice.id, movie_id=1, rating=5, updated_at=utcnow()))
        session.commit()
        late = shown(alice, "sae", 1)[0]
        late.created_at = utcnow() + timedelta(seconds=1)
        session.add(late)
        session.commit()
    text = scrape(ServedListCollector(engine, CATALOGUE))
    assert value(text, "recommendation_accuracy", model_type="sae") is None
    assert value(text, "served_long_tail_share", model_type="sae") is None  # no popularity
    assert value(text, "served_catalog_coverage", model_type="sae") == pytest.approx(0.1)


def test_only_the_latest_rows_count(engine):
    with Session(engine) as session:
        alice = add_user(session, "web:a")
        session.add_all(shown(alice, "sae", 1, 2, 3, 4))
        session.commit()
    text = scrape(ServedListCollector(engine, CATALOGUE, window=2))
    assert value(text, "served_window_impressions", model_type="sae") == 2
    assert value(text, "served_catalog_coverage", model_type="sae") == pytest.approx(0.2)


def test_the_head_is_the_most_rated_fifth():
    assert head_of(POPULARITY, CATALOGUE) == {1, 2}


def test_sessions_and_films_being_rated(engine):
    now = utcnow()
    with Session(engine) as session:
        users = [add_user(session, f"web:{i}") for i in range(3)]
        session.add_all(
            [
                WebSession(id="a", user_id=users[0].id, created_at=now - timedelta(minutes=30),
                           last_seen=now),
                WebSession(id="b", user_id=users[1].id, created_at=now - timedelta(minutes=10),
                           last_seen=now),
                WebSession(id="old", user_id=users[2].id, created_at=now - timedelta(hours=3),
                           last_seen=now - timedelta(hours=2)),
            ]
        )  # fmt: skip
        session.add_all(
            [Rating(user_id=users[0].id, movie_id=m, rating=4) for m in (1, 2, 3)]
            + [Rating(user_id=users[1].id, movie_id=1, rating=5)]
            + [Rating(user_id=users[2].id, movie_id=2, rating=1)]
        )
        session.commit()
    titles = {1: "Toy Story", 2: "GoldenEye"}
    text = scrape(SessionCollector(engine), FilmsBeingRatedCollector(engine, titles.get, top=2))
    assert value(text, "web_sessions_active") == 2  # "old" was last seen two hours ago
    assert value(text, "web_session_length_seconds", quantile="0.9") == pytest.approx(1800, abs=1)
    assert value(text, "web_session_length_seconds", quantile="0.5") == pytest.approx(600, abs=1)
    assert value(text, "web_session_ratings", quantile="0.9") == 3
    assert value(text, "films_being_rated", movie_id="1", title="Toy Story") == 2
    assert value(text, "films_being_rated", movie_id="2", title="GoldenEye") == 2
    assert value(text, "films_being_rated", movie_id="3", title="3") is None  # not in the top 2


def test_query_latency_by_operation(engine):
    registry = CollectorRegistry()
    instrument_engine(engine, registry)
    with Session(engine) as session:
        add_user(session, "web:a")
        session.query(User).all()
    text = generate_latest(registry).decode()
    assert value(text, "db_query_duration_seconds_count", operation="insert") >= 1
    assert value(text, "db_query_duration_seconds_count", operation="select") >= 1
    assert operation("  WITH x AS (SELECT 1) SELECT * FROM x") == "other"
    assert operation("delete from users") == "delete"
