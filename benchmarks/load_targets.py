"""What a load run measures and holds it to: the Locust scenarios (locustfile, endpoint, key
request, user counts), the issue's latency and throughput targets, and the bench and smoke
modes' durations, user counts and baseline sizes (the soak's are in ``load_soak``)."""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks import load_report as report

BENCH_SECONDS = 20.0
# Before a scenario's measured points (bench only): load at its largest user count, discarded.
# TorchServe's JVM compiles its hot paths over the first thousands of requests, and the
# workers' caches fill; without it the first point (1 user) measures the warm-up.
WARMUP_SECONDS = 15.0
SMOKE_SECONDS = 5.0
SMOKE_USERS = 2
BASELINE_CALLS = {"bench": 3000, "smoke": 300, "soak": 1000}
# Loopback round trips before each point (~0.4 s for 5,000); the soak's two scenarios start
# together, so it has none.
LOOPBACK_TRIPS = {"bench": 5000, "smoke": 1000, "soak": 0}


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
