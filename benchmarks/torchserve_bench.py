"""TorchServe latency and throughput over HTTP, next to the in-process forward pass.

    .venv/bin/python -m benchmarks.torchserve_bench               # own server on free ports
    .venv/bin/python -m benchmarks.torchserve_bench --url http://127.0.0.1:8080 --pid <java pid>

Measures sequential batch-1 latency (p50/p95/p99), the throughput of N concurrent clients, the
in-process forward of the same model on the same requests, and the RSS of the frontend (Java)
and its workers. Prints the figures and writes ``benchmarks/results/torchserve_<label>.md``.
The client is http.client on keep-alive connections (requests costs more CPU than the server
on this 2-core machine). A figure, not a test: nothing here asserts on timings.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import psutil
import torch

from training.config import Paths
from training.export.torchserve import DEFAULTS

RESULTS = Path(__file__).resolve().parent / "results"
WARMUP_REQUESTS = 200
SAMPLE_USERS = 200  # requests cycle through these users' training ratings
PERCENTILES = (50, 95, 99)
K = 10


def payloads(prepared_folder: Path, explain: bool) -> list[bytes]:
    from training.data.preprocess import load_prepared

    prepared = load_prepared(prepared_folder)
    item_ids = prepared.metadata["item_ids"]
    bodies = []
    for row in prepared.train[:SAMPLE_USERS]:
        rated = row.nonzero().squeeze(1).tolist()
        ratings = {str(item_ids[c]): float(row[c]) for c in rated}
        bodies.append(json.dumps({"ratings": ratings, "k": K, "explain": explain}).encode())
    return bodies


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(samples_ms, n=100, method="inclusive")
    return {f"p{p}": cuts[p - 1] for p in PERCENTILES}


class Client:
    """One keep-alive HTTP connection posting JSON bodies."""

    def __init__(self, url: str, model: str) -> None:
        parsed = urlparse(url)
        self.connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
        self.path = f"/predictions/{model}"

    def post(self, body: bytes) -> None:
        self.connection.request("POST", self.path, body, {"Content-Type": "application/json"})
        response = self.connection.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {data[:200]!r}")


def sequential_latency(url: str, model: str, bodies: list[bytes], n: int) -> list[float]:
    client = Client(url, model)
    for i in range(WARMUP_REQUESTS):
        client.post(bodies[i % len(bodies)])
    samples = []
    for i in range(n):
        started = time.perf_counter()
        client.post(bodies[i % len(bodies)])
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def throughput(url: str, model: str, bodies: list[bytes], clients: int, seconds: float) -> float:
    counts = [0] * clients
    stop = threading.Event()

    def run(index: int) -> None:
        client = Client(url, model)
        i = index
        while not stop.is_set():
            client.post(bodies[i % len(bodies)])
            counts[index] += 1
            i += clients

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)  # ramp-up, not counted
    before, started = sum(counts), time.perf_counter()
    time.sleep(seconds)
    done, elapsed = sum(counts) - before, time.perf_counter() - started
    stop.set()
    for thread in threads:
        thread.join()
    return done / elapsed


def in_process_forward(checkpoint: Path, bodies: list[bytes], n: int) -> list[float]:
    """The same model in this process, batch 1 (TorchScript, 1 thread like a worker)."""
    from training.data.preprocess import load_prepared
    from training.export.torchserve import script_for_serving
    from training.models import load_checkpoint

    torch.set_num_threads(1)
    recommender = load_checkpoint(checkpoint)
    prepared = load_prepared(Paths().prepared(recommender.extra.get("dataset", "ml-100k")))
    rows = prepared.train[:SAMPLE_USERS]
    model = script_for_serving(recommender.model, rows[:4])
    samples = []
    with torch.inference_mode():
        for i in range(WARMUP_REQUESTS + n):
            started = time.perf_counter()
            model(rows[i % len(rows)].unsqueeze(0))
            if i >= WARMUP_REQUESTS:
                samples.append((time.perf_counter() - started) * 1000)
    return samples


def rss_mb(pid: int) -> dict[str, float]:
    frontend = psutil.Process(pid)
    workers = frontend.children(recursive=True)
    return {
        "frontend_mb": frontend.memory_info().rss / 2**20,
        "workers_mb": sum(w.memory_info().rss for w in workers) / 2**20,
        "n_workers": len(workers),
    }


def report(label: str, args: argparse.Namespace, figures: dict) -> str:
    lat, fwd, mem = figures["latency"], figures["forward"], figures["rss"]
    lines = [
        f"# TorchServe benchmark: {label}",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, model `{args.model}`, {psutil.cpu_count()} CPUs, "
        f"settings: {figures['settings']}, explain={args.explain}, k={K}.",
        "",
        "| measure | p50 | p95 | p99 |",
        "|---|---|---|---|",
        f"| HTTP batch-1 latency, sequential (ms) | {lat['p50']:.2f} | {lat['p95']:.2f} "
        f"| {lat['p99']:.2f} |",
        f"| in-process forward, batch 1 (ms) | {fwd['p50']:.3f} | {fwd['p95']:.3f} "
        f"| {fwd['p99']:.3f} |",
        "",
        f"Throughput with {args.clients} clients: **{figures['throughput']:.0f} req/s** "
        f"({args.seconds:.0f} s).",
        "",
        f"RSS: frontend (Java) {mem['frontend_mb']:.0f} MB + {mem['n_workers']} workers "
        f"{mem['workers_mb']:.0f} MB = {mem['frontend_mb'] + mem['workers_mb']:.0f} MB "
        f"({figures['loaded']}).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="sae", choices=("sae", "rbm", "hybrid"))
    parser.add_argument("--url", help="Inference URL of a running TorchServe (default: start one)")
    parser.add_argument("--pid", type=int, help="Its frontend pid (for the RSS figures)")
    parser.add_argument("--requests", type=int, default=3000, help="Sequential requests")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0, help="Throughput duration")
    parser.add_argument("--workers", type=int, default=DEFAULTS.workers)
    parser.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size)
    parser.add_argument("--max-batch-delay", type=int, default=DEFAULTS.max_batch_delay_ms)
    parser.add_argument("--explain", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--label", default="latest")
    args = parser.parse_args()

    paths = Paths()
    checkpoint = paths.checkpoints / f"{'sae' if args.model == 'hybrid' else args.model}.pt"
    bodies = payloads(paths.prepared("ml-100k"), args.explain)
    server = None
    settings = "external server"
    with tempfile.TemporaryDirectory(prefix="ts-bench-") as tmp:
        if args.url is None:
            from training.export.torchserve import ServingSettings, export_archives
            from training.serving.torchserve_server import Ports, start_torchserve

            serving = ServingSettings(args.workers, args.batch_size, args.max_batch_delay)
            settings = (f"{args.workers} workers, batch_size {args.batch_size}, "
                        f"max_batch_delay {args.max_batch_delay} ms")  # fmt: skip
            store = Path(tmp) / "store"
            export_archives(
                {m: paths.checkpoints / f"{m}.pt" for m in ("sae", "rbm")},
                paths.prepared("ml-100k"), store, (args.model,), settings=serving,
            )  # fmt: skip
            server = start_torchserve(store, Path(tmp) / "home", ports=Ports.free(),
                                      models=(args.model,))  # fmt: skip
            url, pid = server.inference_url, server.pid
        else:
            url, pid = args.url, args.pid
        try:
            latency = sequential_latency(url, args.model, bodies, args.requests)
            rate = throughput(url, args.model, bodies, args.clients, args.seconds)
            memory = rss_mb(pid) if pid else {"frontend_mb": 0, "workers_mb": 0, "n_workers": 0}
        finally:
            if server is not None:
                server.stop()
    forward = in_process_forward(checkpoint, bodies, args.requests)
    figures = {
        "settings": settings,
        "loaded": f"only {args.model} loaded" if server else "every model on that server",
        "latency": percentiles(latency),
        "forward": percentiles(forward),
        "throughput": rate,
        "rss": memory,
    }
    text = report(args.label, args, figures)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"torchserve_{args.label}.md").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
