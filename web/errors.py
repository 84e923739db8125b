"""Error answers: JSON under /api, an HTML fragment for htmx, a page otherwise."""

from __future__ import annotations

from flask import Flask, Response, jsonify, render_template, request
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException, InternalServerError

from training.config import get_logger
from web.auth import AuthError
from web.backends import BackendRejected, BackendUnavailable
from web.htmx import is_htmx
from web.validation import InvalidInput

log = get_logger("web")

API_PREFIX = "/api/"
UNPROCESSABLE = 422
SERVICE_UNAVAILABLE = 503
# The database did not answer (down, restarting, the pool exhausted): the client is told to
# retry, not shown a bare 500 (and an answered write was committed: none is lost quietly).
DATABASE_DOWN = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)
DATABASE_DOWN_MESSAGE = (
    "database unavailable: the request could not be completed; try again in a moment"
)


def _is_api() -> bool:
    return request.path.startswith(API_PREFIX)


def error_response(
    status: int, message: str, details: list[dict] | None = None, headers: dict | None = None
) -> Response:
    if _is_api():
        body = {"error": message, "status": status}
        if details:
            body["details"] = details
        response = jsonify(body)
    else:
        template = "partials/error.html" if is_htmx() else "error.html"
        response = Response(
            render_template(template, status=status, message=message, details=details or []),
            mimetype="text/html",
        )
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def init_app(app: Flask) -> None:
    @app.errorhandler(InvalidInput)
    def _invalid(exc: InvalidInput) -> Response:
        details = [{"field": field, "message": message} for field, message in exc.errors]
        return error_response(UNPROCESSABLE, f"invalid input: {exc}", details)

    @app.errorhandler(AuthError)
    def _unauthorized(exc: AuthError) -> Response:
        return error_response(401, str(exc), headers={"WWW-Authenticate": 'Bearer realm="api"'})

    @app.errorhandler(BackendUnavailable)
    def _backend_down(exc: BackendUnavailable) -> Response:
        return error_response(SERVICE_UNAVAILABLE, f"model server unavailable: {exc}")

    @app.errorhandler(sa_exc.OperationalError)
    @app.errorhandler(sa_exc.InterfaceError)
    @app.errorhandler(sa_exc.TimeoutError)
    def _database_down(exc: Exception) -> Response:
        log.warning("database unavailable: %s", type(exc).__name__)
        return error_response(SERVICE_UNAVAILABLE, DATABASE_DOWN_MESSAGE)

    @app.errorhandler(InternalServerError)
    def _internal(exc: InternalServerError) -> Response:
        # The request's journal is written in an after_request hook, whose exceptions reach
        # Flask as a 500 wrapping the original one.
        if isinstance(exc.original_exception, DATABASE_DOWN):
            return _database_down(exc.original_exception)
        return error_response(500, exc.description or "internal server error")

    @app.errorhandler(BackendRejected)
    def _backend_rejected(exc: BackendRejected) -> Response:
        return error_response(UNPROCESSABLE, f"the model server refused the input: {exc}")

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        messages = {
            413: f"request body too large (limit {app.config['MAX_CONTENT_LENGTH']} bytes)",
            429: f"rate limit exceeded ({exc.description}); slow down and retry later",
        }
        headers = {}
        if exc.code == 429 and exc.get_response().headers.get("Retry-After"):
            headers["Retry-After"] = exc.get_response().headers["Retry-After"]
        code = exc.code or 500
        return error_response(
            code, messages.get(code, exc.description or exc.name), headers=headers
        )
