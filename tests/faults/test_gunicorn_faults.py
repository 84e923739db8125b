"""One gunicorn worker SIGKILLed while the other serves a keep-alive connection: the master
replaces the dead one, and no request of the surviving worker fails."""

from __future__ import annotations

import http.client
import threading

import psutil
import pytest

from benchmarks.fault_stack import FAULTS
from training.serving.processes import LOOPBACK

pytestmark = pytest.mark.slow

TIMEOUT_S = 30
REQUESTS_AFTER = 20


def owner(workers: list[int], local_port: int) -> int | None:
    """The worker holding the server end of our connection from ``local_port``."""
    for pid in workers:
        for connection in psutil.Process(pid).net_connections(kind="tcp"):
            if connection.raddr and connection.raddr.port == local_port:
                return pid
    return None


def get(connection: http.client.HTTPConnection, path: str) -> int:
    connection.request("GET", path)
    answer = connection.getresponse()
    answer.read()
    return answer.status


def connection_to(port: int, workers: list[int], wanted: int) -> http.client.HTTPConnection:
    """A keep-alive connection that ``wanted`` (one of ``workers``) accepted: the others are
    paused (SIGSTOP) while it connects, since the kernel may hand every connection to one worker
    however often we try."""
    others = [psutil.Process(pid) for pid in workers if pid != wanted]
    for process in others:
        process.suspend()
    try:
        connection = http.client.HTTPConnection(LOOPBACK, port, timeout=TIMEOUT_S)
        assert get(connection, "/search?q=star") == 200
    finally:
        for process in others:
            process.resume()
    assert owner(workers, connection.sock.getsockname()[1]) == wanted
    return connection


def test_a_killed_worker_is_replaced_and_the_other_serves_on(fault_stack):
    app = fault_stack.web["torchserve"]
    victim, survivor = app.workers()
    connection = connection_to(app.port, [victim, survivor], survivor)
    statuses: list[int | str] = []
    replaced = threading.Event()

    def serve_on() -> None:  # the survivor's client, across the kill and the replacement
        after = 0
        while after < REQUESTS_AFTER:
            after += replaced.is_set()
            try:
                statuses.append(get(connection, f"/search?q=toy&n={len(statuses)}"))
            except (OSError, http.client.HTTPException) as exc:
                statuses.append(repr(exc))
                return

    client = threading.Thread(target=serve_on)
    client.start()
    fault = FAULTS["gunicorn_worker_killed"]
    try:
        fault.inject(fault_stack)
        fault.repair(fault_stack)
    finally:
        replaced.set()
        client.join(TIMEOUT_S)
    assert not client.is_alive()
    connection.close()
    workers = app.workers()
    assert victim not in workers and survivor in workers and len(workers) == 2
    assert statuses and set(statuses) == {200}, statuses
    # A connection the new worker accepted works too.
    connection = connection_to(app.port, workers, next(pid for pid in workers if pid != survivor))
    assert get(connection, "/api/v1/health") == 200
    connection.close()
