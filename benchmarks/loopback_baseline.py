"""The machine's second baseline: a loopback TCP round trip between two processes.

The in-process forward measures the CPU's speed; a served request also pays for the kernel
waking processes and threads and passing bytes between them (Locust, the server's frontend,
its workers or stubs). On this VM that second cost moves on its own: within 20 minutes, sixteen
10 s runs of the same Triton scenario made 2,216-3,058 req/s, fewer the slower the round trip
(52-75 µs, correlation -0.69), while the forward stayed put (docs/benchmarks.md). Measured
right before each load point, it tells a slow moment of the machine from a slow server. It reads
lower while the other core is busy: an idle core must first be woken.
"""

from __future__ import annotations

import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

LOOPBACK = "127.0.0.1"
MESSAGE = b"x"
WARMUP_TRIPS = 200
MIN_TRIPS = 2  # statistics.quantiles needs two samples
CONNECT_TIMEOUT_S = 10.0
PEER_EXIT_TIMEOUT_S = 5.0
# The echo peer: its own interpreter (not a fork of a process holding torch's threads).
ECHO_PEER = """
import socket, sys
peer = socket.create_connection((sys.argv[1], int(sys.argv[2])))
peer.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
while data := peer.recv(64):
    peer.sendall(data)
"""


@dataclass(frozen=True)
class RoundTrip:
    trips: int
    p50_us: float
    p90_us: float


def measure_round_trip(trips: int) -> RoundTrip:
    """Send one byte to an echo process and wait for it, ``trips`` times; percentiles in µs."""
    if trips < MIN_TRIPS:
        raise ValueError(
            f"trips must be positive ({MIN_TRIPS} or more for percentiles), got {trips}"
        )
    with socket.create_server((LOOPBACK, 0)) as listener:
        listener.settimeout(CONNECT_TIMEOUT_S)
        port = listener.getsockname()[1]
        peer = subprocess.Popen([sys.executable, "-c", ECHO_PEER, LOOPBACK, str(port)])
        try:
            connection, _ = listener.accept()
            with connection:
                connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                samples = _trips(connection, WARMUP_TRIPS + trips)[WARMUP_TRIPS:]
        finally:
            _stop(peer)
    # The percentile method of the other baselines (load_baseline.percentiles_ms).
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return RoundTrip(trips, cuts[49], cuts[89])


def _stop(peer: subprocess.Popen) -> None:
    """The closed connection ends the peer's loop; a peer that never connected is killed."""
    try:
        peer.wait(timeout=PEER_EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        peer.kill()
        peer.wait()


def _trips(connection: socket.socket, count: int) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        connection.sendall(MESSAGE)
        if not connection.recv(len(MESSAGE)):
            raise ConnectionError("the echo process closed the connection")
        samples.append((time.perf_counter() - started) * 1e6)
    return samples
