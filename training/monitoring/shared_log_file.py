"""A size-rotated log file that several processes can share (the web app's gunicorn workers).

The standard ``RotatingFileHandler`` is safe across threads only: with two workers appending to
one ``api.jsonl``, each rolls the file over on its own count, renames what the other is still
writing, and lines land in the wrong copy or vanish when the oldest copy is dropped (seen in a
load run: two ``.N`` copies covering the same minutes). Here every write and rollover happens
under an exclusive ``flock`` on a sidecar ``<file>.lock``, the size that decides a rollover is
read from the file itself, and a process that finds the file rotated by another reopens it.
"""

from __future__ import annotations

import fcntl
import logging
import os
from logging.handlers import RotatingFileHandler

LOCK_SUFFIX = ".lock"


class SharedRotatingFileHandler(RotatingFileHandler):
    def __init__(
        self,
        filename: str | os.PathLike[str],
        max_bytes: int,
        backup_count: int,
        encoding: str = "utf-8",
    ) -> None:
        super().__init__(
            filename, maxBytes=max_bytes, backupCount=backup_count, encoding=encoding, delay=True
        )
        self.lock_path = self.baseFilename + LOCK_SUFFIX

    def emit(self, record: logging.LogRecord) -> None:
        try:
            # Opened per write, not kept: a forked child would share the open file description,
            # and with it the lock, with its parent.
            with open(self.lock_path, "a", encoding="utf-8") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
                self._follow_rotation()
                super().emit(record)
        except Exception:
            self.handleError(record)

    def shouldRollover(self, record: logging.LogRecord) -> bool:  # noqa: N802 - logging's name
        if self.maxBytes <= 0:
            return False
        try:
            size = os.stat(self.baseFilename).st_size
        except FileNotFoundError:
            return False
        return size > 0 and size + len(self.format(record)) + len(self.terminator) > self.maxBytes

    def _follow_rotation(self) -> None:
        """Close the stream when the path no longer names the file it writes to."""
        if self.stream is None:
            return
        own = os.fstat(self.stream.fileno())
        try:
            current = os.stat(self.baseFilename)
        except FileNotFoundError:
            current = None
        if current is None or (current.st_dev, current.st_ino) != (own.st_dev, own.st_ino):
            self.stream.close()
            self.stream = None  # FileHandler.emit opens the path again
