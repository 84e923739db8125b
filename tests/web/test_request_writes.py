"""A request's own records (impressions, events, a session's last visit) are written in one
transaction as it ends; ``last_seen`` moves at most once per ``LAST_SEEN_RESOLUTION_S``."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import event, func, select, text, update

from web import db
from web.analytics import HTTP_EVENT, RECOMMEND_EVENT
from web.profiles import LAST_SEEN_RESOLUTION_S, last_seen_is_stale
from web.services import services
from web.tables import Event, Impression, WebSession, utcnow

HTMX = {"HX-Request": "true"}
PROFILE = {50: 5, 181: 5, 172: 4, 1: 4, 118: 2}
PAGE_SIZE = 10  # the recommendations page's default k


def _scalar(app, statement):
    with app.app_context():
        return db.get_session().scalar(statement)


def _count(app, table, *where):
    return _scalar(app, select(func.count()).select_from(table).where(*where))


class CommitCounter:
    """Counts the transactions the engine commits (SQLAlchemy's ``commit`` engine event)."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.commits = 0

    def _count(self, _connection) -> None:
        self.commits += 1

    def __enter__(self) -> CommitCounter:
        event.listen(self.engine, "commit", self._count)
        return self

    def __exit__(self, *_) -> None:
        event.remove(self.engine, "commit", self._count)


@pytest.fixture
def returning_visitor(web_app, web_client):
    """A browser with a session, five ratings and a model answer already cached."""
    for movie, stars in PROFILE.items():
        web_client.post("/ratings", data={"movie_id": movie, "rating": stars}, headers=HTMX)
    assert web_client.get("/recommendations?model=sae").status_code == 200
    return web_client


def test_a_recommendations_page_view_is_one_transaction(web_app, returning_visitor):
    engine = services(web_app).engine
    impressions = _count(web_app, Impression)
    recommend_events = _count(web_app, Event, Event.kind == RECOMMEND_EVENT)
    http_events = _count(web_app, Event, Event.kind == HTTP_EVENT)
    with CommitCounter(engine) as counter:
        page = returning_visitor.get("/recommendations?model=sae")
    assert page.status_code == 200 and page.text.count('class="rec"') == PAGE_SIZE
    assert counter.commits == 1
    # ... and that one transaction holds everything the page view used to commit separately.
    assert _count(web_app, Impression) == impressions + PAGE_SIZE
    assert _count(web_app, Event, Event.kind == RECOMMEND_EVENT) == recommend_events + 1
    assert _count(web_app, Event, Event.kind == HTTP_EVENT) == http_events + 1
    stored = _scalar(
        web_app,
        select(Event.cache_hit).where(Event.kind == RECOMMEND_EVENT).order_by(Event.id.desc()),
    )
    assert stored is True  # the second identical page view was answered from the cache


def test_compare_stores_impressions_of_every_panel_in_one_transaction(web_app, returning_visitor):
    engine = services(web_app).engine
    impressions = _count(web_app, Impression)
    with CommitCounter(engine) as counter:
        page = returning_visitor.get("/compare")
    assert page.status_code == 200 and counter.commits == 1
    assert _count(web_app, Impression) == impressions + 3 * PAGE_SIZE


def test_a_new_visitor_gets_a_session_row(web_app, web_client):
    assert web_client.get("/").status_code == 200
    assert _count(web_app, WebSession) == 1
    assert _scalar(web_app, select(WebSession.last_seen)) is not None


def test_last_seen_moves_only_when_older_than_the_resolution(web_app, web_client):
    web_client.get("/")
    first_seen = _scalar(web_app, select(WebSession.last_seen))
    web_client.get("/profile")  # seconds later: not worth a write
    assert _scalar(web_app, select(WebSession.last_seen)) == first_seen

    long_ago = utcnow() - timedelta(seconds=2 * LAST_SEEN_RESOLUTION_S)
    with web_app.app_context():
        session = db.get_session()
        session.execute(update(WebSession).values(last_seen=long_ago))
        session.commit()
    engine = services(web_app).engine
    with CommitCounter(engine) as counter:
        assert web_client.get("/profile").status_code == 200
    assert counter.commits == 1  # the refresh rides on the request's one transaction
    refreshed = _scalar(web_app, select(WebSession.last_seen))
    assert refreshed.replace(tzinfo=None) > long_ago.replace(tzinfo=None)
    assert _count(web_app, WebSession) == 1  # the same session, not a new one


@pytest.mark.parametrize(
    ("age_s", "stale"),
    [(0.0, False), (LAST_SEEN_RESOLUTION_S - 1, False), (LAST_SEEN_RESOLUTION_S, True)],
)
def test_last_seen_staleness_with_aware_and_naive_times(age_s, stale):
    now = utcnow()
    seen = now - timedelta(seconds=age_s)
    assert last_seen_is_stale(seen, now) is stale
    assert last_seen_is_stale(seen.replace(tzinfo=None), now) is stale  # as SQLite returns it
    assert last_seen_is_stale(None, now) is True


def _drop_events_table(app) -> None:
    with services(app).engine.begin() as connection:
        connection.execute(text("DROP TABLE events"))


def test_a_lost_analytics_event_does_not_break_the_page(web_app_factory):
    app = web_app_factory(testing=False)
    client = app.test_client()
    client.get("/")
    _drop_events_table(app)
    page = client.get("/search?q=star", headers=HTMX)
    assert page.status_code == 200 and "Star Wars" in page.text


def test_impressions_that_cannot_be_stored_fail_the_page(web_app_factory):
    """The page's impressions and its events share the transaction: if it fails, the answer
    says so instead of showing recommendations the experiment never counted."""
    app = web_app_factory(testing=False)
    client = app.test_client()
    client.post("/ratings", data={"movie_id": 50, "rating": 5}, headers=HTMX)
    _drop_events_table(app)
    page = client.get("/recommendations?model=sae")
    # A database error is answered as the database being unavailable (web/errors.py), never as
    # a page of recommendations the experiment did not count.
    assert page.status_code == 503
    assert "database unavailable" in page.text
    assert _count(app, Impression) == 0  # rolled back with the rest
