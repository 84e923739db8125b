"""A bounded stream of requests from a few threads, recording what each answer said.

The release tests run one beside a version swap: every answer must succeed and name a version,
and each thread (which waits for one answer before asking again) must see the old version, then
the new one, never the old one again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

THREADS = 4
# Bounds: at most this many requests and this many seconds, whatever the release does.
MAX_REQUESTS = 6000
MAX_SECONDS = 240.0
PAUSE_S = 0.005  # between one thread's requests: a steady stream, not a benchmark


@dataclass
class Answer:
    thread: int
    version: str | None
    error: str | None = None


@dataclass
class RequestStream:
    """``call()`` returns the version an answer names (or raises); run it until ``stop()``."""

    call: Callable[[], str]
    threads: int = THREADS
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> RequestStream:
        deadline = time.monotonic() + MAX_SECONDS
        for index in range(self.threads):
            worker = threading.Thread(target=self._run, args=(index, deadline), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, index: int, deadline: float) -> None:
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                answer = Answer(index, self.call())
            except Exception as exc:  # noqa: BLE001 - every failure is recorded, none hidden
                answer = Answer(index, None, f"{type(exc).__name__}: {exc}")
            with self._lock:
                if len(self.answers) >= MAX_REQUESTS:
                    return
                self.answers.append(answer)
            time.sleep(PAUSE_S)

    def count(self) -> int:
        with self._lock:
            return len(self.answers)

    def wait_for(self, more: int, timeout_s: float = MAX_SECONDS) -> None:
        """Until ``more`` further answers have come (or the bounds are reached)."""
        target = self.count() + more
        deadline = time.monotonic() + timeout_s
        while self.count() < target and time.monotonic() < deadline and self._alive():
            time.sleep(0.05)

    def _alive(self) -> bool:
        return any(worker.is_alive() for worker in self._workers)

    def stop(self) -> list[Answer]:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=30)
        return self.answers

    @property
    def errors(self) -> list[str]:
        return [answer.error for answer in self.answers if answer.error is not None]

    def versions_by_thread(self) -> dict[int, list[str | None]]:
        seen: dict[int, list[str | None]] = {}
        for answer in self.answers:
            seen.setdefault(answer.thread, []).append(answer.version)
        return seen


def switches_once(versions: list[str | None], old: str, new: str) -> bool:
    """``old ... old new ... new`` with both present: one switch, never back."""
    if not versions or versions[0] != old or versions[-1] != new:
        return False
    first_new = versions.index(new)
    return all(v == old for v in versions[:first_new]) and all(
        v == new for v in versions[first_new:]
    )
