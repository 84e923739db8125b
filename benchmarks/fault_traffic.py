"""Traffic for a web app under faults, and the count of what it wrote.

A ``Visitor`` is one browser (its cookie jar: ratings through the form, the recommendations
page) and one API user (feedback and recommendations over the JSON API). It remembers every
write the app acknowledged; ``count_writes`` then looks each one up in the database, so a write
answered 200/201 but missing there is a lost write.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field

import requests
from flask import Flask
from sqlalchemy import Engine, select

from web.tables import Feedback, Rating, User, WebSession

HTMX = {"HX-Request": "true"}
# A request with no answer after this long counts as hung (every server timeout is shorter).
CLIENT_TIMEOUT_S = 30.0
RATED = 200
STORED = 201
SESSION_COOKIE = "session"  # Flask's default session cookie name
# What a page shows in place of a model's recommendations when its server does not answer
# (web/templates/partials/rec_panel.html).
UNAVAILABLE_PANEL = "Recommendations unavailable."


def api_token(base_url: str, api_key: str) -> str:
    answer = requests.post(
        f"{base_url}/api/v1/token", json={"api_key": api_key}, timeout=CLIENT_TIMEOUT_S
    )
    answer.raise_for_status()
    return str(answer.json()["access_token"])


@dataclass
class Visitor:
    base_url: str
    token: str
    name: str
    browser: requests.Session = field(default_factory=requests.Session)
    api: requests.Session = field(default_factory=requests.Session)
    # Writes the app acknowledged: movie -> stars, and (movie, kind) feedback.
    rated: dict[int, int] = field(default_factory=dict)
    fed_back: Counter[tuple[int, str]] = field(default_factory=Counter)
    # Writes answered with an error (or not at all): the client knows they may not be stored.
    refused: int = 0

    def __post_init__(self) -> None:
        self.api.headers["Authorization"] = f"Bearer {self.token}"

    def rate(self, movie: int, stars: int) -> requests.Response:
        """The rating form (htmx); a 200 means it is stored."""
        answer = self.browser.post(
            f"{self.base_url}/ratings",
            data={"movie_id": movie, "rating": stars},
            headers=HTMX,
            timeout=CLIENT_TIMEOUT_S,
        )
        if answer.status_code == RATED:
            self.rated[movie] = stars
        else:
            self.refused += 1
        return answer

    def feedback(self, movie: int, kind: str = "up", model: str = "sae") -> requests.Response:
        """Feedback over the API; a 201 means it is stored."""
        answer = self.api.post(
            f"{self.base_url}/api/v1/feedback",
            json={"user_id": self.name, "movie_id": movie, "model": model, "kind": kind},
            timeout=CLIENT_TIMEOUT_S,
        )
        if answer.status_code == STORED:
            self.fed_back[(movie, kind)] += 1
        else:
            self.refused += 1
        return answer

    def page(self, path: str) -> requests.Response:
        return self.browser.get(f"{self.base_url}{path}", timeout=CLIENT_TIMEOUT_S)

    def recommend(self, model: str, ratings: dict[int, int], k: int = 5) -> requests.Response:
        return self.api.post(
            f"{self.base_url}/api/v1/recommend/{model}",
            json={"ratings": {str(movie): stars for movie, stars in ratings.items()}, "k": k},
            timeout=CLIENT_TIMEOUT_S,
        )

    def session_id(self, secret: str) -> str | None:
        """The browser session the app keeps in its signed cookie (read with its secret)."""
        cookie = self.browser.cookies.get(SESSION_COOKIE)
        if cookie is None:
            return None
        app = Flask(__name__)
        app.secret_key = secret
        serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
        return serializer.loads(cookie).get("sid")


@dataclass(frozen=True)
class WriteCount:
    expected: int  # writes the app acknowledged
    written: int  # of those, found in the database
    refused: int  # writes answered with an error: not acknowledged, so not lost

    @property
    def lost(self) -> int:
        return self.expected - self.written


def count_writes(engine: Engine, visitors: list[Visitor], secret: str) -> WriteCount:
    """Every acknowledged rating and feedback of ``visitors``, looked up in the database."""
    expected = written = refused = 0
    with engine.connect() as connection:
        for visitor in visitors:
            refused += visitor.refused
            expected += len(visitor.rated) + sum(visitor.fed_back.values())
            sid = visitor.session_id(secret)
            stored_ratings: dict[int, int] = {}
            if sid is not None:
                rows = connection.execute(
                    select(Rating.movie_id, Rating.rating)
                    .join(WebSession, WebSession.user_id == Rating.user_id)
                    .where(WebSession.id == sid)
                )
                stored_ratings = {movie: stars for movie, stars in rows}
            written += sum(
                1 for movie, stars in visitor.rated.items() if stored_ratings.get(movie) == stars
            )
            feedback_rows = connection.execute(
                select(Feedback.movie_id, Feedback.kind)
                .join(User, User.id == Feedback.user_id)
                .where(User.external_id.like(f"api:%:{visitor.name}"))
            )
            stored_feedback = Counter((movie, kind) for movie, kind in feedback_rows)
            written += sum(
                min(count, stored_feedback[pair]) for pair, count in visitor.fed_back.items()
            )
    return WriteCount(expected, written, refused)


def movie_sequence(catalogue_ids: list[int]) -> itertools.cycle[int]:
    """Movies in catalogue order, again and again (a visitor rates each at most once)."""
    return itertools.cycle(catalogue_ids)
