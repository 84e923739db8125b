"""Locust as a subprocess (``python -m locust``, headless), one per scenario and user count:
``LocustRun`` starts it, waits for it and reads its figures (with the CPU it and the servers
used); ``run_points`` measures every point of a list of scenarios, each after a warm-up. Never
``import locust`` here: it monkey-patches the whole process (ssl, sockets)."""

from __future__ import annotations

import logging
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import load_report as report
from benchmarks.load_servers import Endpoints, cpu_seconds
from benchmarks.load_targets import Scenario
from benchmarks.loopback_baseline import measure_round_trip

log = logging.getLogger("load")

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
LOCUST_STOP_TIMEOUT_S = 5  # users finish their current request when the time is up
LOCUST_GRACE_S = 30.0  # start-up, stop and CSV writing on a loaded machine
TERMINATE_TIMEOUT_S = 10.0


def locust_command(
    scenario: Scenario, host: str, users: int, seconds: float, prefix: Path, options: dict
) -> list[str]:
    command = [
        sys.executable, "-m", "locust",
        "-f", str(BENCH_DIR / scenario.locustfile),
        "--headless", "--only-summary", "--loglevel", "WARNING",
        "--host", host,
        "--users", str(users), "--spawn-rate", str(users),
        "--run-time", f"{seconds:g}s",
        "--stop-timeout", str(LOCUST_STOP_TIMEOUT_S),
        "--csv", str(prefix),
        "--record", str(prefix),  # --processes: forked workers drop --csv but keep this
        "--profiles", str(options["profiles"]),
        "--think-ms", f"{options.get('think_ms', 0.0):g}",
    ]  # fmt: skip
    if options.get("reset_stats"):
        command.append("--reset-stats")  # the figures leave out the ramp-up
    if options.get("processes"):
        command += ["--processes", str(options["processes"])]
    return command


class LocustRun:
    """One headless Locust process; ``finish()`` waits for it and reads its figures."""

    def __init__(self, scenario: Scenario, host: str, users: int, seconds: float, folder: Path,
                 options: dict) -> None:  # fmt: skip
        self.scenario, self.users, self.seconds = scenario, users, seconds
        self.prefix = folder / f"{scenario.name}_u{users}"
        for stale in folder.glob(f"{self.prefix.name}_*"):
            stale.unlink()
        self.log_path = Path(f"{self.prefix}.log")
        self.load_avg = os.getloadavg()[0]
        self.server_pids = options.get("server_pids", {})
        self.started = time.monotonic()
        self.server_cpu = cpu_seconds(self.server_pids)
        self.children_cpu = _children_cpu()
        command = locust_command(scenario, host, users, seconds, self.prefix, options)
        log.info("%s: %d users for %gs against %s", scenario.name, users, seconds, host)
        # From the repository root: Locust puts the working directory on sys.path, so the
        # locustfiles import the ``benchmarks`` package.
        with self.log_path.open("wb") as out:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=REPO_ROOT, start_new_session=True,
                env={**os.environ, "PYTHONFAULTHANDLER": "1"},
            )  # fmt: skip

    def finish(self) -> report.Point:
        try:
            self.process.wait(timeout=self.seconds + LOCUST_GRACE_S)
        except subprocess.TimeoutExpired:
            log.error("%s: Locust did not exit in time; its stacks go to %s, then it is stopped",
                      self.prefix.name, self.log_path)  # fmt: skip
            self.process.send_signal(signal.SIGABRT)  # PYTHONFAULTHANDLER: every thread's stack
            self.process.wait(timeout=TERMINATE_TIMEOUT_S)
        finally:
            self.stop()
        wall = time.monotonic() - self.started
        try:
            point = report.read_point(
                self.prefix, self.scenario.name, self.users, self.seconds, self.load_avg
            )
        except FileNotFoundError as exc:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{exc}\n--- {self.log_path} ---\n{tail}") from None
        # Locust (and its --processes workers) is a waited-for child: getrusage counts it.
        point.locust_cores = (_children_cpu() - self.children_cpu) / wall
        if self.server_pids:
            point.server_cores = (cpu_seconds(self.server_pids) - self.server_cpu) / wall
        return point

    def stop(self) -> None:
        from training.serving.processes import terminate

        if self.process.poll() is None:
            terminate(self.process.pid, TERMINATE_TIMEOUT_S)
            self.process.wait()


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def host_of(endpoints: Endpoints, scenario: Scenario) -> str:
    host = getattr(endpoints, scenario.endpoint)
    if host is None:
        raise ValueError(f"scenario {scenario.name}: no {scenario.endpoint} endpoint in this run")
    return host


def run_points(
    scenarios: list[Scenario], users: dict[str, tuple[int, ...]], seconds: float,
    endpoints: Endpoints, folder: Path, options: dict,
) -> list[report.Point]:  # fmt: skip
    points = []
    for scenario in scenarios:
        if options.get("warmup_s"):
            warm_up(scenario, host_of(endpoints, scenario), max(users[scenario.name]), folder,
                    options)  # fmt: skip
        for count in users[scenario.name]:
            loopback_us = loopback_p50_us(options.get("loopback_trips", 0))
            run = LocustRun(scenario, host_of(endpoints, scenario), count, seconds, folder, options)
            try:
                point = run.finish()
            finally:
                run.stop()
            point.loopback_us = loopback_us
            total = point.total
            log.info("%s @ %d users: %d requests, %d failures, %.0f req/s, p50 %s ms, p95 %s ms "
                     "(loopback round trip %s us before)", scenario.name, count, total.requests,
                     total.failures, total.rps, report.ms(total.p50), report.ms(total.p95),
                     report.us(loopback_us))  # fmt: skip
            points.append(point)
    return points


def loopback_p50_us(trips: int) -> float:
    """The machine's loopback round trip right now (nan when not measured)."""
    return measure_round_trip(trips).p50_us if trips else math.nan


def warm_up(scenario: Scenario, host: str, users: int, folder: Path, options: dict) -> None:
    log.info("%s: warming up for %gs at %d users (not measured)", scenario.name,
             options["warmup_s"], users)  # fmt: skip
    scratch = folder / "warmup"
    scratch.mkdir(parents=True, exist_ok=True)
    run = LocustRun(scenario, host, users, options["warmup_s"], scratch, options)
    try:
        run.finish()
    finally:
        run.stop()
        shutil.rmtree(scratch, ignore_errors=True)
