"""Load tests: start what is needed, run each Locust scenario headless, report the figures.

    .venv/bin/python -m benchmarks.run_load            # = --bench: every scenario at 1, 8, 32 users
    .venv/bin/python -m benchmarks.run_load --smoke    # a few seconds each, exit 1 on any failure
    .venv/bin/python -m benchmarks.run_load --soak     # 50 users, 5 min, TorchServe + web, RSS

Locust runs as a subprocess (``python -m locust``, ``load_locust``), one per scenario and user
count, writing its CSVs under ``<out>/locust/<mode>/``. Servers (TorchServe, Triton, the web app
on a throw-away database) start on free ports unless given by address, and are stopped on every
exit path (SIGTERM and Ctrl-C included). The in-process model is measured in the same run, so
the report (``load_mode_reports``: ``load_report.md`` + PNG plots, or ``load_smoke.md`` /
``soak_report.md``) shows ratios. This module is the driver: arguments, servers, the mode's
runs (``load_locust.run_points`` or ``load_soak.run_soak``) and the exit status.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from benchmarks import load_report as report
from benchmarks.load_locust import run_points
from benchmarks.load_mode_reports import write_outputs
from benchmarks.load_servers import DEFAULT_POSTGRES_ADMIN_URL, Endpoints, LoadStack
from benchmarks.load_soak import SOAK_SCENARIOS, SOAK_SECONDS, SOAK_USERS, run_soak
from benchmarks.load_targets import (
    BASELINE_CALLS,
    BENCH_SECONDS,
    LOOPBACK_TRIPS,
    SCENARIOS,
    SMOKE_SECONDS,
    SMOKE_USERS,
    WARMUP_SECONDS,
    Scenario,
)
from benchmarks.profiles import DEFAULT_DATASET, write_profiles
from web.server import DEFAULT_WORKERS as WEB_WORKERS

log = logging.getLogger("load")

RESULTS = Path(__file__).resolve().parent / "results"
USER_ERROR = "exception in"  # how locust_common names errors raised by task code


def _exit_on_signal(signum: int, _frame) -> None:
    raise SystemExit(128 + signum)  # unwinds through every finally: servers get stopped


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--bench", dest="mode", action="store_const", const="bench")
    mode.add_argument("--smoke", dest="mode", action="store_const", const="smoke")
    mode.add_argument("--soak", dest="mode", action="store_const", const="soak")
    parser.set_defaults(mode="bench")
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"Comma-separated subset of {', '.join(SCENARIOS)}",
    )
    parser.add_argument("--users", help="Comma-separated user counts for every scenario")
    parser.add_argument("--duration", type=float, help="Seconds per point (mode default)")
    parser.add_argument("--soak-users", type=int, default=SOAK_USERS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--home", type=Path, help="Project root (default $MOVIEREC_HOME or repo)")
    parser.add_argument("--dataset", default=DEFAULT_DATASET)
    parser.add_argument("--model-store", type=Path, help="Folder of .mar (default model_store/)")
    parser.add_argument("--triton-repo", type=Path, help="Triton repository (default triton_repo/)")
    parser.add_argument("--torchserve-url", help="A running TorchServe's inference URL")
    parser.add_argument("--torchserve-grpc", help="... and its gRPC inference host:port")
    parser.add_argument("--triton-grpc", help="A running Triton's gRPC host:port")
    parser.add_argument("--web-url", help="A running web app's URL")
    parser.add_argument("--web-workers", type=int, default=WEB_WORKERS, help="gunicorn workers")
    parser.add_argument(
        "--postgres-admin-url",
        default=DEFAULT_POSTGRES_ADMIN_URL,
        help="Where the web app's throw-away database is created ('' = SQLite)",
    )
    parser.add_argument("--processes", type=int, help="Locust processes per run (--processes)")
    args = parser.parse_args(argv)  # fmt: skip
    unknown = [s for s in args.scenarios.split(",") if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; choose from {', '.join(SCENARIOS)}")
    if args.duration is None:
        args.duration = {"bench": BENCH_SECONDS, "smoke": SMOKE_SECONDS, "soak": SOAK_SECONDS}[
            args.mode
        ]
    if args.mode == "soak":
        args.scenarios = ",".join(SOAK_SCENARIOS)
    return args


def user_counts(args: argparse.Namespace, scenarios: list[Scenario]) -> dict[str, tuple[int, ...]]:
    if args.mode == "smoke":
        return {s.name: (SMOKE_USERS,) for s in scenarios}
    if args.users:
        counts = tuple(int(u) for u in args.users.split(","))
        return {s.name: counts for s in scenarios}
    return {s.name: s.bench_users for s in scenarios}


def start_servers(stack: LoadStack, args: argparse.Namespace, scenarios: list[Scenario]):
    needed = {s.endpoint for s in scenarios}
    endpoints = Endpoints(
        torchserve_http=args.torchserve_url, torchserve_grpc=args.torchserve_grpc,
        triton_grpc=args.triton_grpc, web=args.web_url,
    )  # fmt: skip
    wants_torchserve = bool({"torchserve_http", "torchserve_grpc"} & needed) or (
        "web" in needed and not args.web_url
    )
    if wants_torchserve and not args.torchserve_url:
        from training.serving.torchserve_server import MODELS

        server = stack.torchserve(args.model_store or stack.paths.model_store, MODELS)
        endpoints.torchserve_http, endpoints.torchserve_grpc = (
            server.inference_url, server.grpc_target
        )  # fmt: skip
        endpoints.pids["torchserve"] = server.pid
    if "triton_grpc" in needed and not args.triton_grpc:
        server = stack.triton(args.triton_repo or stack.paths.triton_repo)
        endpoints.triton_grpc = server.grpc_url
        endpoints.pids["triton"] = server.pid
    if "web" in needed and not args.web_url:
        database = stack.database(args.postgres_admin_url)
        endpoints.web, endpoints.pids["web"] = stack.web(
            endpoints.torchserve_http, database, args.web_workers, args.dataset
        )
    return endpoints


def failed(points: list[report.Point]) -> list[str]:
    """Why a smoke (or soak) run fails: any failed request, or a scenario that sent nothing."""
    problems = []
    for p in points:
        if p.total.requests == 0:
            problems.append(f"{p.scenario} @ {p.users} users: no requests were made")
        if p.total.failures:
            problems.append(f"{p.scenario} @ {p.users} users: {p.total.failures} failed request(s)")
        raised = sum(count for name, _, count in p.failures if name.startswith(USER_ERROR))
        if raised:
            problems.append(f"{p.scenario} @ {p.users} users: task code raised {raised} time(s)")
    return problems


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on_signal)
    if args.home:
        os.environ["MOVIEREC_HOME"] = str(args.home.resolve())  # servers and Locust see it too
    from benchmarks.load_baseline import measure_all
    from training.config import Paths
    from training.serving.torchserve_grpc import generate_stubs

    paths = Paths(args.home)
    scenarios = [SCENARIOS[name] for name in args.scenarios.split(",")]
    folder = args.out / "locust" / args.mode
    folder.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="movierec-load-"))
    try:
        profiles_file = write_profiles(paths.prepared(args.dataset), work / "profiles.json")
        profiles = json.loads(profiles_file.read_text(encoding="utf-8"))
        if "torchserve_grpc" in args.scenarios:
            generate_stubs()  # once, before several Locust processes would race to build them
        log.info("measuring the in-process baseline")
        model_store = args.model_store or paths.model_store
        baselines = measure_all(model_store, paths.checkpoints, profiles, BASELINE_CALLS[args.mode])
        options = {"profiles": profiles_file, "processes": args.processes,
                   "reset_stats": args.mode == "bench",
                   "loopback_trips": LOOPBACK_TRIPS[args.mode],
                   "warmup_s": WARMUP_SECONDS if args.mode == "bench" else 0.0}  # fmt: skip
        samples = []
        with LoadStack(paths, work) as stack:
            endpoints = start_servers(stack, args, scenarios)
            options["server_pids"] = endpoints.pids
            if args.mode == "soak":
                points, samples = run_soak(
                    endpoints, folder, options, args.duration, args.soak_users
                )
            else:
                points = run_points(scenarios, user_counts(args, scenarios), args.duration,
                                    endpoints, folder, options)  # fmt: skip
        write_outputs(args, folder, endpoints, points, baselines, samples)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    problems = failed(points)
    if problems and args.mode in ("smoke", "soak"):
        for problem in problems:
            log.error(problem)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
