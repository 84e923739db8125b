"""``movierec serve web``: the web app under gunicorn (or Flask's dev server), returning once it
answers ``/api/v1/health``; ``movierec serve stop --what web`` stops it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import psutil
import typer

from training.config import REPO_ROOT, Paths
from training.serving import processes
from web import db
from web.config import WebSettings
from web.metrics import MULTIPROC_ENV

SERVICE = "web"
DEFAULT_PORT = 5000
# Two processes: a page costs ~7 ms of Python, and one process's threads queue on its GIL (the
# recommendations page's p95 at 20 users fell from 67 to 40 ms with a second worker). /metrics
# sums the workers through prometheus_client's multiprocess folder (``metrics_folder``).
DEFAULT_WORKERS = 2
METRICS_FOLDER = "web-metrics-{port}"  # under .run/, one per server: files must not mix
THREADS_PER_WORKER = 8
READY_TIMEOUT_S = 60.0
HEALTH_PATH = "/api/v1/health"
GUNICORN_TIMEOUT_S = 30
APP_FACTORY = "web:create_app()"


def gunicorn_command(host: str, port: int, workers: int, threads: int) -> list[str]:
    return [
        sys.executable, "-m", "gunicorn",
        "--bind", f"{host}:{port}",
        "--workers", str(workers),
        "--worker-class", "gthread",
        "--threads", str(threads),
        "--timeout", str(GUNICORN_TIMEOUT_S),
        "--access-logfile", "-",
        # The default control socket is one path per user: two instances would fight over it.
        "--no-control-socket",
        # The code's folder, whichever folder MOVIEREC_HOME (data, logs) points at.
        "--pythonpath", str(REPO_ROOT),
        APP_FACTORY,
    ]  # fmt: skip


def dev_command(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "flask", "--app", "web", "run", "--host", host,
            "--port", str(port), "--no-reload"]  # fmt: skip


def metrics_folder(port: int) -> Path:
    """An empty folder for the workers' metric files (stale files would add old counts)."""
    folder = processes.run_dir() / METRICS_FOLDER.format(port=port)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def start_web(
    host: str, port: int, workers: int, dev: bool, log_file: Path, timeout: float
) -> psutil.Process:
    """Migrate the database once, start the server detached, wait for its health answer."""
    # Fail here, with the variable's name, not in a worker. Unset secrets are generated here and
    # kept in .run/web-secrets/, where the workers (and the next start) read the same ones.
    settings = WebSettings.from_env()
    db.upgrade(db.make_engine(settings.database_url, pool_size=1))
    log_file.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DB_AUTO_MIGRATE": "false"}
    # A connection per thread: a smaller pool makes the extra threads open (and close) one
    # for every request.
    env.setdefault("DB_POOL_SIZE", str(max(settings.db_pool_size, THREADS_PER_WORKER)))
    if workers > 1 and not dev and not env.get(MULTIPROC_ENV):
        env[MULTIPROC_ENV] = str(metrics_folder(port))
    command = (
        dev_command(host, port)
        if dev
        else gunicorn_command(host, port, workers, THREADS_PER_WORKER)
    )
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            cwd=REPO_ROOT,
        )
    server = psutil.Process(process.pid)
    try:
        processes.wait_http(f"http://{host}:{port}{HEALTH_PATH}", timeout, process=server)
    except processes.ServiceUnavailableError:
        processes.terminate(process.pid)
        raise
    return server


def serve_web_command(
    host: Annotated[str, typer.Option(help="Address to bind.")] = processes.LOOPBACK,
    port: Annotated[int, typer.Option(help="Port to bind.")] = DEFAULT_PORT,
    workers: Annotated[
        int, typer.Option(min=1, help="gunicorn worker processes.")
    ] = DEFAULT_WORKERS,
    dev: Annotated[bool, typer.Option(help="Flask's development server instead.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for health.")] = READY_TIMEOUT_S,
) -> None:
    """Start the web app (gunicorn) and return once it answers /api/v1/health."""
    running = processes.read_pid(SERVICE)
    if running is not None:
        typer.echo(f"web app already runs (pid {running}); `movierec serve stop --what web`")
        return
    log_file = Paths().logs / "web.log"
    server = start_web(host, port, workers, dev, log_file, timeout)
    processes.write_pid(SERVICE, server.pid)
    typer.echo(f"web app ready on http://{host}:{port} (pid {server.pid}); log {log_file}")
