"""Search (active search with htmx), the profile and rating edits."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from htmx_flask import make_response

from web import db
from web.htmx import is_htmx
from web.profiles import MAX_RATING, MIN_RATING, ratings_of, remove_rating, set_rating
from web.services import services
from web.validation import InvalidInput, check_movies, form_int
from web.views.identity import current_user

bp = Blueprint("pages", __name__)

MIN_YEAR, MAX_YEAR = 1900, 2100
# Fired after a rating changes, so recommendation panels on the page reload themselves.
RATINGS_CHANGED = "ratings-changed"


def _search_args() -> dict:
    query = request.args.get("q", "").strip()
    year_text = request.args.get("year", "").strip()
    genre = request.args.get("genre", "").strip() or None
    year = form_int(year_text, "year", MIN_YEAR, MAX_YEAR) if year_text else None
    if genre is not None and genre not in services().catalog.genres:
        raise InvalidInput([("genre", f"unknown genre {genre!r}")])
    return {"query": query, "year": year, "genre": genre}


def _search_context() -> dict:
    args = _search_args()
    catalog = services().catalog
    results = catalog.search(args["query"], args["year"], args["genre"])
    user_ratings = ratings_of(db.get_session(), current_user().id)
    return {**args, "results": results, "ratings": user_ratings, "genres": catalog.genres}


@bp.get("/")
def index() -> str:
    return render_template("index.html", **_search_context())


@bp.get("/search")
def search() -> str:
    """Active search: htmx swaps the results list; a plain GET gets the whole page."""
    template = "partials/search_results.html" if is_htmx() else "index.html"
    return render_template(template, **_search_context())


@bp.get("/profile")
def profile() -> str:
    user = current_user()
    ratings = ratings_of(db.get_session(), user.id)
    return render_template("profile.html", **_profile_context(ratings))


def _profile_context(ratings: dict[int, int]) -> dict:
    catalog = services().catalog
    known = ((catalog.get(movie), stars) for movie, stars in ratings.items())
    rated = sorted(
        ((movie, stars) for movie, stars in known if movie is not None),
        key=lambda pair: pair[0].title.casefold(),
    )
    return {"rated": rated, "ratings": ratings}


@bp.post("/ratings")
def rate() -> ResponseReturnValue:
    movie_id = form_int(request.form.get("movie_id"), "movie_id", 1, 10**9)
    stars = form_int(request.form.get("rating"), "rating", MIN_RATING, MAX_RATING)
    check_movies(services().catalog, [movie_id], "movie_id")
    user = current_user()
    set_rating(db.get_session(), user.id, movie_id, stars)
    services().recommender.forget_user(user.external_id)
    if not is_htmx():
        return redirect(request.referrer or url_for("pages.profile"), code=303)
    movie = services().catalog.get(movie_id)
    html = render_template("partials/rating_widget.html", movie=movie, stars=stars, saved=True)
    return make_response(html, trigger=RATINGS_CHANGED)


@bp.route("/ratings/<int:movie_id>", methods=["DELETE"])
@bp.post("/ratings/<int:movie_id>/delete")
def unrate(movie_id: int) -> ResponseReturnValue:
    check_movies(services().catalog, [movie_id], "movie_id")
    user = current_user()
    database = db.get_session()
    remove_rating(database, user.id, movie_id)
    services().recommender.forget_user(user.external_id)
    if not is_htmx():
        return redirect(url_for("pages.profile"), code=303)
    html = render_template(
        "partials/ratings_list.html", **_profile_context(ratings_of(database, user.id))
    )
    return make_response(html, trigger=RATINGS_CHANGED)
