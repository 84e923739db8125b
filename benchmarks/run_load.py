"""Load tests: start what is needed, run each Locust scenario headless, report the figures.

    .venv/bin/python benchmarks/run_load.py            # = --bench: every scenario at 1, 8, 32 users
    .venv/bin/python benchmarks/run_load.py --smoke    # a few seconds each, exit 1 on any failure
    .venv/bin/python benchmarks/run_load.py --soak     # 50 users, 5 min, TorchServe + web, RSS

Locust runs as a subprocess (``python -m locust``), one per scenario and user count, writing its
CSVs under ``<out>/locust/<mode>/``. Servers (TorchServe, Triton, the web app on a throw-away
database) start on free ports unless given by address, and are stopped on every exit path
(SIGTERM and Ctrl-C included). The in-process model is measured in the same run, so the report
(``load_report.md`` + PNG plots, or ``load_smoke.md`` / ``soak_report.md``) shows ratios.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import load_report as report  # noqa: E402
from load_servers import (  # noqa: E402
    DEFAULT_POSTGRES_ADMIN_URL,
    Endpoints,
    LoadStack,
    cpu_seconds,
    rss_by_process,
)
from loopback_baseline import measure_round_trip  # noqa: E402
from profiles import DEFAULT_DATASET, write_profiles  # noqa: E402

from web.server import DEFAULT_WORKERS as WEB_WORKERS  # noqa: E402

log = logging.getLogger("load")

RESULTS = BENCH_DIR / "results"
USER_ERROR = "exception in"  # how locust_common names errors raised by task code
BENCH_SECONDS = 20.0
# Before a scenario's measured points (bench only): load at its largest user count, discarded.
# TorchServe's JVM compiles its hot paths over the first thousands of requests, and the
# workers' caches fill; without it the first point (1 user) measures the warm-up.
WARMUP_SECONDS = 15.0
SMOKE_SECONDS = 5.0
SMOKE_USERS = 2
SOAK_SECONDS = 300.0
SOAK_USERS = 50
SOAK_SCENARIOS = ("torchserve_http", "web")  # the soak's users are split evenly between these
SOAK_THINK_MS = 100.0  # direct TorchServe clients pause between calls: a soak, not a stress test
SOAK_SAMPLE_S = 15.0  # RSS sampling period
BASELINE_CALLS = {"bench": 3000, "smoke": 300, "soak": 1000}
# Loopback round trips before each point (~0.4 s for 5,000); the soak's two scenarios start
# together, so it has none.
LOOPBACK_TRIPS = {"bench": 5000, "smoke": 1000, "soak": 0}
LOCUST_STOP_TIMEOUT_S = 5  # users finish their current request when the time is up
LOCUST_GRACE_S = 30.0  # start-up, stop and CSV writing on a loaded machine
TERMINATE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Scenario:
    name: str
    locustfile: str
    endpoint: str  # the Endpoints field it loads
    key_request: str  # the request compared with the in-process model ("<type> <name>")
    bench_users: tuple[int, ...]


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("torchserve_http", "locust_torchserve_http.py", "torchserve_http", "POST sae",
                 (1, 8, 32)),
        Scenario("torchserve_grpc", "locust_torchserve_grpc.py", "torchserve_grpc", "grpc sae",
                 (1, 8, 32)),
        Scenario("triton_grpc", "locust_triton_grpc.py", "triton_grpc", "grpc sae", (1, 8, 32)),
        # 20 users: the point the web target (recommendations page p95) is set at.
        Scenario("web", "locust_web.py", "web", "GET /recommendations", (1, 8, 20, 32)),
    )
}  # fmt: skip


@dataclass(frozen=True)
class Target:
    """An issue target: ``stat`` of ``request`` at ``users`` (None = best over user counts)."""

    label: str
    scenario: str
    request: str
    stat: str  # p50, p95 or rps
    limit: float
    users: int | None = None

    def measured(self, points: list[report.Point]) -> float | None:
        mine = [p for p in points if p.scenario == self.scenario and self.request in p.entries]
        if self.users is not None:
            mine = [p for p in mine if p.users == self.users]
        values = [getattr(p.entries[self.request], self.stat) for p in mine]
        if not values:
            return None
        return max(values) if self.stat == "rps" else min(values)

    def met(self, value: float) -> bool:
        return value >= self.limit if self.stat == "rps" else value <= self.limit


TARGETS = (
    Target("TorchServe HTTP p50, SAE, 1 user (ms)", "torchserve_http", "POST sae", "p50", 2.0, 1),
    Target("TorchServe HTTP throughput (req/s)", "torchserve_http", report.AGGREGATED, "rps", 1000),
    Target("TorchServe gRPC p50, SAE, 1 user (ms)", "torchserve_grpc", "grpc sae", "p50", 2.0, 1),
    Target("TorchServe gRPC throughput (req/s)", "torchserve_grpc", report.AGGREGATED, "rps", 1000),
    Target("Triton gRPC p50, SAE, 1 user (ms)", "triton_grpc", "grpc sae", "p50", 1.2, 1),
    Target("Triton gRPC throughput (req/s)", "triton_grpc", report.AGGREGATED, "rps", 3000),
    Target("web recommendations page p95, 20 users (ms)", "web", "GET /recommendations", "p95",
           50.0, 20),
)  # fmt: skip


# -- Locust as a subprocess ----------------------------------------------------------------------
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


# -- modes ---------------------------------------------------------------------------------------
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


# -- reports -------------------------------------------------------------------------------------
def ratio_table(points: list[report.Point], baselines: dict) -> list[str]:
    """The key request of each point against the in-process SAE (same TorchScript, 1 thread)."""
    sae = baselines["sae"]
    lines = [
        "| scenario | users | request | p50 ms | p50 ÷ in-process p50 | req/s (all requests) "
        "| req/s ÷ in-process req/s |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for p in points:
        key = SCENARIOS[p.scenario].key_request
        entry = p.entries.get(key)
        if entry is None:
            continue
        lines.append(
            f"| {p.scenario} | {p.users} | `{key}` | {report.ms(entry.p50)} "
            f"| {entry.p50 / sae.p50_ms:.0f}× | {p.total.rps:.0f} | {p.total.rps / sae.rps:.3f}× |"
        )
    return lines


def targets_table(points: list[report.Point]) -> list[str]:
    lines = ["| target | limit | measured | met |", "|---|---:|---:|:---:|"]
    for target in TARGETS:
        value = target.measured(points)
        if value is None:
            continue
        sign = "≥" if target.stat == "rps" else "≤"
        lines.append(
            f"| {target.label} | {sign} {target.limit:g} | {value:.2f} "
            f"| {'yes' if target.met(value) else 'no'} |"
        )
    return lines


def baseline_table(baselines: dict) -> list[str]:
    lines = ["| model | p50 ms | p95 ms | p99 ms | req/s (1 thread) |", "|---|---:|---:|---:|---:|"]
    for b in baselines.values():
        lines.append(f"| {b.model} | {b.p50_ms:.3f} | {b.p95_ms:.3f} | {b.p99_ms:.3f} "
                     f"| {b.rps:.0f} |")  # fmt: skip
    return lines


def header(title: str, args: argparse.Namespace, extra: str) -> list[str]:
    from importlib.metadata import version

    # Never `import locust` here: it monkey-patches the whole process (ssl, sockets).
    return [
        f"# {title}",
        "",
        f"{report.machine_line()}; Locust {version('locust')}"
        f"{f' with {args.processes} processes' if args.processes else ''}. {extra}",
        "",
        "Figures count every request and give percentiles to 10 µs (Locust's CSVs, kept beside",
        "this report, round to whole ms below 100 ms). The in-process figures are the same",
        "TorchScript model on one thread, batch 1, forward + top-k, no server: the floor every",
        "server adds to.",
        "",
        *served_models(args),
    ]


def served_models(args: argparse.Namespace) -> list[str]:
    """Which archives were measured: models get retrained, and figures follow their size."""
    from training.config import Paths

    store = args.model_store or Paths(args.home).model_store
    archives = sorted(store.glob("*.mar"))
    if not archives:
        return []
    sizes = ", ".join(f"{a.name} {a.stat().st_size / 1e6:.1f} MB" for a in archives)
    built = datetime.fromtimestamp(max(a.stat().st_mtime for a in archives), UTC)
    return [f"Archives in `{store}`: {sizes} (built {built:%Y-%m-%d %H:%M} UTC).", ""]


LOOPBACK_NOTE = (
    '"loopback µs": a TCP round trip between two processes on this machine just before the '
    f"point (p50 of {LOOPBACK_TRIPS['bench']:,}, one byte each way). Every served request "
    "pays such wake-ups several times over; when they slow down, so do the servers, while the "
    "in-process forward does not."
)


def bench_report(args, points, baselines, plots: list[Path]) -> str:
    lines = header(
        "Load test: TorchServe, Triton and the web app",
        args,
        f"{args.duration:g} s per point after ramp-up; model-server clients send back to back, "
        "web visitors think 0.1-0.5 s between clicks.",
    )
    lines += ["## In-process baseline", "", *baseline_table(baselines), ""]
    lines += ["## Targets (set for a quiet machine)", "", *targets_table(points), ""]
    lines += ["## Every point", "", LOOPBACK_NOTE, "", *report.summary_table(points), ""]
    lines += ["## Against the in-process model", "", *ratio_table(points, baselines), ""]
    lines += ["## By request", "", *report.entries_table(points), ""]
    lines += ["## Failures", "", *report.failures_section(points), ""]
    lines += ["## Plots", "", *(f"![{p.stem}]({p.name})" for p in plots), ""]
    return "\n".join(lines)


def smoke_report(args, points) -> str:
    lines = header(
        "Load smoke test", args, f"{args.duration:g} s per scenario, {SMOKE_USERS} users."
    )
    lines += [*report.summary_table(points), "", "## Failures", ""]
    return "\n".join([*lines, *report.failures_section(points), ""])


def soak_report(args, points, samples, baselines, plot: Path) -> str:
    lines = header(
        "Soak test: TorchServe + web",
        args,
        f"{args.soak_users} users for {args.duration:g} s, split between "
        f"{' and '.join(SOAK_SCENARIOS)}; direct TorchServe clients pause {SOAK_THINK_MS:g} ms. "
        "The two Locust processes ran at once: their cores and the server cores are shared.",
    )
    lines += [*report.summary_table(points), ""]
    lines += ["## Against the in-process model", "", *ratio_table(points, baselines), ""]
    lines += ["## RSS of every server process (target: flat)", "", *report.rss_table(samples)]
    lines += ["", "## Failures", "", *report.failures_section(points), ""]
    lines += [f"![RSS]({plot.name})", ""]
    return "\n".join(lines)


# -- driver --------------------------------------------------------------------------------------
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


def write_outputs(args, folder: Path, endpoints: Endpoints, points, baselines, samples) -> Path:
    """``run.json`` beside the CSVs, then the mode's Markdown report (and plots); printed too."""
    run_record = {
        "mode": args.mode,
        "servers_started": endpoints.pids,
        "points": [
            {
                "scenario": p.scenario,
                "users": p.users,
                **asdict(p.total),
                "loopback_us": None if math.isnan(p.loopback_us) else round(p.loopback_us, 1),
            }
            for p in points
        ],
        "rss_mib": [{"seconds": t, **sizes} for t, sizes in samples],
    }
    (folder / "run.json").write_text(json.dumps(run_record, indent=2), encoding="utf-8")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.mode == "bench":
        plots = report.write_plots(points, args.out, "load")
        text = bench_report(args, points, baselines, plots)
        target = args.out / "load_report.md"
    elif args.mode == "smoke":
        text, target = smoke_report(args, points), args.out / "load_smoke.md"
    else:
        plot = report.write_rss_plot(samples, args.out / "soak_rss.png")
        text = soak_report(args, points, samples, baselines, plot)
        target = args.out / "soak_report.md"
    target.write_text(text, encoding="utf-8")
    print(text)
    log.info("report: %s", target)
    return target


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on_signal)
    if args.home:
        os.environ["MOVIEREC_HOME"] = str(args.home.resolve())  # servers and Locust see it too
    from load_baseline import measure_all

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
