"""Several processes append to one rotated log (the web app's gunicorn workers do): every line
lands exactly once, and no copy grows past the size limit."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from training.monitoring.drift import log_files

WRITERS = 3
LINES_PER_WRITER = 300
MAX_BYTES = 4096
BACKUPS = 1000  # enough that no copy is dropped: every line must still be somewhere
WRITER_TIMEOUT_S = 120

# Each writer logs through one of the two production entry points.
WRITER_SCRIPTS = {
    "logging_config": """
        import logging
        from training.monitoring.logging_config import rotating_file_handler
        handler = rotating_file_handler(path, max_bytes, backups)
        logger = logging.getLogger("shared-log-test")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        write = lambda line: logger.info(line)
    """,
    "request_log": """
        from datetime import UTC, datetime
        from training.monitoring.drift import LoggedRequest, RequestLog
        log = RequestLog(path, max_bytes, backups)
        request = LoggedRequest(datetime.now(UTC), "sae", {1: 4.0}, [0.5])
        write = lambda line: log.write(request, request_id=line)
    """,
}


def writer_command(kind: str, path: Path, writer: int) -> list[str]:
    script = textwrap.dedent(WRITER_SCRIPTS[kind]) + textwrap.dedent(
        f"""
        for i in range({LINES_PER_WRITER}):
            write("writer-{writer}-line-{{:04d}}-".format(i) + "x" * 60)
        """
    )
    prelude = (
        f"from pathlib import Path; path = Path({str(path)!r}); "
        f"max_bytes = {MAX_BYTES}; backups = {BACKUPS}\n"
    )
    return [sys.executable, "-c", prelude + script]


def logged_lines(path: Path) -> list[str]:
    lines = []
    for file in log_files(path):
        for line in file.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)  # the JSON log's message, or the request log's request_id
            lines.append(entry.get("message") or entry["request_id"])
    return lines


@pytest.mark.parametrize("kind", sorted(WRITER_SCRIPTS))
def test_processes_sharing_a_rotated_log_lose_no_line(tmp_path, kind):
    path = tmp_path / "shared.jsonl"
    writers = [
        subprocess.Popen(writer_command(kind, path, writer), stderr=subprocess.PIPE, text=True)
        for writer in range(WRITERS)
    ]
    for process in writers:
        _, errors = process.communicate(timeout=WRITER_TIMEOUT_S)
        assert process.returncode == 0, errors
        assert "Logging error" not in errors, errors

    lines = logged_lines(path)
    expected = {
        f"writer-{writer}-line-{i:04d}-" + "x" * 60
        for writer in range(WRITERS)
        for i in range(LINES_PER_WRITER)
    }
    assert len(lines) == len(expected), "lines lost or written twice"
    assert set(lines) == expected
    files = log_files(path)
    assert len(files) > WRITERS  # it did roll over, many times
    assert max(file.stat().st_size for file in files) <= MAX_BYTES
