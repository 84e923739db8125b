"""The request log (``logs/requests.jsonl``): one JSON line per recommendation request the web
app served, rotated by size; read back over a time range for ``movierec monitor drift``."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from training.monitoring.drift.statistics import ROUND_DIGITS
from training.monitoring.shared_log_file import SharedRotatingFileHandler

REQUEST_LOG_FILE = "requests.jsonl"
REQUEST_LOG_MAX_BYTES = 50 * 1024 * 1024
REQUEST_LOG_BACKUPS = 5


@dataclass(frozen=True)
class LoggedRequest:
    timestamp: datetime
    model: str
    ratings: dict[int, float]
    scores: list[float]


class RequestLog:
    """``logs/requests.jsonl``: one JSON line per recommendation request, rotated by size."""

    def __init__(
        self,
        path: Path,
        max_bytes: int = REQUEST_LOG_MAX_BYTES,
        backup_count: int = REQUEST_LOG_BACKUPS,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # The handler brings the locking (across the web workers too) and rotation; the line is
        # formatted here.
        self._handler = SharedRotatingFileHandler(self.path, max_bytes, backup_count)
        self._handler.setFormatter(logging.Formatter("%(message)s"))

    def write(self, request: LoggedRequest, request_id: str | None = None) -> None:
        line = json.dumps(
            {
                "timestamp": request.timestamp.isoformat(timespec="milliseconds"),
                "request_id": request_id,
                "model": request.model,
                "ratings": {str(item): rating for item, rating in request.ratings.items()},
                "scores": [round(float(s), ROUND_DIGITS) for s in request.scores],
            }
        )
        self._handler.handle(logging.makeLogRecord({"msg": line, "levelno": logging.INFO}))

    def close(self) -> None:
        self._handler.close()


def log_files(path: Path) -> list[Path]:
    """The log and its rotated copies, oldest first (``path.N`` ... ``path.1``, ``path``)."""
    rotated = [p for p in path.parent.glob(path.name + ".*") if p.suffix[1:].isdigit()]
    rotated.sort(key=lambda p: int(p.suffix[1:]), reverse=True)
    return [*rotated, *([path] if path.is_file() else [])]


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive one is taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _parse_line(text: str, path: Path, number: int) -> LoggedRequest:
    from training.data.parsers import DataValidationError

    try:
        raw = json.loads(text)
        return LoggedRequest(
            timestamp=as_utc(datetime.fromisoformat(raw["timestamp"])),
            model=str(raw["model"]),
            ratings={int(k): float(v) for k, v in raw["ratings"].items()},
            scores=[float(s) for s in raw["scores"]],
        )
    except json.JSONDecodeError as exc:
        raise DataValidationError(path, number, f"not JSON: {exc.msg}") from exc
    except KeyError as exc:
        raise DataValidationError(path, number, f"missing field {exc}") from exc
    except (TypeError, ValueError, AttributeError) as exc:
        raise DataValidationError(path, number, f"invalid request record: {exc}") from exc


def read_request_log(
    path: Path, since: datetime | None = None, until: datetime | None = None
) -> list[LoggedRequest]:
    """Logged requests with ``since <= timestamp < until`` (UTC), from the log and its rotations."""
    files = log_files(path)
    if not files:
        raise FileNotFoundError(
            f"{path}: no request log; the web app writes it when it serves recommendations"
        )
    since = as_utc(since) if since else None
    until = as_utc(until) if until else None
    requests = []
    for file in files:
        with file.open(encoding="utf-8") as lines:
            for number, text in enumerate(lines, start=1):
                if not text.strip():
                    continue
                request = _parse_line(text, file, number)
                if (since is None or request.timestamp >= since) and (
                    until is None or request.timestamp < until
                ):
                    requests.append(request)
    return requests
