"""Triton gRPC latency and throughput, next to in-process onnxruntime on the same graph.

    .venv/bin/python -m benchmarks.triton_bench                 # own tritonserver on free ports
    .venv/bin/python -m benchmarks.triton_bench --url 127.0.0.1:8001 --repo triton_repo

Sequential batch-1 latency (p50/p95/p99) of: onnxruntime in-process, Triton returning every score,
Triton returning only the in-graph top-k; then the throughput of N concurrent clients (separate
processes, each with its own gRPC channel: Python threads would measure the GIL, not Triton) and
of one asyncio client with N requests in flight.
Requests cycle through real users' training ratings. Prints the figures and writes
``benchmarks/results/triton_bench.md``. A figure, not a test: nothing here asserts on timings.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from training.config import Paths, load_params
from training.serving import triton_names as tn

RESULTS = Path(__file__).resolve().parent / "results"
WARMUP_REQUESTS = 200
SEQUENTIAL_REQUESTS = 2000
SAMPLE_USERS = 200
PERCENTILES = (50, 95, 99)
CLIENTS = 8
THROUGHPUT_SECONDS = 12.0  # per variant, split into ROUNDS
ROUNDS = 3
TARGET_P50_MS = 1.2
TARGET_RPS = 3000


def user_rows(prepared_folder: Path) -> np.ndarray:
    from training.data.preprocess import load_prepared

    return load_prepared(prepared_folder).train[:SAMPLE_USERS].numpy()


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(samples_ms, n=100, method="inclusive")
    return {f"p{p}": cuts[p - 1] for p in PERCENTILES}


def timed(call: Callable[[np.ndarray], object], rows: np.ndarray, n: int) -> dict[str, float]:
    for i in range(WARMUP_REQUESTS):
        call(rows[i % len(rows)][None])
    samples = []
    for i in range(n):
        row = rows[i % len(rows)][None]
        started = time.perf_counter()
        call(row)
        samples.append((time.perf_counter() - started) * 1000.0)
    return percentiles(samples)


def _client_worker(
    url: str,
    model: str,
    outputs: tuple[str, ...],
    rows: np.ndarray,
    start_at: float,
    seconds: float,
    counts,
) -> None:
    from training.serving.triton_client import TritonClient

    with TritonClient(url) as client:
        for i in range(20):
            client.infer(model, rows[i % len(rows)][None], outputs=outputs)
        while time.time() < start_at:
            time.sleep(0.001)
        done, i = 0, 0
        while time.time() < start_at + seconds:
            client.infer(model, rows[i % len(rows)][None], outputs=outputs)
            done, i = done + 1, i + 1
        counts.put(done)


def throughput(
    url: str, model: str, outputs: tuple[str, ...], rows: np.ndarray, clients: int, seconds: float
) -> float:
    context = multiprocessing.get_context("spawn")
    counts = context.Queue()
    start_at = time.time() + 3.0  # every worker imports and warms up first
    workers = [
        context.Process(
            target=_client_worker, args=(url, model, outputs, rows, start_at, seconds, counts)
        )
        for _ in range(clients)
    ]
    for worker in workers:
        worker.start()
    total = sum(counts.get(timeout=seconds + 60) for _ in workers)
    for worker in workers:
        worker.join()
    return total / seconds


def async_throughput(
    url: str, model: str, outputs: tuple[str, ...], rows: np.ndarray, in_flight: int, seconds: float
) -> float:
    """One asyncio client keeping ``in_flight`` requests outstanding, as an async web app."""
    import asyncio

    from training.serving.triton_client import AsyncTritonClient

    async def measure() -> float:
        async with AsyncTritonClient(url) as client:
            done = 0
            deadline = time.perf_counter() + seconds

            async def caller(offset: int) -> None:
                nonlocal done
                i = offset
                while time.perf_counter() < deadline:
                    await client.infer(model, rows[i % len(rows)][None], outputs=outputs)
                    done, i = done + 1, i + in_flight

            await asyncio.gather(*(caller(k) for k in range(in_flight)))
            return done / seconds

    return asyncio.run(measure())


def batch_stats(url: str, model: str) -> str:
    from training.serving.triton_client import TritonClient

    with TritonClient(url) as client:
        stats = client.statistics(model)["batch_stats"]
    sizes = {int(s["batch_size"]): int(s["compute_infer"]["count"]) for s in stats}
    return ", ".join(f"{size}x{count}" for size, count in sorted(sizes.items()))


def run(url: str, repo: Path, model: str, rows: np.ndarray, args) -> dict:
    import onnxruntime as ort

    from training.serving.triton_client import TOP_K_OUTPUTS, TritonClient

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # as the server's CPU config
    session = ort.InferenceSession(
        str(repo / model / tn.MODEL_VERSION / tn.cpu_onnx_filename(model)),  # as served
        options,
        providers=["CPUExecutionProvider"],
    )
    scores_only = [tn.SCORES.name]
    figures: dict = {"model": model, "clients": args.clients, "load": os.getloadavg()[0]}
    figures["onnxruntime in-process (scores)"] = timed(
        lambda x: session.run(scores_only, {tn.RATINGS.name: x}), rows, args.requests
    )
    with TritonClient(url) as client:
        figures["triton gRPC, scores"] = timed(
            lambda x: client.infer(model, x, outputs=(tn.SCORES.name,)), rows, args.requests
        )
        figures["triton gRPC, top-k only"] = timed(
            lambda x: client.infer(model, x, outputs=TOP_K_OUTPUTS), rows, args.requests
        )
    # Alternate the variants in short rounds and keep medians: on a shared machine, load that
    # comes and goes then hits every variant alike.
    samples: dict[str, list[float]] = {}
    seconds = args.seconds / ROUNDS
    for _ in range(ROUNDS):
        for label, outputs in (("scores", (tn.SCORES.name,)), ("top-k only", TOP_K_OUTPUTS)):
            samples.setdefault(f"rps {label}", []).append(
                throughput(url, model, outputs, rows, args.clients, seconds)
            )
            samples.setdefault(f"rps asyncio {label}", []).append(
                async_throughput(url, model, outputs, rows, args.clients, seconds)
            )
    figures.update({label: statistics.median(values) for label, values in samples.items()})
    figures["batches (size x count)"] = batch_stats(url, model)
    figures["load"] = max(figures["load"], os.getloadavg()[0])
    return figures


def report(figures: dict, device: str) -> str:
    lines = [
        f"# Triton benchmark ({figures['model']}), {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {device}. Server: bundled tritonserver {tn.TRITON_SERVER_VERSION}, CPU configs "
        f"(Python-based onnxruntime backend, 1 instance, dynamic batching, queue delay "
        f"{tn.CPU_MAX_QUEUE_DELAY_US} us). Requests: one user's ratings (batch 1). "
        f"Load average during the run: up to {figures['load']:.1f} "
        "(other work on the machine skews figures).",
        "",
        "| sequential, batch 1 | p50 ms | p95 ms | p99 ms |",
        "|---|---|---|---|",
    ]
    for label, value in figures.items():
        if isinstance(value, dict):
            cells = " | ".join(f"{value[f'p{p}']:.3f}" for p in PERCENTILES)
            lines.append(f"| {label} | {cells} |")
    lines += [
        "",
        f"| {figures['clients']} concurrent requests | {figures['clients']} client processes, "
        "req/s | one asyncio client, req/s |",
        "|---|---|---|",
        f"| scores | {figures['rps scores']:.0f} | {figures['rps asyncio scores']:.0f} |",
        f"| top-k only | {figures['rps top-k only']:.0f} | "
        f"{figures['rps asyncio top-k only']:.0f} |",
        "",
        f"Batches the server ran (size x count): {figures['batches (size x count)']}.",
        f"Targets: p50 <= {TARGET_P50_MS} ms, >= {TARGET_RPS} req/s with {CLIENTS} clients.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="host:port of a running Triton gRPC endpoint")
    parser.add_argument(
        "--repo",
        type=Path,
        default=Paths().triton_repo,
        help="model repository holding the exported graphs",
    )
    parser.add_argument("--model", default=tn.SAE, choices=tn.SCORING_MODELS)
    parser.add_argument("--requests", type=int, default=SEQUENTIAL_REQUESTS)
    parser.add_argument("--clients", type=int, default=CLIENTS)
    parser.add_argument("--seconds", type=float, default=THROUGHPUT_SECONDS)
    parser.add_argument("--output", type=Path, default=RESULTS / "triton_bench.md")
    args = parser.parse_args()

    import platform

    import psutil

    rows = user_rows(Paths().prepared(load_params().data.dataset))
    device = f"{platform.processor() or platform.machine()}, {psutil.cpu_count()} CPUs"
    server = None
    url = args.url
    if url is None:
        from training.serving.triton_server import start_triton

        server = start_triton(args.repo, Path(tempfile.mkdtemp(prefix="triton-bench-")))
        url = server.grpc_url
    try:
        figures = run(url, args.repo, args.model, rows, args)
    finally:
        if server is not None:
            server.stop()
    text = report(figures, device)
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(f"written {args.output}")


if __name__ == "__main__":
    main()
