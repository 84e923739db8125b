"""Who is browsing: an anonymous user per browser, remembered by a signed session cookie."""

from __future__ import annotations

from flask import g, request, session

from web import db, journal
from web.profiles import resume_session, start_session
from web.tables import User

SESSION_KEY = "sid"


def current_user() -> User:
    """The browser's user (created, with its session row, on the first visit that needs one)."""
    if "user" in g:
        return g.user
    database = db.get_session()
    user = None
    if SESSION_KEY in session:
        user = resume_session(database, session[SESSION_KEY], journal.current())
    if user is None:
        web_session, user = start_session(database, request.headers.get("User-Agent"))
        session[SESSION_KEY] = web_session.id
        session.permanent = True
    g.user = user
    return user
