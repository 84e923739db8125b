"""The soak: the TorchServe and web scenarios at once, for minutes, with the RSS of every
server process sampled throughout (a leak shows as growth)."""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks import load_report as report
from benchmarks.load_locust import LocustRun, host_of
from benchmarks.load_servers import Endpoints, rss_by_process
from benchmarks.load_targets import SCENARIOS

SOAK_SECONDS = 300.0
SOAK_USERS = 50
SOAK_SCENARIOS = ("torchserve_http", "web")  # the soak's users are split evenly between these
SOAK_THINK_MS = 100.0  # direct TorchServe clients pause between calls: a soak, not a stress test
SOAK_SAMPLE_S = 15.0  # RSS sampling period


def run_soak(
    endpoints: Endpoints, folder: Path, options: dict, seconds: float, users: int
) -> tuple[list[report.Point], list[tuple[float, dict[str, float]]]]:
    """TorchServe and web scenarios at once; RSS of every server process sampled throughout."""
    share = max(1, users // len(SOAK_SCENARIOS))
    samples = [(0.0, rss_by_process(endpoints.pids))]
    started = time.monotonic()
    runs = []
    try:
        for name in SOAK_SCENARIOS:
            scenario = SCENARIOS[name]
            runs.append(LocustRun(scenario, host_of(endpoints, scenario), share, seconds, folder,
                                  {**options, "think_ms": SOAK_THINK_MS}))  # fmt: skip
        while any(run.process.poll() is None for run in runs):
            time.sleep(SOAK_SAMPLE_S)
            samples.append((time.monotonic() - started, rss_by_process(endpoints.pids)))
        samples.append((time.monotonic() - started, rss_by_process(endpoints.pids)))
        points = [run.finish() for run in runs]
        both = sum(p.locust_cores for p in points)  # the first to be read counted both
        for point in points:
            point.locust_cores = both
        return points, samples
    finally:
        for run in runs:
            run.stop()
