"""The servers a load run needs (TorchServe, Triton, the web app), started on free ports and
always stopped: ``LoadStack`` is a context manager that stops what it started in reverse order.

Servers given by address (``--torchserve-url`` and friends) are used as they are and left
running. The web app gets a throw-away PostgreSQL database (dropped afterwards), or an SQLite
file when no PostgreSQL answers, and TorchServe as its model backend, like production.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from training.config import Paths
from training.serving import processes

log = logging.getLogger("load")

DEFAULT_POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DB_NAME_PREFIX = "movierec_load_"
# Load runs must measure the app, not its rate limiter (which guards /api/v1 in production).
UNLIMITED_RATE = "1000000 per second"
WEB_READY_TIMEOUT_S = 90.0
# 32 bytes and more, as the web settings require; a load run's sessions are thrown away.
LOAD_SECRET = "load-test-secret-" + "0" * 32


@dataclass
class Endpoints:
    """Where each scenario sends its load; None = not available in this run."""

    torchserve_http: str | None = None  # http://host:port (inference API)
    torchserve_grpc: str | None = None  # host:port
    triton_grpc: str | None = None  # host:port
    web: str | None = None  # http://host:port
    # server name -> root pid of a process tree this run started (for RSS figures)
    pids: dict[str, int] = field(default_factory=dict)


def process_tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def rss_by_process(pids: dict[str, int]) -> dict[str, float]:
    """RSS in MiB of every process of every server tree, keyed ``server/name[pid]``."""
    sizes = {}
    for server, pid in pids.items():
        for proc in process_tree(pid):
            try:
                sizes[f"{server}/{proc.name()}[{proc.pid}]"] = proc.memory_info().rss / 2**20
            except psutil.NoSuchProcess:
                continue
    return sizes


def cpu_seconds(pids: dict[str, int]) -> float:
    """User + system CPU time of every process of every server tree, so far."""
    total = 0.0
    for pid in pids.values():
        for proc in process_tree(pid):
            try:
                times = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
    return total


class LoadStack(ExitStack):
    """Starts servers on demand; leaving the ``with`` block stops each of them."""

    def __init__(self, paths: Paths, work: Path) -> None:
        super().__init__()
        self.paths = paths
        self.work = work

    def _stop_later(self, name: str, stop: Callable[[], None]) -> None:
        def stop_logged() -> None:
            log.info("stopping %s", name)
            stop()

        self.callback(stop_logged)

    def torchserve(self, model_store: Path, models: tuple[str, ...]):
        from training.serving.torchserve_server import Ports, start_torchserve

        log.info("starting TorchServe (%s) from %s", ",".join(models), model_store)
        server = start_torchserve(model_store, self.work / "torchserve", ports=Ports.free(),
                                  models=models)  # fmt: skip
        self._stop_later("TorchServe", server.stop)
        return server

    def triton(self, repo: Path):
        from training.serving.triton_server import start_triton

        log.info("starting Triton on %s", repo)
        work = self.work / "triton"
        work.mkdir(parents=True, exist_ok=True)
        server = start_triton(repo, work)
        self._stop_later("Triton", server.stop)
        return server

    def database(self, admin_url: str | None) -> str:
        """A fresh PostgreSQL database (dropped on exit) or, without PostgreSQL, an SQLite file."""
        sqlite = f"sqlite:///{self.work / 'web.sqlite3'}"
        if not admin_url:
            return sqlite
        from sqlalchemy import create_engine, text
        from sqlalchemy.exc import OperationalError

        name = f"{DB_NAME_PREFIX}{uuid.uuid4().hex[:12]}"
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as connection:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
        except OperationalError as exc:
            log.warning("PostgreSQL unavailable (%s); the web app uses SQLite", exc.orig)
            admin.dispose()
            return sqlite

        def drop() -> None:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()

        self._stop_later(f"database {name}", drop)
        return admin.url.set(database=name).render_as_string(hide_password=False)

    def web(
        self, torchserve_url: str, database_url: str, workers: int, dataset: str
    ) -> tuple[str, int]:
        """gunicorn serving the app with TorchServe as its backend; (URL, pid)."""
        from web.server import METRICS_FOLDER, start_web

        prepared = self.paths.prepared(dataset)
        environment = {
            "MOVIEREC_HOME": str(self.paths.root),
            "DATABASE_URL": database_url,
            "MODEL_BACKEND": "torchserve",
            "TORCHSERVE_URL": torchserve_url,
            "MOVIES_PATH": str(prepared / "movies.json"),
            "EVALUATION_REPORT": str(self.paths.reports / "evaluation.json"),
            "MODEL_CHECKPOINTS": str(self.paths.checkpoints),
            "RATE_LIMIT": UNLIMITED_RATE,
            "SECRET_KEY": LOAD_SECRET,
            "JWT_SECRET": LOAD_SECRET,
        }
        os.environ.update(environment)  # start_web reads its settings from the environment
        port = processes.free_port()
        # Removed once the server has stopped (callbacks run last-in, first-out).
        metric_files = processes.run_dir() / METRICS_FOLDER.format(port=port)
        self._stop_later("its metric files", lambda: shutil.rmtree(metric_files, True))
        log.info("starting the web app (%d gunicorn worker(s)) on port %d", workers, port)
        server = start_web(processes.LOOPBACK, port, workers, False, self.work / "web.log",
                           WEB_READY_TIMEOUT_S)  # fmt: skip
        self._stop_later("the web app", lambda: processes.terminate(server.pid))
        return f"http://{processes.LOOPBACK}:{port}", server.pid
