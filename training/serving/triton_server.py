"""Run the tritonserver bundled with nvidia-pytriton (2.51) against ``triton_repo/``, on CPU.

That binary ships the Python backend only, so it serves the CPU configs
(``--model-config-name=cpu``), whose Python-based backend runs the same ``model.onnx`` with
onnxruntime. Production runs the official image with the GPU configs instead (docs/triton.md).

The binary needs a backend folder laid out as Triton expects (built under ``.run/``), the venv's
Python first on PATH and the interpreter's libpython on LD_LIBRARY_PATH: otherwise the Python
stub embeds the system libpython and cannot import the venv's packages.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import psutil
import typer

from training.config import Paths, get_logger
from training.serving import triton_names as tn
from training.serving.processes import (
    LOOPBACK,
    ServiceUnavailableError,
    free_ports,
    is_alive,
    read_pid,
    run_dir,
    terminate,
    wait_http,
    write_pid,
)

log = get_logger("serving")

SERVICE = "triton"
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
# Triton waits this long for in-flight requests on SIGTERM before it unloads the models.
EXIT_TIMEOUT_S = 10
DEFAULT_HTTP_PORT, DEFAULT_GRPC_PORT, DEFAULT_METRICS_PORT = 8000, 8001, 8002
BACKENDS_DIR = "triton_backends"
PYTHON_BACKEND = "python"
PYTHON_BACKEND_FILES = ("libtriton_python.so", "triton_python_backend_utils.py")
STUB = "triton_python_backend_stub"
# Committed Python-based backends (backends/<name>/model.py), copied into the backend folder.
COMMITTED_BACKENDS = Path(__file__).resolve().parent / BACKENDS_DIR


@dataclass(frozen=True)
class BundledTriton:
    """Where nvidia-pytriton keeps its tritonserver, Python backend, stubs and shared libraries."""

    root: Path

    @classmethod
    def locate(cls) -> BundledTriton:
        spec = importlib.util.find_spec("pytriton")
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(
                "tritonserver not found: install nvidia-pytriton==0.7.0 (the project's dev extra) "
                f"or run the official image {tn.TRITON_IMAGE}"
            )
        return cls(Path(spec.submodule_search_locations[0]) / "tritonserver")

    @property
    def binary(self) -> Path:
        return self.root / "bin" / "tritonserver"

    @property
    def python_backend(self) -> Path:
        return self.root / "backends" / PYTHON_BACKEND

    @property
    def stub(self) -> Path:
        return (
            self.root
            / "python_backend_stubs"
            / f"{sys.version_info.major}.{sys.version_info.minor}"
            / STUB
        )

    @property
    def libs(self) -> Path:
        # auditwheel's folder of vendored libraries (libcudart, ...): the copied stub needs it.
        return self.root.parent.parent / "nvidia_pytriton.libs"


def _copy_if_changed(source: Path, dest: Path) -> None:
    # A running server's stub cannot be overwritten (ETXTBSY), and an identical copy needs no copy.
    same = dest.is_file() and dest.stat().st_size == source.stat().st_size
    if not (same and dest.stat().st_mtime == source.stat().st_mtime):
        shutil.copy2(source, dest)


def build_backend_dir(dest: Path, bundled: BundledTriton | None = None) -> Path:
    """``dest/python/`` (the Python backend and this interpreter's stub) plus our backends."""
    bundled = bundled or BundledTriton.locate()
    python_dir = dest / PYTHON_BACKEND
    python_dir.mkdir(parents=True, exist_ok=True)
    sources = [bundled.python_backend / name for name in PYTHON_BACKEND_FILES] + [bundled.stub]
    for source in sources:
        if not source.is_file():
            raise FileNotFoundError(f"{source}: missing from nvidia-pytriton's tritonserver")
        _copy_if_changed(source, python_dir / source.name)
    for backend in COMMITTED_BACKENDS.iterdir():
        if (backend / "model.py").is_file():
            shutil.copytree(
                backend,
                dest / backend.name,
                dirs_exist_ok=True,
                ignore=shutil.ignore_patterns("__pycache__"),
            )
    return dest


def triton_environment(bundled: BundledTriton) -> dict[str, str]:
    """The venv's bin first on PATH and this interpreter's libpython first on LD_LIBRARY_PATH."""
    env = dict(os.environ)
    venv_bin = str(Path(sys.executable).parent)
    libdir = sysconfig.get_config_var("LIBDIR")
    env["PATH"] = os.pathsep.join([venv_bin, env.get("PATH", "")])
    library_path = [libdir, str(bundled.libs), env.get("LD_LIBRARY_PATH", "")]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(part for part in library_path if part)
    return env


def prepare_repository(repo: Path) -> None:
    """Every ONNX model must be exported (the graph the CPU config serves); the ensemble needs
    an (empty) version folder."""
    missing = [
        path
        for name in tn.ONNX_MODELS
        if not (path := repo / name / tn.MODEL_VERSION / tn.cpu_onnx_filename(name)).is_file()
    ]
    if missing:
        raise FileNotFoundError(
            f"{', '.join(map(str, missing))}: not exported; run `movierec export onnx`"
        )
    # Version folders are build outputs (git-ignored), so a fresh checkout has none.
    (repo / tn.HYBRID / tn.MODEL_VERSION).mkdir(exist_ok=True)


@dataclass
class TritonServer:
    """A running tritonserver: its process and loopback endpoints."""

    pid: int
    http_port: int
    grpc_port: int
    metrics_port: int
    log_path: Path

    @property
    def http_url(self) -> str:
        return f"http://{LOOPBACK}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        """host:port, as tritonclient.grpc expects it."""
        return f"{LOOPBACK}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{LOOPBACK}:{self.metrics_port}/metrics"

    def is_running(self) -> bool:
        return is_alive(self.pid)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM the server alone (it stops its Python stubs itself), then clean up leftovers."""
        try:
            server = psutil.Process(self.pid)
            stubs = server.children(recursive=True)
            server.send_signal(signal.SIGTERM)
            server.wait(timeout)
        except psutil.NoSuchProcess:
            return
        except psutil.TimeoutExpired:
            log.warning("tritonserver %d still running after %.0fs; killing it", self.pid, timeout)
            terminate(self.pid, timeout)
        for stub in stubs:  # normally gone with the server
            if is_alive(stub.pid):
                terminate(stub.pid, timeout)

    def to_json(self) -> str:
        return json.dumps(
            {
                "pid": self.pid,
                "http": self.http_url,
                "grpc": self.grpc_url,
                "metrics": self.metrics_url,
                "log": str(self.log_path),
            }
        )


def start_triton(
    repo: Path,
    work_dir: Path,
    config_name: str | None = tn.CPU_CONFIG_NAME,
    ports: tuple[int, int, int] | None = None,
    timeout: float = READY_TIMEOUT_S,
    log_path: Path | None = None,
) -> TritonServer:
    """Start tritonserver on loopback and wait for ``/v2/health/ready``; stops it on failure.

    ``work_dir`` receives the backend folder (and ``triton.log`` unless ``log_path`` says
    otherwise); ``ports`` are (HTTP, gRPC, metrics), free ones by default.
    """
    repo = Path(repo).resolve()
    prepare_repository(repo)
    bundled = BundledTriton.locate()
    backends = build_backend_dir(work_dir / BACKENDS_DIR, bundled)
    http_port, grpc_port, metrics_port = ports or free_ports(3)
    log_path = log_path or work_dir / "triton.log"
    args = [
        str(bundled.binary),
        f"--model-repository={repo}",
        f"--backend-directory={backends}",
        f"--http-address={LOOPBACK}",
        f"--http-port={http_port}",
        f"--grpc-address={LOOPBACK}",
        f"--grpc-port={grpc_port}",
        f"--metrics-address={LOOPBACK}",
        f"--metrics-port={metrics_port}",
        "--disable-auto-complete-config",  # the committed configs are complete: no guessing
        # Explicit model control: `movierec release triton` loads a new version folder through
        # the repository API (POST /v2/repository/models/<model>/load) while the others serve.
        "--model-control-mode=explicit",
        "--load-model=*",
        "--strict-readiness=true",
        f"--exit-timeout-secs={EXIT_TIMEOUT_S}",
    ]
    if config_name:
        args.append(f"--model-config-name={config_name}")
    with log_path.open("ab") as log_file:
        # Its own session: Ctrl-C in the shell that ran `movierec serve triton` does not reach it.
        process = subprocess.Popen(
            args,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=triton_environment(bundled),
            start_new_session=True,
        )
    server = TritonServer(process.pid, http_port, grpc_port, metrics_port, log_path)
    try:
        wait_http(
            f"{server.http_url}/v2/health/ready", timeout, process=psutil.Process(process.pid)
        )
    except (ServiceUnavailableError, psutil.NoSuchProcess) as exc:
        server.stop()
        tail = log_path.read_text(errors="replace")[-2000:]
        raise ServiceUnavailableError(f"tritonserver did not become ready: {exc}\n{tail}") from exc
    log.info("tritonserver %d ready: %s", server.pid, server.to_json())
    return server


def serve_triton_command(
    repo: Annotated[
        Path | None, typer.Option(help="Model repository (default triton_repo/).")
    ] = None,
    config_name: Annotated[
        str, typer.Option(help="Config name (<model>/configs/<name>.pbtxt); '' = config.pbtxt.")
    ] = tn.CPU_CONFIG_NAME,
    http_port: Annotated[int, typer.Option(help="HTTP port (0 = a free one).")] = DEFAULT_HTTP_PORT,
    grpc_port: Annotated[int, typer.Option(help="gRPC port (0 = a free one).")] = DEFAULT_GRPC_PORT,
    metrics_port: Annotated[
        int, typer.Option(help="Prometheus metrics port (0 = a free one).")
    ] = DEFAULT_METRICS_PORT,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for readiness.")
    ] = READY_TIMEOUT_S,
) -> None:
    """Start the bundled tritonserver in the background; `movierec serve stop` stops it."""
    running = read_pid(SERVICE)
    if running is not None:
        typer.echo(f"triton already running (pid {running}); `movierec serve stop --what triton`")
        return
    paths = Paths()
    spare = iter(free_ports(3))
    ports = (http_port or next(spare), grpc_port or next(spare), metrics_port or next(spare))
    paths.logs.mkdir(parents=True, exist_ok=True)
    work_dir = run_dir()
    server = start_triton(
        repo or paths.triton_repo,
        work_dir,
        config_name or None,
        ports,
        timeout,
        log_path=paths.logs / "triton.log",
    )
    write_pid(SERVICE, server.pid)
    (work_dir / f"{SERVICE}.json").write_text(server.to_json() + "\n", encoding="utf-8")
    typer.echo(server.to_json())
