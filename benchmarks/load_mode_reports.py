"""What a load run leaves behind: ``run.json`` beside Locust's CSVs, then its mode's Markdown
report (``load_report.md`` with PNG plots, ``load_smoke.md`` or ``soak_report.md`` with the RSS
plot), which shows the servers' figures next to the in-process model's and the targets."""

from __future__ import annotations

import argparse
import json
import logging
import math
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import load_report as report
from benchmarks.load_servers import Endpoints
from benchmarks.load_soak import SOAK_SCENARIOS, SOAK_THINK_MS
from benchmarks.load_targets import LOOPBACK_TRIPS, SCENARIOS, SMOKE_USERS, TARGETS

log = logging.getLogger("load")


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
