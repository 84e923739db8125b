"""Start TorchServe from a config template and wait until the models really answer.

Every instance gets its own folder (config, TMPDIR for the pid file and worker sockets, logs,
key_file.json) and its own ports, so several can run on one host (tests beside a dev server).
Readiness is ``GET /models/<name>`` showing READY workers: ``/ping`` answers before a model can.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Annotated

import psutil
import requests
import typer

from handlers import contract
from training.config import REPO_ROOT, Paths, get_logger
from training.serving import processes
from training.serving.torchserve_snapshot import startup_snapshot

log = get_logger("serving")

SERVICE = "torchserve"
CONFIGS = ("dev", "prod")
CONFIG_DIR = REPO_ROOT / "docker" / "torchserve"
LOG_CONFIG = CONFIG_DIR / "log4j2.xml"
MODELS = contract.SERVED_MODELS
READY_TIMEOUT_S = 180
LAUNCH_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30
PID_FILE = ".model_server.pid"  # written by the launcher into its TEMP folder
KEY_FILE = "key_file.json"  # written by TorchServe (token auth on) into its working directory
READY = "READY"


@dataclass(frozen=True)
class Ports:
    inference: int = 8080
    management: int = 8081
    metrics: int = 8082
    grpc_inference: int = 7070
    grpc_management: int = 7071

    @classmethod
    def free(cls) -> Ports:
        return cls(*processes.free_ports(5))


@dataclass
class TorchServe:
    """A running TorchServe: where it listens, where it keeps its files, how to stop it."""

    pid: int
    home: Path
    model_store: Path
    ports: Ports
    host: str = processes.LOOPBACK
    config: str = "dev"
    models: tuple[str, ...] = field(default=MODELS)

    @property
    def inference_url(self) -> str:
        return f"http://{self.host}:{self.ports.inference}"

    @property
    def management_url(self) -> str:
        return f"http://{processes.LOOPBACK}:{self.ports.management}"

    @property
    def metrics_url(self) -> str:
        return f"http://{processes.LOOPBACK}:{self.ports.metrics}"

    @property
    def grpc_target(self) -> str:
        return f"{self.host}:{self.ports.grpc_inference}"

    @property
    def key_file(self) -> Path:
        return self.home / KEY_FILE

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop the frontend and its workers and wait until every process has exited."""
        processes.terminate(self.pid, timeout)


def render_config(
    config: str, ports: Ports, model_store: Path, models: tuple[str, ...], host: str
) -> str:
    """The ``docker/torchserve/config.<config>.properties`` template with values filled in."""
    if config not in CONFIGS:
        raise ValueError(f"unknown TorchServe config {config!r}; choose one of {CONFIGS}")
    template = Template((CONFIG_DIR / f"config.{config}.properties").read_text(encoding="utf-8"))
    return template.substitute(
        TS_HOST=host,
        TS_INFERENCE_PORT=ports.inference,
        TS_MANAGEMENT_PORT=ports.management,
        TS_METRICS_PORT=ports.metrics,
        TS_GRPC_INFERENCE_PORT=ports.grpc_inference,
        TS_GRPC_MANAGEMENT_PORT=ports.grpc_management,
        TS_MODEL_STORE=model_store,
        TS_MODEL_SNAPSHOT=startup_snapshot(model_store, models),
    )


def _launcher() -> str:
    """The ``torchserve`` script of this interpreter's environment (workers use its Python)."""
    found = shutil.which("torchserve", path=str(Path(sys.executable).parent)) or shutil.which(
        "torchserve"
    )
    if found is None:
        raise FileNotFoundError("torchserve not found; run `make setup` (pip install torchserve)")
    return found


def _environment(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    # Workers run the Python found on PATH: it must be this environment's.
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    for name in ("TMPDIR", "TEMP"):  # pid file and worker sockets stay per instance
        env[name] = str(home / "tmp")
    env["LOG_LOCATION"] = env["METRICS_LOCATION"] = str(home / "logs")
    return env


def start_torchserve(
    model_store: Path,
    home: Path,
    config: str = "dev",
    ports: Ports | None = None,
    models: tuple[str, ...] = MODELS,
    host: str = processes.LOOPBACK,
    timeout: float = READY_TIMEOUT_S,
    overrides: Mapping[str, str] | None = None,
) -> TorchServe:
    """Start TorchServe in the background and return once ``models`` have READY workers.

    ``overrides`` are properties appended to the rendered config (the last value of a key wins),
    e.g. a short ``token_expiration_min`` for a test."""
    model_store = Path(model_store).resolve()
    missing = [name for name in models if not (model_store / f"{name}.mar").is_file()]
    if missing:
        raise FileNotFoundError(
            f"{model_store}: no {', '.join(m + '.mar' for m in missing)}; "
            "run `movierec export torchserve` first"
        )
    home = Path(home).resolve()
    for folder in (home / "tmp", home / "logs"):
        folder.mkdir(parents=True, exist_ok=True)
    (home / "tmp" / PID_FILE).unlink(missing_ok=True)
    ports = ports or Ports()
    config_file = home / "config.properties"
    extra = "".join(f"\n{key}={value}" for key, value in (overrides or {}).items())
    config_file.write_text(render_config(config, ports, model_store, models, host) + extra + "\n")
    command = [
        _launcher(), "--start", "--ncs",
        "--ts-config", str(config_file),
        "--model-store", str(model_store),
        "--log-config", str(LOG_CONFIG),
    ]  # fmt: skip
    with (home / "logs" / "launcher.log").open("ab") as out:
        subprocess.run(
            command, cwd=home, env=_environment(home), stdout=out, stderr=subprocess.STDOUT,
            check=True, timeout=LAUNCH_TIMEOUT_S,
        )  # fmt: skip
    server = TorchServe(_read_launcher_pid(home), home, model_store, ports, host, config, models)
    try:
        wait_ready(server, timeout)
    except processes.ServiceUnavailableError as exc:
        server.stop()
        raise processes.ServiceUnavailableError(
            f"TorchServe did not get ready: {exc}; see {server.log_dir}/ts_log.log and "
            f"model_log.log (a port in use? ports: {ports})"
        ) from exc
    except BaseException:
        server.stop()
        raise
    return server


def _read_launcher_pid(home: Path) -> int:
    pid_file = home / "tmp" / PID_FILE
    deadline = time.monotonic() + LAUNCH_TIMEOUT_S
    while time.monotonic() < deadline:
        if pid_file.is_file() and pid_file.read_text().strip():
            return int(pid_file.read_text().strip())
        time.sleep(processes.POLL_INTERVAL_S)
    raise processes.ServiceUnavailableError(
        f"TorchServe did not start: see {home / 'logs' / 'launcher.log'}"
    )


def management_headers(server: TorchServe) -> dict[str, str]:
    """The Authorization header the management API needs when token auth is on."""
    from training.serving.torchserve_client import read_key_file

    if server.config == "dev":
        return {}
    deadline = time.monotonic() + LAUNCH_TIMEOUT_S
    while True:
        # TorchServe creates the file before it writes the keys: wait for complete JSON.
        try:
            keys = read_key_file(server.key_file)
            break
        except (FileNotFoundError, ValueError, KeyError):
            if time.monotonic() >= deadline:
                raise
            time.sleep(processes.POLL_INTERVAL_S)
    return {"Authorization": f"Bearer {keys['management']}"}


def has_ready_workers(response: requests.Response) -> bool:
    """``GET /models/<name>`` shows workers and every one of them is READY."""
    if response.status_code != 200:
        return False
    described = response.json()
    workers = [w for version in described for w in version.get("workers", [])]
    return bool(workers) and all(w.get("status") == READY for w in workers)


class _KeyRejected(Exception):
    """The management key was refused (expired): renew it and poll on."""


def _ready_unless_key_rejected(response: requests.Response) -> bool:
    from training.serving.torchserve_client import key_rejected

    if key_rejected(response):
        raise _KeyRejected
    return has_ready_workers(response)


def renew_management_key(server: TorchServe) -> None:
    """A new management key in the key file (the old one expired), asked with the API key."""
    from training.serving.torchserve_client import TorchServeClient, read_key_file

    client = TorchServeClient(server.inference_url, server.management_url)
    try:
        client.renew_key(read_key_file(server.key_file)["api"], "management")
    finally:
        client.close()


def wait_ready(server: TorchServe, timeout: float = READY_TIMEOUT_S) -> None:
    process = psutil.Process(server.pid)
    deadline = time.monotonic() + timeout
    for name in server.models:
        while True:
            try:
                processes.wait_http(
                    f"{server.management_url}/models/{name}",
                    max(deadline - time.monotonic(), 1.0),
                    _ready_unless_key_rejected,
                    process=process,
                    headers=management_headers(server),
                )
                break
            except _KeyRejected:
                # Keys expire (token_expiration_min), possibly before slow workers are up.
                renew_management_key(server)
    log.info("TorchServe ready at %s: %s", server.inference_url, ", ".join(server.models))


def serve_torchserve_command(
    config: Annotated[str, typer.Option(help="Config template: dev or prod.")] = "dev",
    foreground: Annotated[bool, typer.Option(help="Stay attached; Ctrl-C stops it.")] = False,
    host: Annotated[str, typer.Option(help="Inference address.")] = processes.LOOPBACK,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for READY.")] = READY_TIMEOUT_S,
) -> None:
    """Start TorchServe (sae, rbm, hybrid from model_store/) and return once the models answer."""
    if config not in CONFIGS:
        raise typer.BadParameter(f"unknown config {config!r}; choose one of {CONFIGS}")
    paths = Paths()
    running = processes.read_pid(SERVICE)
    if running is not None:
        typer.echo(f"TorchServe already runs (pid {running}); `movierec serve stop` stops it")
        return
    home = processes.run_dir() / SERVICE
    server = start_torchserve(paths.model_store, home, config=config, host=host, timeout=timeout)
    processes.write_pid(SERVICE, server.pid)
    typer.echo(
        f"TorchServe ready: inference {server.inference_url}, management {server.management_url}, "
        f"metrics {server.metrics_url}/metrics, gRPC {server.grpc_target}; logs in {server.log_dir}"
    )
    if config == "prod":
        typer.echo(f"token auth on: keys in {server.key_file}")
    if foreground:
        try:
            psutil.Process(server.pid).wait()
        except KeyboardInterrupt:
            server.stop()
        finally:
            processes.pid_file(SERVICE).unlink(missing_ok=True)
