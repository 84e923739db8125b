"""The MLflow tracking server a team logs to: ``mlflow server`` on loopback, runs and the model
registry in ``<root>/mlflow.db`` (SQLite), artifacts under the local root ``<root>/mlruns``.

It is the store the embedded default writes, both ways: runs logged before the server existed
show in its UI, and an experiment the server creates gets a ``file:`` artifact location that a
run without the server can still write to (a proxied ``mlflow-artifacts:`` location could not).
Training, evaluation and tuning reach it through ``MLFLOW_TRACKING_URI`` (``make up`` sets it;
see training/tracking.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import psutil
import typer

from training.config import Paths, get_logger
from training.serving import processes

log = get_logger("serving")
SERVICE = "mlflow"
DEFAULT_PORT = 5001  # docker-compose publishes its MLflow on the same host port
READY_TIMEOUT_S = 120.0  # the first start migrates a new SQLite store
STOP_TIMEOUT_S = 30.0
# One worker: a development team's server on a shared machine, not a fleet's.
WORKERS = 1
HEALTH_PATH = "/health"
# MLflow's job runner (GenAI judges and optimisation: seven more worker processes) serves
# nothing of ours; off, the server starts faster and lighter on a shared machine.
JOB_EXECUTION_ENV = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"
LOG_FILE = "mlflow-server.log"


@dataclass(frozen=True)
class MlflowServer:
    pid: int
    host: str
    port: int
    root: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        processes.terminate(self.pid, timeout)


def _launcher() -> str:
    """The ``mlflow`` script of this interpreter's environment."""
    found = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or shutil.which("mlflow")
    if found is None:
        raise FileNotFoundError("mlflow not found; run `make setup` (pip install mlflow)")
    return found


def server_command(paths: Paths, host: str, port: int) -> list[str]:
    """``mlflow server`` over the project's store: SQLite backend (runs and registry) and the
    local artifact root (clients on this machine write their artifacts there)."""
    return [
        _launcher(), "server",
        "--backend-store-uri", f"sqlite:///{paths.root / 'mlflow.db'}",
        "--default-artifact-root", paths.mlruns.as_uri(),
        "--no-serve-artifacts",
        "--host", host,
        "--port", str(port),
        "--workers", str(WORKERS),
    ]  # fmt: skip


def start_mlflow_server(
    paths: Paths | None = None,
    host: str = processes.LOOPBACK,
    port: int | None = None,
    timeout: float = READY_TIMEOUT_S,
) -> MlflowServer:
    """Start ``mlflow server`` in the background and return once ``/health`` answers."""
    paths = paths or Paths()
    port = port or processes.free_port(host)
    paths.mlruns.mkdir(parents=True, exist_ok=True)
    log_path = processes.run_dir(paths.root) / LOG_FILE
    with log_path.open("ab") as out:
        process = subprocess.Popen(
            server_command(paths, host, port),
            cwd=paths.root,
            env={**os.environ, JOB_EXECUTION_ENV: "false"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the caller's terminal does not reach it
        )
    server = MlflowServer(process.pid, host, port, paths.root)
    try:
        processes.wait_http(
            f"{server.url}{HEALTH_PATH}", timeout, process=psutil.Process(process.pid)
        )
    except processes.ServiceUnavailableError as exc:
        server.stop()
        raise processes.ServiceUnavailableError(
            f"the MLflow server did not get ready: {exc}; see {log_path} (port {port} in use?)"
        ) from exc
    except BaseException:
        server.stop()
        raise
    return server


def serve_mlflow_command(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = DEFAULT_PORT,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for /health.")] = READY_TIMEOUT_S,
) -> None:
    """Start the MLflow tracking server (mlflow.db + mlruns/) and return once it answers."""
    running = processes.read_pid(SERVICE)
    if running is not None:
        typer.echo(f"MLflow already runs (pid {running}); `movierec serve stop` stops it")
        return
    server = start_mlflow_server(Paths(), port=port, timeout=timeout)
    processes.write_pid(SERVICE, server.pid)
    typer.echo(
        f"MLflow ready: {server.url} (runs go there with MLFLOW_TRACKING_URI={server.url}); "
        f"log in {processes.run_dir() / LOG_FILE}"
    )
