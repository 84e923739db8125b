"""Reading a load run's Locust output and writing its Markdown report and PNG plots.

Figures come from the run records ``locust_common`` writes beside Locust's CSVs (every request,
percentiles to 10 us); Locust's ``<prefix>_stats.csv`` (whole milliseconds below 100 ms,
refreshed once a second) is the fallback for a locustfile without them.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

AGGREGATED = "Aggregated"
RECORD_GLOB = "_record_*.json"
QUANTILES = (0.50, 0.95, 0.99)
TOP_FAILURES = 5
MS_DIGITS = 2


@dataclass(frozen=True)
class Entry:
    """One request name (or the aggregate) at one load point."""

    name: str
    requests: int
    failures: int
    rps: float
    p50: float
    p95: float
    p99: float

    @property
    def failure_share(self) -> float:
        return self.failures / self.requests if self.requests else 0.0


@dataclass
class Point:
    scenario: str
    users: int
    seconds: float
    load_avg: float  # the machine's 1-minute load average when the point started
    entries: dict[str, Entry]
    failures: list[tuple[str, str, int]] = field(default_factory=list)  # name, message, count
    # CPU cores busy on average while the point ran: the load generator and the servers share
    # one machine, so these say who the throughput was spent on (nan: not measured).
    locust_cores: float = math.nan
    server_cores: float = math.nan
    # The machine's loopback TCP round trip just before the point (benchmarks/loopback_baseline):
    # server figures follow it while the in-process forward stays put.
    loopback_us: float = math.nan

    @property
    def total(self) -> Entry:
        return self.entries[AGGREGATED]


@dataclass
class Merged:
    """One request name over every Locust process of a point (their ``_record_<pid>.json``)."""

    requests: int = 0
    failures: int = 0
    first: float = math.inf
    last: float = -math.inf
    histogram: dict[int, int] = field(default_factory=dict)

    def add(self, entry: dict) -> None:
        self.requests += entry["requests"]
        self.failures += entry["failures"]
        self.first = min(self.first, entry["first"])
        self.last = max(self.last, entry["last"])
        for bucket, count in entry["histogram"].items():
            self.histogram[int(bucket)] = self.histogram.get(int(bucket), 0) + count

    def entry(self, name: str, per_ms: int, seconds: float) -> Entry:
        span = self.last - self.first
        # A name seen for a moment (or once) is rated over the whole run instead.
        rps = self.requests / (span if span > seconds / 2 else seconds)
        cuts = (quantile_ms(self.histogram, per_ms, q) for q in QUANTILES)
        return Entry(name, self.requests, self.failures, rps, *cuts)


def read_records(prefix: Path) -> tuple[dict[str, Merged], list[tuple[str, str, int]], int]:
    merged: dict[str, Merged] = {}
    errors: dict[tuple[str, str], int] = {}
    per_ms = 1
    for path in sorted(prefix.parent.glob(prefix.name + RECORD_GLOB)):
        data = json.loads(path.read_text(encoding="utf-8"))
        per_ms = data["buckets_per_ms"]
        for name, entry in data["names"].items():
            merged.setdefault(name, Merged()).add(entry)
        for name, message, count in data["errors"]:
            errors[(name, message)] = errors.get((name, message), 0) + count
    failures = sorted(((n, m, c) for (n, m), c in errors.items()), key=lambda row: -row[2])
    return merged, failures, per_ms


def quantile_ms(histogram: dict[int, int], per_ms: int, q: float) -> float:
    total = sum(histogram.values())
    rank = max(1, math.ceil(q * total))
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= rank:
            return bucket / per_ms
    return math.nan


def read_point(prefix: Path, scenario: str, users: int, seconds: float, load_avg: float) -> Point:
    """The run record when Locust wrote one (our locustfiles do), else Locust's CSVs."""
    merged, failures, per_ms = read_records(prefix)
    if merged:
        entries = {name: m.entry(name, per_ms, seconds) for name, m in merged.items()}
    else:
        entries, failures = read_stats_csv(prefix), read_failures(prefix)
    if AGGREGATED not in entries:
        entries[AGGREGATED] = Entry(AGGREGATED, 0, 0, 0.0, math.nan, math.nan, math.nan)
    return Point(scenario, users, seconds, load_avg, entries, failures)


def read_stats_csv(prefix: Path) -> dict[str, Entry]:
    stats_file = Path(f"{prefix}_stats.csv")
    if not stats_file.is_file():
        raise FileNotFoundError(f"{stats_file}: Locust wrote no statistics (see its log)")
    entries = {}
    with stats_file.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            name = AGGREGATED if row["Name"] == AGGREGATED else f"{row['Type']} {row['Name']}"
            p50, p95, p99 = (float(row[f"{round(q * 100)}%"] or "nan") for q in QUANTILES)
            entries[name] = Entry(
                name, int(row["Request Count"]), int(row["Failure Count"]),
                float(row["Requests/s"]), p50, p95, p99,
            )  # fmt: skip
    return entries


def read_failures(prefix: Path) -> list[tuple[str, str, int]]:
    path = Path(f"{prefix}_failures.csv")
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        rows = [
            (f"{row['Method']} {row['Name']}", row["Error"], int(row["Occurrences"]))
            for row in csv.DictReader(handle)
        ]
    return sorted(rows, key=lambda row: -row[2])


# -- Markdown -----------------------------------------------------------------------------------
def ms(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.{MS_DIGITS}f}"


def machine_line() -> str:
    one, five, _ = os.getloadavg()
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, load average "
        f"{one:.1f} (1 min) / {five:.1f} (5 min) at the end of the run"
    )


def us(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.0f}"


def cores(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.2f}"


def summary_table(points: list[Point]) -> list[str]:
    lines = [
        "| scenario | users | req/s | p50 ms | p95 ms | p99 ms | requests | failures "
        "| load avg | loopback µs | Locust cores | server cores |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in points:
        t = p.total
        lines.append(
            f"| {p.scenario} | {p.users} | {t.rps:.0f} | {ms(t.p50)} | {ms(t.p95)} | {ms(t.p99)} "
            f"| {t.requests} | {t.failures} ({t.failure_share:.1%}) | {p.load_avg:.1f} "
            f"| {us(p.loopback_us)} | {cores(p.locust_cores)} | {cores(p.server_cores)} |"
        )
    return lines


def entries_table(points: list[Point]) -> list[str]:
    lines = [
        "| scenario | users | request | req/s | p50 ms | p95 ms | p99 ms | failures |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for p in points:
        for name, e in sorted(p.entries.items()):
            if name != AGGREGATED:
                lines.append(
                    f"| {p.scenario} | {p.users} | `{name}` | {e.rps:.1f} | {ms(e.p50)} "
                    f"| {ms(e.p95)} | {ms(e.p99)} | {e.failures} |"
                )
    return lines


def failures_section(points: list[Point]) -> list[str]:
    lines = []
    for p in points:
        for name, message, count in p.failures[:TOP_FAILURES]:
            lines.append(f"- {p.scenario} @ {p.users} users: `{name}` ×{count}: {message[:200]}")
    return lines or ["None."]


def plain_log_labels(axis) -> None:
    """Log axes labelled 5, 10, 20 rather than 5x10^0: these are read off, not admired."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.yaxis.set_minor_formatter(NullFormatter())


def write_plots(points: list[Point], out: Path, stem: str) -> list[Path]:
    """Latency percentiles and throughput against users, one line (or panel) per scenario."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = list(dict.fromkeys(p.scenario for p in points))
    latency_file, throughput_file = out / f"{stem}_latency.png", out / f"{stem}_throughput.png"
    fig, axes = plt.subplots(1, len(scenarios), figsize=(4 * len(scenarios), 3.6), squeeze=False)
    for axis, scenario in zip(axes[0], scenarios, strict=True):
        mine = sorted((p for p in points if p.scenario == scenario), key=lambda p: p.users)
        users = [p.users for p in mine]
        for label in ("p50", "p95", "p99"):
            axis.plot(users, [getattr(p.total, label) for p in mine], marker="o", label=label)
        axis.set(title=scenario, xlabel="users", ylabel="latency (ms)", xscale="log", yscale="log")
        axis.set_xticks(users, [str(u) for u in users])
        plain_log_labels(axis)
        axis.grid(alpha=0.3)
        axis.legend()
    fig.tight_layout()
    fig.savefig(latency_file, dpi=110)
    plt.close(fig)
    fig, axis = plt.subplots(figsize=(6, 4))
    for scenario in scenarios:
        mine = sorted((p for p in points if p.scenario == scenario), key=lambda p: p.users)
        axis.plot([p.users for p in mine], [p.total.rps for p in mine], marker="o", label=scenario)
    axis.set(title="Throughput", xlabel="users", ylabel="requests/s", xscale="log", yscale="log")
    plain_log_labels(axis)
    all_users = sorted({p.users for p in points})
    axis.set_xticks(all_users, [str(u) for u in all_users])
    axis.grid(alpha=0.3)
    axis.legend()
    fig.tight_layout()
    fig.savefig(throughput_file, dpi=110)
    plt.close(fig)
    return [latency_file, throughput_file]


def _change(before: float, after: float) -> str:
    return f"{(after - before) / before:+.1%}"


def rss_table(samples: list[tuple[float, dict[str, float]]]) -> list[str]:
    """RSS idle (before any request), warm (the next sample) and at the end, per process and
    per server; growth after the warm-up is what a leak looks like."""
    idle, warm, end = samples[0][1], samples[min(1, len(samples) - 1)][1], samples[-1][1]
    lines = [
        f"Idle: before the first request; warm: {samples[min(1, len(samples) - 1)][0]:.0f} s in; "
        "end: as the load stops.",
        "",
        "| process | idle MiB | warm MiB | end MiB | idle → end | warm → end |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    totals: dict[str, list[float]] = {}
    for name in sorted(set(idle) | set(end)):
        sizes = [idle.get(name), warm.get(name), end.get(name)]
        if None in sizes:
            shown = " | ".join("–" if size is None else f"{size:.0f}" for size in sizes)
            lines.append(f"| {name} | {shown} | (came or went) | |")
            continue
        a, b, c = sizes
        lines.append(
            f"| {name} | {a:.0f} | {b:.0f} | {c:.0f} | {_change(a, c)} | {_change(b, c)} |"
        )
        server = totals.setdefault(name.split("/")[0], [0.0, 0.0, 0.0])
        for index, size in enumerate(sizes):
            server[index] += size
    for server, (a, b, c) in totals.items():
        lines.append(
            f"| **{server} (all)** | {a:.0f} | {b:.0f} | {c:.0f} | {_change(a, c)} "
            f"| {_change(b, c)} |"
        )
    return lines


def write_rss_plot(samples: list[tuple[float, dict[str, float]]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(7, 4))
    names = sorted({name for _, sizes in samples for name in sizes})
    for name in names:
        points = [(t, sizes[name]) for t, sizes in samples if name in sizes]
        axis.plot([t for t, _ in points], [mb for _, mb in points], label=name)
    axis.set(title="RSS during the soak", xlabel="seconds", ylabel="RSS (MiB)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize="x-small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
