"""Users, their browser sessions and their ratings."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from web.tables import Rating, User, WebSession, utcnow

MIN_RATING, MAX_RATING = 1, 5
USER_AGENT_LENGTH = 256


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


def resume_session(db: Session, session_id: str) -> User | None:
    web_session = db.get(WebSession, session_id)
    if web_session is None:
        return None
    web_session.last_seen = utcnow()
    db.commit()
    return db.get(User, web_session.user_id)


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
    result = db.execute(
        delete(Rating).where(Rating.user_id == user_id, Rating.movie_id == movie_id)
    )
    db.commit()
    return result.rowcount > 0
