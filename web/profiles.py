"""Users, their browser sessions and their ratings."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from handlers import contract
from web.journal import Journal
from web.tables import Rating, User, WebSession, utcnow

# Whole stars, in the contract's range.
MIN_RATING, MAX_RATING = int(contract.MIN_RATING), int(contract.MAX_RATING)
USER_AGENT_LENGTH = 256
# A visit moves its session's last_seen only when the stored one is older than this: "active
# in the last minute" needs no more, and a write per page view would cost every page a write.
LAST_SEEN_RESOLUTION_S = 60.0


def get_or_create_user(db: Session, external_id: str) -> User:
    user = db.scalar(select(User).where(User.external_id == external_id))
    if user is not None:
        return user
    user = User(external_id=external_id)
    db.add(user)
    try:
        db.commit()
    except IntegrityError:  # another request created it first
        db.rollback()
        user = db.scalars(select(User).where(User.external_id == external_id)).one()
    return user


def start_session(db: Session, user_agent: str | None) -> tuple[WebSession, User]:
    """A new anonymous browser user and its session row."""
    user = get_or_create_user(db, f"web:{uuid.uuid4().hex}")
    web_session = WebSession(
        id=uuid.uuid4().hex, user_id=user.id, user_agent=(user_agent or "")[:USER_AGENT_LENGTH]
    )
    db.add(web_session)
    db.commit()
    return web_session, user


def resume_session(db: Session, session_id: str, staged: Journal) -> User | None:
    """The session's user; a stale ``last_seen`` is refreshed in the request's journal."""
    row = db.execute(
        select(User, WebSession.last_seen)
        .join(WebSession, WebSession.user_id == User.id)
        .where(WebSession.id == session_id)
    ).first()
    if row is None:
        return None
    user, last_seen = row
    now = utcnow()
    if last_seen_is_stale(last_seen, now):
        staged.execute(update(WebSession).where(WebSession.id == session_id).values(last_seen=now))
    return user


def last_seen_is_stale(last_seen: datetime | None, now: datetime) -> bool:
    if last_seen is None:
        return True
    if last_seen.tzinfo is None:  # SQLite hands back naive datetimes; they were stored as UTC
        last_seen = last_seen.replace(tzinfo=UTC)
    return (now - last_seen).total_seconds() >= LAST_SEEN_RESOLUTION_S


def ratings_of(db: Session, user_id: int) -> dict[int, int]:
    rows = db.execute(select(Rating.movie_id, Rating.rating).where(Rating.user_id == user_id)).all()
    return {movie_id: rating for movie_id, rating in rows}


def set_rating(db: Session, user_id: int, movie_id: int, rating: int) -> None:
    """Insert or update; the caller has validated ``movie_id`` and ``rating``."""
    existing = db.scalar(
        select(Rating).where(Rating.user_id == user_id, Rating.movie_id == movie_id)
    )
    if existing is None:
        db.add(Rating(user_id=user_id, movie_id=movie_id, rating=rating))
    else:
        existing.rating = rating
        existing.updated_at = utcnow()
    db.commit()


def remove_rating(db: Session, user_id: int, movie_id: int) -> bool:
    # A DELETE answers with a CursorResult (rowcount); Session.execute is typed for any statement.
    result = cast(
        CursorResult[Any],
        db.execute(delete(Rating).where(Rating.user_id == user_id, Rating.movie_id == movie_id)),
    )
    db.commit()
    return result.rowcount > 0
