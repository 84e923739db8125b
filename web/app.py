"""The Flask app factory: settings, database, catalogue, model backend, cache, blueprints."""

from __future__ import annotations

import gc
import time

from flask import Flask, Response, g, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from htmx_flask import Htmx
from sqlalchemy.exc import SQLAlchemyError

from training.config import get_logger
from web import compression, db, errors, instrumentation, journal
from web import services as app_services
from web.analytics import HTTP_EVENT, load_offline_report
from web.backends import make_backend
from web.cache import make_cache
from web.catalog import Catalog
from web.config import WebSettings
from web.recommending import MS_PER_S, Recommender, record_event

log = get_logger("web")

# Requests that are not worth an analytics event (assets, probes, scrapes).
UNTRACKED_ENDPOINTS = {"static", "api_health.health", "movierec_metrics"}


def create_app(settings: WebSettings | None = None) -> Flask:
    settings = settings or WebSettings.from_env()
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        # Cookies signed with an old key still verify after a rotation (Flask >= 3.1).
        SECRET_KEY_FALLBACKS=list(settings.secret_key_fallbacks),
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        SETTINGS=settings,
        TESTING=settings.testing,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        JSON_SORT_KEYS=False,
    )
    Htmx(app)
    # First, so its request-id hook runs before ours and every later hook sees the id.
    instrumentation.init_app(app)

    engine = db.make_engine(
        settings.database_url, settings.db_pool_size, settings.sqlite_synchronous
    )
    if settings.auto_migrate:
        db.upgrade(engine)
    db.init_app(app, engine)

    backend = make_backend(settings)
    cache = make_cache(
        settings.redis_url, settings.cache_prefix, settings.cache_size, settings.cache_ttl_s
    )
    limiter = Limiter(
        get_remote_address,
        app=app,
        storage_uri=settings.redis_url or "memory://",
        key_prefix=f"{settings.cache_prefix}limits",
        headers_enabled=True,
        strategy="moving-window",
        # Redis down: the same limit per worker, in memory (Flask-Limiter logs one warning and
        # tries Redis again with a backoff) rather than a 500 on every API call.
        in_memory_fallback_enabled=True,
        in_memory_fallback=[settings.rate_limit],
    )
    # Only the API is limited; the fallback would otherwise apply to every page too.
    limiter.request_filter(lambda: request.blueprint != "api")
    # Its own logger ("flask-limiter") only has a NullHandler: the fallback's warning goes to ours.
    limiter.logger = log
    app_services.init_app(
        app,
        app_services.Services(
            settings=settings,
            engine=engine,
            catalog=Catalog.load(settings.movies_path),
            backend=backend,
            cache=cache,
            recommender=Recommender(backend, cache),
            limiter=limiter,
        ),
    )
    instrumentation.init_database_metrics(app, engine, app_services.services(app).catalog)

    _register_request_hooks(app)
    _register_blueprints(app, limiter, settings)
    errors.init_app(app)
    compression.init_app(app)
    report = load_offline_report(settings.evaluation_report)
    if report is not None:
        instrumentation.set_offline_metrics(report)
    from web.commands import register_commands

    register_commands(app)
    if not settings.testing:
        # Everything built so far (catalogue, templates, SQLAlchemy, the model client) lives as
        # long as the worker. A full cyclic-GC pass over it (~180k objects) stopped every thread
        # for 80-150 ms, the pages' p99; frozen objects are never scanned again.
        gc.freeze()
    return app


def _register_blueprints(app: Flask, limiter: Limiter, settings: WebSettings) -> None:
    from web.views import analytics, api, pages, recommendations

    limiter.limit(lambda: settings.rate_limit)(api.bp)
    for blueprint in (pages.bp, recommendations.bp, analytics.bp, api.bp, api.health_bp):
        app.register_blueprint(blueprint)


def _register_request_hooks(app: Flask) -> None:
    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()
        g.request_id = instrumentation.request_id()

    @app.after_request
    def _finish(response: Response) -> Response:
        staged = journal.take()
        # Unmatched URLs (favicon probes, typos) are not pages worth counting.
        if request.endpoint and request.endpoint not in UNTRACKED_ENDPOINTS and "started" in g:
            latency_ms = (time.perf_counter() - g.started) * MS_PER_S
            record_event(staged, HTTP_EVENT, request.endpoint, response.status_code, latency_ms)
        if staged:
            _write_journal(staged)
        return response


def _write_journal(staged: journal.Journal) -> None:
    """The request's one write transaction, before the answer leaves."""
    session = db.get_session()
    try:
        staged.write(session)
    except SQLAlchemyError:
        session.rollback()
        if staged.essential:  # impressions of a page shown: fail rather than lose them quietly
            raise
        # analytics must never break the answer itself
        log.exception("could not record the request's analytics events")
