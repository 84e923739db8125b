"""One logging configuration for training, the web app and the model-server handlers.

Every record is one JSON line (python-json-logger) carrying a ``request_id``. The loggers of the
three areas (``movierec.data``, ``movierec.training``, ``movierec.api``) each write their own
rotating file ``logs/<area>.jsonl``; any other ``movierec.*`` logger (serving, evaluation, ...)
writes ``logs/movierec.jsonl``; everything also goes to the console (stderr).

The request id lives in a context variable: the web app sets it per request from the incoming
``X-Request-ID`` header (or a new one), sends it on to the model servers with
``outgoing_headers()`` and returns it in its response, so one id ties together the lines the
web app, TorchServe and Triton write for one click.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pythonjsonlogger.json import JsonFormatter

from training.monitoring.shared_log_file import SharedRotatingFileHandler

if TYPE_CHECKING:
    from flask import Flask, Response

ROOT_LOGGER = "movierec"
LOG_AREAS = ("data", "training", "api")
OTHER_LOG_FILE = "movierec.jsonl"
REQUEST_ID_HEADER = "X-Request-ID"
NO_REQUEST_ID = "-"
# A file rolls over at 10 MiB and five old files are kept: at most 60 MiB per area.
MAX_LOG_BYTES = 10 * 1024 * 1024
LOG_BACKUP_COUNT = 5
# Incoming ids are echoed into logs and headers, so only a plain token is trusted (no newlines,
# no quotes); anything else is replaced by a fresh id.
_REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s"
_RENAMED = {"asctime": "timestamp", "levelname": "level", "name": "logger"}
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
# Marks the handlers this module installed, so reconfiguring replaces only those.
_OWNED = "_movierec_owned"

_request_id: ContextVar[str | None] = ContextVar("movierec_request_id", default=None)


class UtcJsonFormatter(JsonFormatter):
    """JSON lines with an ISO-8601 UTC timestamp (what log shippers and ``--since`` expect)."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


class RequestIdFilter(logging.Filter):
    """Stamps the current request id on a record, unless the caller passed one in ``extra``
    (a TorchServe handler logging for one request of a batch does)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = _request_id.get() or NO_REQUEST_ID
        return True


class _ExcludeLoggers(logging.Filter):
    """Drops records of the area loggers, which already have their own file."""

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(
            record.name == prefix or record.name.startswith(prefix + ".")
            for prefix in self.prefixes
        )


def json_formatter() -> logging.Formatter:
    return UtcJsonFormatter(_JSON_FIELDS, rename_fields=_RENAMED)


def _owned(handler: logging.Handler) -> logging.Handler:
    setattr(handler, _OWNED, True)
    handler.addFilter(RequestIdFilter())
    return handler


def rotating_file_handler(
    path: Path, max_bytes: int = MAX_LOG_BYTES, backup_count: int = LOG_BACKUP_COUNT
) -> SharedRotatingFileHandler:
    """A JSON-lines file that rolls over to ``path.1``, ``path.2``, ... (opened on first use;
    the web app's workers share it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = SharedRotatingFileHandler(path, max_bytes, backup_count)
    handler.setFormatter(json_formatter())
    return handler


def configure_logging(
    logs_dir: Path | str | None = None,
    level: str | int = "INFO",
    console: bool = True,
    console_format: str = "json",
    max_bytes: int = MAX_LOG_BYTES,
    backup_count: int = LOG_BACKUP_COUNT,
) -> list[logging.Handler]:
    """Install the project's handlers on the ``movierec`` logger tree; safe to call again.

    ``logs_dir`` None means console only. ``console_format`` "text" gives humans one readable
    line per record on a terminal; files are always JSON lines. Returns the installed handlers.
    """
    if console_format not in ("json", "text"):
        raise ValueError(f"console_format must be 'json' or 'text', not {console_format!r}")
    reset_logging()
    root = logging.getLogger(ROOT_LOGGER)
    root.setLevel(level)
    root.propagate = False
    installed: list[logging.Handler] = []
    if console:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(
            json_formatter() if console_format == "json" else logging.Formatter(_TEXT_FORMAT)
        )
        root.addHandler(_owned(stream))
        installed.append(stream)
    if logs_dir is not None:
        folder = Path(logs_dir)
        area_names = tuple(f"{ROOT_LOGGER}.{area}" for area in LOG_AREAS)
        for area, name in zip(LOG_AREAS, area_names, strict=True):
            handler = rotating_file_handler(folder / f"{area}.jsonl", max_bytes, backup_count)
            logging.getLogger(name).addHandler(_owned(handler))
            installed.append(handler)
        other = rotating_file_handler(folder / OTHER_LOG_FILE, max_bytes, backup_count)
        other.addFilter(_ExcludeLoggers(area_names))
        root.addHandler(_owned(other))
        installed.append(other)
    return installed


def reset_logging() -> None:
    """Remove (and close) the handlers ``configure_logging`` installed."""
    names = [ROOT_LOGGER, *(f"{ROOT_LOGGER}.{area}" for area in LOG_AREAS)]
    for name in names:
        logger = logging.getLogger(name)
        for handler in [h for h in logger.handlers if getattr(h, _OWNED, False)]:
            logger.removeHandler(handler)
            handler.close()


def is_configured() -> bool:
    return any(getattr(h, _OWNED, False) for h in logging.getLogger(ROOT_LOGGER).handlers)


# -- request ids ---------------------------------------------------------------------------------
def new_request_id() -> str:
    return uuid.uuid4().hex


def valid_request_id(value: str | None) -> str:
    """``value`` when it is a plain token, otherwise a new id."""
    if value and _REQUEST_ID_PATTERN.match(value):
        return value
    return new_request_id()


def current_request_id() -> str | None:
    return _request_id.get()


def set_request_id(value: str | None) -> Token:
    """Make ``value`` (validated; a new id when missing) the current id; reset with the token."""
    return _request_id.set(valid_request_id(value))


def reset_request_id(token: Token) -> None:
    _request_id.reset(token)


@contextmanager
def request_id_context(value: str | None = None) -> Iterator[str]:
    """``with request_id_context(header_value) as rid:`` for code outside Flask (handlers, jobs)."""
    token = set_request_id(value)
    try:
        yield _request_id.get() or NO_REQUEST_ID
    finally:
        _request_id.reset(token)


def outgoing_headers() -> dict[str, str]:
    """Headers to send to a model server so its logs carry this request's id."""
    rid = _request_id.get()
    return {REQUEST_ID_HEADER: rid} if rid else {}


def install_request_logging(app: Flask) -> None:
    """Flask: take the request id from ``X-Request-ID`` (or make one), return it in the response
    header, and write one ``movierec.api`` access line per request. Idempotent per app."""
    from flask import g, request

    if app.extensions.get("movierec_request_logging"):
        return
    app.extensions["movierec_request_logging"] = True
    access_log = logging.getLogger(f"{ROOT_LOGGER}.api")

    @app.before_request
    def _start_request() -> None:
        g._movierec_request_token = set_request_id(request.headers.get(REQUEST_ID_HEADER))
        g._movierec_request_started = time.perf_counter()

    @app.after_request
    def _finish_request(response: Response) -> Response:
        rid = _request_id.get()
        if rid:
            response.headers[REQUEST_ID_HEADER] = rid
        started = g.pop("_movierec_request_started", None)
        route = request.url_rule.rule if request.url_rule else None
        access_log.info(
            "%s %s %s",
            request.method,
            route or "<unmatched>",
            response.status_code,
            extra={
                "method": request.method,
                "route": route,
                "status": response.status_code,
                "duration_ms": None
                if started is None
                else round((time.perf_counter() - started) * 1000, 2),
            },
        )
        return response

    @app.teardown_request
    def _forget_request_id(_exc: BaseException | None) -> None:
        token = g.pop("_movierec_request_token", None)
        if token is not None:
            try:
                _request_id.reset(token)
            except ValueError:  # set in another context (an async view): nothing to undo here
                pass
