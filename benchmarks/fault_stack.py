"""The stack a fault test or the fault soak breaks on purpose, and the faults themselves.

Everything is private and on free loopback ports: a PostgreSQL cluster and a redis-server
(``benchmarks.private_services``), TorchServe, optionally a tritonserver, and gunicorn web apps
over them (one per model backend). Each ``Fault`` injects one failure of the fault matrix
(docs/operations.md) and repairs it; the tests in tests/faults/ and ``benchmarks.fault_soak``
use the same ones.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import requests
from sqlalchemy import Engine, create_engine

from benchmarks.private_services import PrivatePostgres, PrivateRedis
from training.serving import processes
from training.serving.torchserve_server import Ports, TorchServe, start_torchserve, wait_ready
from training.serving.triton_server import TritonServer, start_triton

# Short enough that a stalled model server costs a page this long, long enough for a busy
# 2-core machine's real answers.
MODEL_TIMEOUT_S = 3.0
WEB_WORKERS = 2
WEB_READY_TIMEOUT_S = 90.0
# The soak's own traffic must never meet the rate limit.
UNLIMITED = "100000 per minute"
API_KEY = "fault-stack-api-key-0123456789"
RECOVERY_TIMEOUT_S = 120.0
POLL_S = 0.2


@dataclass(frozen=True)
class StackData:
    """What the servers serve: archives, Triton repository, catalogue and reports."""

    model_store: Path
    movies_path: Path
    checkpoints_dir: Path
    evaluation_report: Path
    triton_repo: Path | None = None


@dataclass
class WebApp:
    """A gunicorn master, its port, how many workers it keeps and its log."""

    pid: int
    port: int
    workers_wanted: int
    log_path: Path
    env: dict[str, str]

    @property
    def url(self) -> str:
        return f"http://{processes.LOOPBACK}:{self.port}"

    def workers(self) -> list[int]:
        """The worker pids, oldest first."""
        children = psutil.Process(self.pid).children()
        return [child.pid for child in sorted(children, key=lambda child: child.create_time())]

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        processes.terminate(self.pid)


@dataclass
class FaultStack:
    """The private servers; ``start_*`` brings each up, ``close()`` stops everything."""

    data: StackData
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="movierec-faults-")))
    postgres: PrivatePostgres | None = None
    redis: PrivateRedis | None = None
    torchserve: TorchServe | None = None
    triton: TritonServer | None = None
    web: dict[str, WebApp] = field(default_factory=dict)
    secret: str = field(default_factory=lambda: secrets.token_hex(32))
    _engine: Engine | None = None

    def postgres_engine(self) -> Engine:
        """An engine on the stack's database, to count what the web apps wrote."""
        if self.postgres is None:
            raise ValueError("start PostgreSQL first")
        if self._engine is None:
            self._engine = create_engine(self.postgres.url, pool_pre_ping=True)
        return self._engine

    def start_postgres(self) -> PrivatePostgres:
        self.postgres = PrivatePostgres().init()
        self.postgres.start()
        return self.postgres

    def start_redis(self) -> PrivateRedis:
        self.redis = PrivateRedis()
        self.redis.start()
        return self.redis

    def start_torchserve(self, ports: Ports | None = None) -> TorchServe:
        self.torchserve = start_torchserve(
            self.data.model_store, self.root / "torchserve", ports=ports or Ports.free()
        )
        return self.torchserve

    def start_triton(self, ports: tuple[int, int, int] | None = None) -> TritonServer:
        if self.data.triton_repo is None:
            raise ValueError("no Triton repository in this stack's data")
        work = self.root / "triton"
        work.mkdir(exist_ok=True)
        self.triton = start_triton(self.data.triton_repo, work, ports=ports)
        return self.triton

    def web_env(self, backend: str) -> dict[str, str]:
        """The web app's settings (docs/configuration.md) over this stack's servers."""
        if self.postgres is None:
            raise ValueError("start PostgreSQL first")
        env = {
            "MOVIEREC_HOME": str(self.root / "home"),
            "DATABASE_URL": self.postgres.url,
            "MODEL_BACKEND": backend,
            "MODEL_TIMEOUT_S": str(MODEL_TIMEOUT_S),
            "MODEL_STORE": str(self.data.model_store),
            "MODEL_CHECKPOINTS": str(self.data.checkpoints_dir),
            "MOVIES_PATH": str(self.data.movies_path),
            "EVALUATION_REPORT": str(self.data.evaluation_report),
            "SECRET_KEY": self.secret,
            "JWT_SECRET": self.secret,
            "API_KEYS": API_KEY,
            "RATE_LIMIT": UNLIMITED,
            "CACHE_PREFIX": f"faults-{self.root.name}:",
            "DB_AUTO_MIGRATE": "false",
        }
        if self.redis is not None:
            env["REDIS_URL"] = self.redis.url
        if self.torchserve is not None:
            env["TORCHSERVE_URL"] = self.torchserve.inference_url
        if self.triton is not None and self.data.triton_repo is not None:
            env["TRITON_GRPC_URL"] = self.triton.grpc_url
            env["TRITON_REPO"] = str(self.data.triton_repo)
        return env

    def start_web(self, backend: str = "torchserve", workers: int = WEB_WORKERS) -> WebApp:
        """gunicorn (the production server, ``web.server``) over the stack, once it is healthy."""
        from web import db
        from web.server import HEALTH_PATH, THREADS_PER_WORKER, gunicorn_command

        env = self.web_env(backend)
        engine = db.make_engine(env["DATABASE_URL"], pool_size=1)
        try:
            db.upgrade(engine)  # idempotent: the second app finds the schema in place
        finally:
            engine.dispose()
        port = processes.free_port()
        metrics = self.root / f"metrics-{port}"
        metrics.mkdir(parents=True)
        full_env = {**os.environ, **env, "PROMETHEUS_MULTIPROC_DIR": str(metrics)}
        log_path = self.root / f"web-{backend}.log"
        command = gunicorn_command(processes.LOOPBACK, port, workers, THREADS_PER_WORKER)
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=full_env,
                start_new_session=True, cwd=Path(__file__).resolve().parents[1],
            )  # fmt: skip
        app = WebApp(process.pid, port, workers, log_path, full_env)
        self.web[backend] = app
        processes.wait_http(
            f"{app.url}{HEALTH_PATH}", WEB_READY_TIMEOUT_S, process=psutil.Process(process.pid)
        )
        return app

    def close(self) -> None:
        """Stop everything that runs (web apps first), then remove the folders."""
        for app in self.web.values():
            app.stop()
        if self._engine is not None:
            self._engine.dispose()
        if self.torchserve is not None:
            _resume(self.torchserve.pid)
            self.torchserve.stop()
        if self.triton is not None:
            self.triton.stop()
        for service in (self.redis, self.postgres):
            if service is not None:
                service.close()
        shutil.rmtree(self.root, ignore_errors=True)


def _resume(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:
        pass


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and its descendants, as a crash or the OOM killer would, and reap them."""
    try:
        family = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for proc in family:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(family, timeout=RECOVERY_TIMEOUT_S)


def torchserve_worker_pid(server: TorchServe, model: str) -> int:
    """The pid of ``model``'s (first) worker, from the management API."""
    described = requests.get(f"{server.management_url}/models/{model}", timeout=10).json()
    workers = [worker for version in described for worker in version.get("workers", [])]
    return int(workers[0]["pid"])


@dataclass(frozen=True)
class Fault:
    """One row of the fault matrix: ``inject`` breaks the component, ``repair`` brings it back
    (and returns once it serves again)."""

    name: str
    description: str
    inject: Callable[[FaultStack], None]
    repair: Callable[[FaultStack], None]
    backend: str = "torchserve"  # the web app whose traffic this fault hits


def _kill_torchserve(stack: FaultStack) -> None:
    assert stack.torchserve is not None
    kill_tree(stack.torchserve.pid)


def _restart_torchserve(stack: FaultStack) -> None:
    assert stack.torchserve is not None
    stack.start_torchserve(stack.torchserve.ports)  # same ports: the web app's URL still holds


def _kill_torchserve_worker(stack: FaultStack) -> None:
    assert stack.torchserve is not None
    os.kill(torchserve_worker_pid(stack.torchserve, "sae"), signal.SIGKILL)


def _torchserve_workers_ready(stack: FaultStack) -> None:
    assert stack.torchserve is not None
    wait_ready(stack.torchserve, RECOVERY_TIMEOUT_S)


def _pause_torchserve(stack: FaultStack) -> None:
    assert stack.torchserve is not None
    os.kill(stack.torchserve.pid, signal.SIGSTOP)  # the frontend: connections open, no answers


def _resume_torchserve(stack: FaultStack) -> None:
    assert stack.torchserve is not None
    _resume(stack.torchserve.pid)


def _kill_triton(stack: FaultStack) -> None:
    assert stack.triton is not None
    kill_tree(stack.triton.pid)


def _restart_triton(stack: FaultStack) -> None:
    assert stack.triton is not None
    old = stack.triton
    stack.start_triton((old.http_port, old.grpc_port, old.metrics_port))


def _stop_postgres(stack: FaultStack) -> None:
    assert stack.postgres is not None
    stack.postgres.stop()


def _start_postgres(stack: FaultStack) -> None:
    assert stack.postgres is not None
    stack.postgres.start()


def _stop_redis(stack: FaultStack) -> None:
    assert stack.redis is not None
    stack.redis.stop()


def _start_redis(stack: FaultStack) -> None:
    assert stack.redis is not None
    stack.redis.start()


def _kill_gunicorn_worker(stack: FaultStack) -> None:
    victim = psutil.Process(stack.web["torchserve"].workers()[0])
    victim.kill()
    # Gone once the master has reaped it: until then it would still count as a worker.
    victim.wait(RECOVERY_TIMEOUT_S)


def _gunicorn_workers_back(stack: FaultStack) -> None:
    app = stack.web["torchserve"]
    deadline = time.monotonic() + RECOVERY_TIMEOUT_S
    while len(app.workers()) < app.workers_wanted:
        if time.monotonic() > deadline:
            raise TimeoutError(f"gunicorn {app.pid} did not replace its worker")
        time.sleep(POLL_S)


FAULTS = {
    fault.name: fault
    for fault in (
        Fault("torchserve_killed", "TorchServe (frontend and workers) SIGKILLed, restarted",
              _kill_torchserve, _restart_torchserve),
        Fault("torchserve_worker_killed", "the sae worker SIGKILLed; TorchServe replaces it",
              _kill_torchserve_worker, _torchserve_workers_ready),
        Fault("model_server_slow", "TorchServe paused (SIGSTOP) past MODEL_TIMEOUT_S, resumed",
              _pause_torchserve, _resume_torchserve),
        Fault("triton_killed", "tritonserver SIGKILLed, restarted", _kill_triton,
              _restart_triton, backend="triton"),
        Fault("postgres_stopped", "PostgreSQL stopped (fast shutdown), started again",
              _stop_postgres, _start_postgres),
        Fault("redis_stopped", "redis-server stopped, started again", _stop_redis, _start_redis),
        Fault("gunicorn_worker_killed", "one gunicorn worker SIGKILLed; the master replaces it",
              _kill_gunicorn_worker, _gunicorn_workers_back),
    )
}  # fmt: skip
