"""Starting and stopping local servers: free ports, pid files, readiness polls, clean shutdown.

Generic on purpose (TorchServe, Triton, the web app and MLflow all use it): a server module
starts its process, records it with ``write_pid(name, pid)`` under ``<root>/.run/`` and polls
``wait_http``; ``movierec serve stop`` reads those pid files and waits until every process (and
its children, e.g. TorchServe's Java frontend and Python workers) has really exited.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import psutil
import requests
import typer

from training.config import Paths, get_logger
from training.data.ingest import DataUnavailableError

log = get_logger("serving")

RUN_DIR = ".run"
LOOPBACK = "127.0.0.1"
POLL_INTERVAL_S = 0.25
HTTP_PROBE_TIMEOUT_S = 2.0
TERMINATE_TIMEOUT_S = 30.0
# What `movierec serve stop --what all` stops, in this order (clients before servers; MLflow
# last, as training or a web worker may still be logging to it).
SERVICES = ("web", "triton", "torchserve", "mlflow")


class ServiceUnavailableError(DataUnavailableError):
    """A server did not start or answer in time; the CLI maps it to exit code 4."""


def run_dir(root: Path | str | None = None) -> Path:
    """``<root>/.run``: pid files, generated configs and temp dirs of locally started servers."""
    folder = Paths(root).root / RUN_DIR
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port the OS says is free right now."""
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """``count`` distinct free ports (all sockets are held open together, so none repeats)."""
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(sock.getsockname()[1])
        return ports


def wait_http(
    url: str,
    timeout: float,
    predicate: Callable[[requests.Response], bool] | None = None,
    process: psutil.Process | None = None,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    """Poll ``url`` until it answers and ``predicate(response)`` holds (default: status 200).

    Fails fast when ``process`` (the server being waited for) has exited.
    """
    accept = predicate or (lambda response: response.status_code == 200)
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if process is not None and not is_alive(process.pid):
            raise ServiceUnavailableError(
                f"the server process {process.pid} exited before {url} was ready"
            )
        try:
            response = requests.get(url, timeout=HTTP_PROBE_TIMEOUT_S, headers=headers)
            if accept(response):
                return response
            last = f"HTTP {response.status_code}: {response.text[:200]}"
        except requests.RequestException as exc:
            last = type(exc).__name__
        time.sleep(POLL_INTERVAL_S)
    raise ServiceUnavailableError(f"{url} not ready after {timeout:.0f}s (last: {last})")


def pid_file(name: str, root: Path | str | None = None) -> Path:
    return run_dir(root) / f"{name}.pid"


def write_pid(name: str, pid: int, root: Path | str | None = None) -> Path:
    path = pid_file(name, root)
    path.write_text(f"{pid}\n", encoding="utf-8")
    return path


def read_pid(name: str, root: Path | str | None = None) -> int | None:
    """The pid recorded for ``name`` if that process still runs; a stale file is removed."""
    path = pid_file(name, root)
    try:
        pid = int(path.read_text(encoding="utf-8").strip())
    except (FileNotFoundError, ValueError):
        return None
    if is_alive(pid):
        return pid
    path.unlink(missing_ok=True)
    return None


def is_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def terminate(pid: int, timeout: float = TERMINATE_TIMEOUT_S) -> bool:
    """SIGTERM ``pid`` and its descendants, wait for them, SIGKILL what is left after ``timeout``.

    Returns False if there was nothing to stop.
    """
    try:
        parent = psutil.Process(pid)
        family = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return False
    for proc in family:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(family, timeout=timeout)
    for proc in alive:
        log.warning("process %d ignored SIGTERM for %.0fs; killing it", proc.pid, timeout)
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=timeout)
    return True


def stop_service(
    name: str, root: Path | str | None = None, timeout: float = TERMINATE_TIMEOUT_S
) -> bool:
    """Stop what ``<root>/.run/<name>.pid`` names and wait for it; True if something ran."""
    pid = read_pid(name, root)
    stopped = pid is not None and terminate(pid, timeout)
    pid_file(name, root).unlink(missing_ok=True)
    return stopped


def stop_command(
    what: Annotated[str, typer.Option(help=f"One of {', '.join(SERVICES)} or all.")] = "all",
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait before SIGKILL.")
    ] = TERMINATE_TIMEOUT_S,
) -> None:
    """Stop locally started servers and wait until their processes (Java included) have exited."""
    if what != "all" and what not in SERVICES:
        raise typer.BadParameter(f"unknown service {what!r}; choose one of {SERVICES} or all")
    for name in SERVICES if what == "all" else (what,):
        state = "stopped" if stop_service(name, timeout=timeout) else "not running"
        typer.echo(f"{name}: {state}")
