"""The fault soak: steady traffic on the web app while the fault matrix's rows are injected one
after another, then every acknowledged write is looked up in the database.

    .venv/bin/python -m benchmarks.fault_soak   # 10 min, a fault a minute (make soak-faults)
    .venv/bin/python -m benchmarks.fault_soak --minutes 2 --faults postgres_stopped,redis_stopped

It starts its own stack (``benchmarks.fault_stack``: private PostgreSQL, Redis, TorchServe,
tritonserver, gunicorn on each backend) over the project's data/ (the DVC outputs), drives it
with ``Visitor`` threads (ratings, feedback, pages, API; ``benchmarks.fault_traffic``), injects a
fault at the start of each period and repairs it ``--hold-s`` later, and writes
``benchmarks/results/fault_soak.md``: requests sent and failed per fault window, and writes
acknowledged vs found in the database (0 lost is the bar). Exit status 1 on a lost write or a
hung request. The test suite runs ``run_soak`` in a short form (tests/faults/test_fault_soak.py).
"""

from __future__ import annotations

import argparse
import itertools
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import requests

from benchmarks.fault_stack import API_KEY, FAULTS, FaultStack, StackData
from benchmarks.fault_traffic import (
    UNAVAILABLE_PANEL,
    Visitor,
    WriteCount,
    api_token,
    count_writes,
)
from training.config import Paths, get_logger
from web.catalog import Catalog

log = get_logger("faults")

RESULTS = Path(__file__).resolve().parent / "results"
REPORT = RESULTS / "fault_soak.md"
MINUTES = 10.0
PERIOD_S = 60.0  # one fault per period
HOLD_S = 15.0  # how long each fault lasts before its repair starts
VISITORS_PER_APP = 3
THINK_S = 0.2  # between a visitor's actions: steady traffic, not a stress test
DATASET = "ml-100k"
RECOMMEND_K = 5
# What the report counts a request as: its HTTP status, DEGRADED for a page answered with the
# "Recommendations unavailable" panel, NO_ANSWER when none came.
NO_ANSWER = "no answer"
DEGRADED = "200 degraded"


@dataclass
class Window:
    """One fault: when it was injected and repaired, and the requests that overlapped it."""

    fault: str
    injected_s: float
    repaired_s: float = 0.0
    repair_s: float = 0.0
    statuses: Counter[str] = field(default_factory=Counter)


@dataclass
class SoakResult:
    duration_s: float
    hold_s: float
    visitors: int
    windows: list[Window]
    statuses: Counter[str]  # every request, by outcome (its status, DEGRADED, NO_ANSWER)
    hung: int  # requests still without an answer after the client timeout
    writes: WriteCount
    outside: Counter[str] = field(default_factory=Counter)  # requests outside every window

    @property
    def sent(self) -> int:
        return sum(self.statuses.values())

    @property
    def failed(self) -> int:
        return sum(count for outcome, count in self.statuses.items() if outcome[0] not in "23")


class Traffic:
    """Visitor threads: each rates a new movie, sends feedback, opens its recommendations and
    asks the API, round after round, recording each request's status and time."""

    def __init__(self, visitors: list[Visitor], movies: list[int]) -> None:
        self.visitors = visitors
        self.movies = movies
        self.records: list[tuple[float, str]] = []  # (monotonic time it ended, outcome)
        self.hung = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(index,), daemon=True)
            for index in range(len(visitors))
        ]

    def _record(self, call: Callable[[], requests.Response]) -> None:
        try:
            answer = call()
            status = str(answer.status_code)
            if answer.ok and UNAVAILABLE_PANEL in answer.text:
                status = DEGRADED
        except requests.Timeout:
            status = NO_ANSWER
            with self._lock:
                self.hung += 1
        except requests.RequestException:
            status = NO_ANSWER  # connection cut (a killed worker): the client knows
        with self._lock:
            self.records.append((time.monotonic(), status))

    def _run(self, index: int) -> None:
        visitor = self.visitors[index]
        # Each visitor rates movies in its own order, each at most once.
        offset = index * len(self.movies) // len(self.visitors)
        order: Iterator[int] = iter(self.movies[offset:] + self.movies[:offset])
        for round_ in itertools.count():
            if self._stop.is_set():
                return
            movie = next(order, None)
            if movie is not None:
                stars = 1 + round_ % 5
                self._record(partial(visitor.rate, movie, stars))
                self._record(partial(visitor.feedback, movie, "up"))
            self._record(partial(visitor.page, "/recommendations"))
            # The latest ratings: a new query each round, so the model server is asked.
            rated = dict(list(visitor.rated.items())[-5:]) or {self.movies[0]: 5}
            self._record(partial(visitor.recommend, "sae", rated, RECOMMEND_K))
            self._stop.wait(THINK_S)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def run_soak(
    stack: FaultStack,
    faults: list[str],
    duration_s: float,
    period_s: float = PERIOD_S,
    hold_s: float = HOLD_S,
    visitors_per_app: int = VISITORS_PER_APP,
) -> SoakResult:
    """Traffic on every web app of ``stack`` for ``duration_s``; at the start of each period
    the next of ``faults`` (cycled) is injected and, ``hold_s`` later, repaired."""
    movies = sorted(movie.movie_id for movie in Catalog.load(stack.data.movies_path).movies)
    visitors = [
        Visitor(app.url, api_token(app.url, API_KEY), f"soak-{backend}-{index}")
        for backend, app in stack.web.items()
        for index in range(visitors_per_app)
    ]
    traffic = Traffic(visitors, movies)
    started = time.monotonic()
    traffic.start()
    windows: list[Window] = []
    try:
        for period, name in zip(itertools.count(), itertools.cycle(faults), strict=False):
            period_start = started + period * period_s
            if period_start + hold_s > started + duration_s:
                break
            time.sleep(max(0.0, period_start - time.monotonic()))
            fault = FAULTS[name]
            window = Window(name, time.monotonic() - started)
            log.info("soak %.0fs: %s", window.injected_s, fault.description)
            fault.inject(stack)
            time.sleep(hold_s)
            repair_started = time.monotonic()
            fault.repair(stack)
            window.repair_s = time.monotonic() - repair_started
            window.repaired_s = time.monotonic() - started
            windows.append(window)
        time.sleep(max(0.0, started + duration_s - time.monotonic()))
    finally:
        traffic.stop()
    duration = time.monotonic() - started
    result = SoakResult(
        duration,
        hold_s,
        len(visitors),
        windows,
        Counter(status for _, status in traffic.records),
        traffic.hung,
        count_writes(stack.postgres_engine(), visitors, stack.secret),
    )
    for ended, status in traffic.records:
        at = ended - started
        # A request counts for a window from injection until shortly after the repair (the
        # client may have been waiting on a timeout when the component came back).
        during = next((w for w in windows if w.injected_s <= at <= w.repaired_s + hold_s), None)
        (during.statuses if during else result.outside)[status] += 1
    return result


def _statuses(counts: Counter[str]) -> str:
    return ", ".join(f"{outcome}: {n}" for outcome, n in sorted(counts.items())) or "-"


def report(result: SoakResult, stack: FaultStack, faults: list[str]) -> str:
    writes = result.writes
    lines = [
        "# Fault soak",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `make soak-faults` "
        "(`python -m benchmarks.fault_soak`): "
        f"{result.duration_s / 60:.1f} min of steady traffic from "
        f"{result.visitors} visitors (rate a movie, feedback, the "
        "recommendations page, the JSON API) on gunicorn web apps over "
        f"{', '.join(stack.web)}, private PostgreSQL and Redis; one fault per period "
        f"(cycled: {', '.join(faults)}), each held {result.hold_s:g} s then repaired.",
        "",
        "| | |",
        "|---|---|",
        f"| requests sent | {result.sent} |",
        f"| failed (any non-2xx/3xx, or no answer) | {result.failed} |",
        f"| pages with the 'Recommendations unavailable' panel | {result.statuses[DEGRADED]} |",
        f"| hung (no answer within the client timeout) | {result.hung} |",
        f"| writes acknowledged (rating 200, feedback 201) | {writes.expected} |",
        f"| of those found in the database | {writes.written} |",
        f"| **lost writes** | **{writes.lost}** |",
        f"| writes refused with an error (the client was told) | {writes.refused} |",
        f"| statuses outside fault windows | {_statuses(result.outside)} |",
        "",
        "| at (s) | fault | repair took (s) | statuses during the window |",
        "|---:|---|---:|---|",
    ]
    for window in result.windows:
        lines.append(
            f"| {window.injected_s:.0f} | {FAULTS[window.fault].description} "
            f"| {window.repair_s:.1f} | {_statuses(window.statuses)} |"
        )
    lines += [
        "",
        "A window runs from the injection to one hold time after the repair. 503 is the app's "
        "clear answer (model server or database unavailable: the API's JSON error, the rating "
        "form's error); '200 degraded' a page with the 'Recommendations unavailable' panel; 'no "
        "answer' a connection cut by a killed gunicorn worker. A write is lost when the app "
        "acknowledged it and the database does not hold it.",
        "",
    ]
    return "\n".join(lines)


def project_data() -> StackData:
    """The project's DVC outputs: archives, Triton graphs, prepared catalogue, checkpoints."""
    paths = Paths()
    return StackData(
        model_store=paths.model_store,
        movies_path=paths.prepared(DATASET) / "movies.json",
        checkpoints_dir=paths.checkpoints,
        evaluation_report=paths.reports / "evaluation.json",
        triton_repo=paths.triton_repo,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=MINUTES)
    parser.add_argument("--period-s", type=float, default=PERIOD_S, help="one fault per period")
    parser.add_argument("--hold-s", type=float, default=HOLD_S, help="how long a fault lasts")
    parser.add_argument(
        "--faults", default=",".join(FAULTS), help=f"comma-separated, of {', '.join(FAULTS)}"
    )
    parser.add_argument("--out", type=Path, default=REPORT)
    return parser.parse_args(argv)


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through every finally: servers get stopped


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    faults = [name.strip() for name in args.faults.split(",") if name.strip()]
    unknown = sorted(set(faults) - set(FAULTS))
    if unknown or not faults:
        raise SystemExit(f"unknown faults {unknown}; choose from {', '.join(FAULTS)}")
    signal.signal(signal.SIGTERM, _exit_on_signal)
    stack = FaultStack(project_data())
    try:
        stack.start_postgres()
        stack.start_redis()
        stack.start_torchserve()
        stack.start_web("torchserve")
        if any(FAULTS[name].backend == "triton" for name in faults):
            stack.start_triton()
            stack.start_web("triton", workers=1)
        result = run_soak(stack, faults, args.minutes * 60, args.period_s, args.hold_s)
        text = report(result, stack, faults)
    finally:
        stack.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text)
    return 1 if result.writes.lost or result.hung else 0


if __name__ == "__main__":
    sys.exit(main())
