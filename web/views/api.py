"""The JSON API under /api/v1: token, recommend (sae, rbm, hybrid), batch, compare, feedback,
health. Every route but token and health needs ``Authorization: Bearer <token>``."""

from __future__ import annotations

import json

from flask import Blueprint, Response, current_app, g, jsonify, request
from werkzeug.exceptions import BadRequest, UnsupportedMediaType

from web import db
from web.auth import AuthError, api_key_is_valid, issue_token, require_token
from web.backends import BackendRejected, BackendUnavailable
from web.config import MODEL_NAMES
from web.experiment import assign, current_release, pinned_versions
from web.profiles import get_or_create_user
from web.services import services
from web.tables import User
from web.validation import (
    BatchBody,
    CompareBody,
    FeedbackBody,
    InvalidInput,
    RecommendBody,
    TokenBody,
    check_movies,
    parse,
)
from web.views.serving import Panel, fetch_panels, record_panels, store_feedback

API_PREFIX = "/api/v1"
bp = Blueprint("api", __name__, url_prefix=API_PREFIX)
health_bp = Blueprint("api_health", __name__, url_prefix=API_PREFIX)


def json_body() -> object:
    """The parsed body; 415 for another content type, 400 naming where the JSON breaks."""
    if not request.is_json:
        raise UnsupportedMediaType("send the body as JSON with 'Content-Type: application/json'")
    try:
        return json.loads(request.get_data(cache=True) or b"")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"malformed JSON: {exc}") from exc


def _api_user(user_id: str) -> tuple[User, str]:
    """API callers' users are namespaced by token subject, so two clients never collide."""
    database = db.get_session()
    user = get_or_create_user(database, f"api:{g.api_subject}:{user_id}")
    settings = services().settings
    return user, assign(database, user, settings.ab_experiment, settings.ab_arms)


def _optional_api_user(user_id: str | None) -> tuple[User | None, str | None]:
    """The caller's user and arm when the body names one, else (None, None)."""
    return (None, None) if user_id is None else _api_user(user_id)


def _pinned(user: User | None) -> dict[str, str]:
    """The model versions a known user is pinned to by a release's canary."""
    if user is None:
        return {}
    return pinned_versions(db.get_session(), user, current_release(services().settings))


def _raise_for(panel: Panel) -> None:
    if panel.status == 503:
        raise BackendUnavailable(panel.error or "model server unavailable")
    if panel.error:
        raise BackendRejected(panel.error)


def _panel_json(panel: Panel) -> dict:
    if panel.result is None:
        return {"model": panel.model, "error": panel.error, "status": panel.status}
    return {**panel.result.to_dict(), "cache_hit": panel.cache_hit}


@bp.post("/token")
def token() -> Response:
    body = parse(TokenBody, json_body())
    settings = services().settings
    if not settings.api_keys or not api_key_is_valid(body.api_key, settings.api_keys):
        raise AuthError("unknown API key")
    access = issue_token(settings.jwt_secret, f"key:{body.api_key[:4]}", settings.jwt_ttl_s)
    return jsonify(access_token=access, token_type="bearer", expires_in=settings.jwt_ttl_s)


@bp.post("/recommend/<model>")
@require_token
def recommend(model: str) -> Response:
    if model not in MODEL_NAMES:
        raise InvalidInput([("model", f"unknown model {model!r}; choose one of {MODEL_NAMES}")])
    body = parse(RecommendBody, json_body())
    if body.weights is not None and model != "hybrid":
        raise InvalidInput([("weights", "only the hybrid model takes weights")])
    ratings = body.movie_ratings()
    check_movies(services().catalog, ratings)
    user, arm = _optional_api_user(body.user_id)
    weights = body.weights.model_dump() if body.weights else None
    cache_user = user.external_id if user else f"api:{g.api_subject}"
    (panel,) = fetch_panels(
        services(),
        cache_user,
        [model],
        ratings,
        body.k,
        g.request_id,
        "api.recommend",
        weights,
        _pinned(user),
    )
    record_panels(user.id if user else None, arm, [panel], g.request_id, "api.recommend")
    _raise_for(panel)
    return jsonify({**_panel_json(panel), "arm": arm, "request_id": g.request_id})


@bp.post("/recommend/batch")
@require_token
def recommend_batch() -> Response:
    body = parse(BatchBody, json_body())
    catalog = services().catalog
    for index, query in enumerate(body.users):
        check_movies(catalog, query.movie_ratings(), f"users.{index}.ratings")
    weights = body.weights.model_dump() if body.weights else None
    results = []
    for query in body.users:
        user, arm = _optional_api_user(query.user_id)
        cache_user = user.external_id if user else f"api:{g.api_subject}"
        (panel,) = fetch_panels(
            services(),
            cache_user,
            [body.model],
            query.movie_ratings(),
            query.k,
            g.request_id,
            "api.recommend_batch",
            weights,
            _pinned(user),
        )
        record_panels(user.id if user else None, arm, [panel], g.request_id, "api.batch")
        if panel.status == 503:  # the server is down: no point asking for the next user
            _raise_for(panel)
        results.append({**_panel_json(panel), "user_id": query.user_id, "arm": arm})
    return jsonify(model=body.model, results=results, request_id=g.request_id)


@bp.post("/compare")
@require_token
def compare() -> Response:
    body = parse(CompareBody, json_body())
    ratings = body.movie_ratings()
    check_movies(services().catalog, ratings)
    user, arm = _optional_api_user(body.user_id)
    weights = body.weights.model_dump() if body.weights else None
    cache_user = user.external_id if user else f"api:{g.api_subject}"
    panels = fetch_panels(
        services(),
        cache_user,
        list(dict.fromkeys(body.models)),
        ratings,
        body.k,
        g.request_id,
        "api.compare",
        weights,
        _pinned(user),
    )
    record_panels(user.id if user else None, arm, panels, g.request_id, "api.compare")
    if all(panel.status == 503 for panel in panels):
        _raise_for(panels[0])
    return jsonify(
        results={panel.model: _panel_json(panel) for panel in panels},
        arm=arm,
        request_id=g.request_id,
    )


@bp.post("/feedback")
@require_token
def feedback() -> tuple[Response, int]:
    body = parse(FeedbackBody, json_body())
    check_movies(services().catalog, [body.movie_id], "movie_id")
    user, arm = _api_user(body.user_id)
    row = store_feedback(db.get_session(), user.id, body.model, arm, body.movie_id, body.kind)
    return jsonify(stored=True, id=row.id, arm=arm), 201


@health_bp.get("/health")
def health() -> tuple[Response, int]:
    """Liveness of the app and its dependencies; 200 even when a model server is down."""
    from sqlalchemy import text

    state = services()
    checks: dict[str, object] = {}
    try:
        with state.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - health reports any failure as text
        checks["database"] = f"error: {type(exc).__name__}"
    checks["cache"] = type(state.cache).__name__
    checks["backend"] = state.backend.name
    if request.args.get("models") == "1":
        checks["models"] = state.backend.health()
    ok = checks["database"] == "ok"
    return jsonify(status="ok" if ok else "degraded", version=current_app.name, **checks), (
        200 if ok else 503
    )
