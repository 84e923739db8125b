"""A private PostgreSQL cluster and a private redis-server on free loopback ports, for tests and
soaks that stop them on purpose (never the machine's own instances).

PostgreSQL refuses to run as root, so under root its commands run as the ``postgres`` user in a
folder of its own under /tmp (a pytest tmp folder is root's alone, 0700).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from training.serving.processes import LOOPBACK, free_port, is_alive, terminate

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
PG_USER = "postgres"  # the superuser initdb creates, and the OS user that runs it under root
PG_DATABASE = "postgres"
PG_COMMAND_TIMEOUT_S = 60
REDIS_READY_TIMEOUT_S = 10.0
POLL_S = 0.05


class PrivateServiceError(RuntimeError):
    """A private server did not start or stop."""


def pg_bin(name: str) -> str:
    """``name`` (initdb, pg_ctl) from the newest installed PostgreSQL, else from PATH."""
    folders = sorted(glob.glob(PG_BIN_GLOB), key=lambda path: int(Path(path).parent.name))
    for folder in reversed(folders):
        if (Path(folder) / name).is_file():
            return str(Path(folder) / name)
    found = shutil.which(name)
    if found is None:
        raise PrivateServiceError(
            f"{name} not found: install postgresql (apt-get install -y postgresql)"
        )
    return found


@dataclass
class PrivatePostgres:
    """``start()`` once; ``stop()`` and ``start()`` again as often as a fault needs."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="movierec-pg-")))
    port: int = field(default_factory=free_port)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{PG_USER}@{LOOPBACK}:{self.port}/{PG_DATABASE}"

    def _run(self, *args: str) -> None:
        command = list(args)
        if os.geteuid() == 0:
            command = ["runuser", "-u", PG_USER, "--", *command]
        # In its own folder: the postgres user may not be allowed into the caller's.
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=PG_COMMAND_TIMEOUT_S, check=False,
            cwd=self.root,
        )  # fmt: skip
        if done.returncode != 0:
            raise PrivateServiceError(f"{' '.join(args)} failed:\n{done.stdout}{done.stderr}")

    def init(self) -> PrivatePostgres:
        if os.geteuid() == 0:
            shutil.chown(self.root, PG_USER, PG_USER)
        self._run(pg_bin("initdb"), "-D", str(self.data_dir), "-U", PG_USER, "-A", "trust",
                  "-E", "UTF8", "--no-sync")  # fmt: skip
        return self

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses={LOOPBACK}"
        self._run(pg_bin("pg_ctl"), "-D", str(self.data_dir), "-l", str(self.root / "log"),
                  "-o", options, "-w", "start")  # fmt: skip

    def stop(self) -> None:
        """A fast shutdown: open connections are cut, committed data stays."""
        self._run(pg_bin("pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop")

    def is_running(self) -> bool:
        return (self.data_dir / "postmaster.pid").is_file()

    def close(self) -> None:
        if self.is_running():
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class PrivateRedis:
    """redis-server without persistence on a free port; ``stop()``/``start()`` at will."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="movierec-redis-")))
    port: int = field(default_factory=free_port)
    pid: int | None = None

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise PrivateServiceError("redis-server not found: apt-get install -y redis-server")
        with (self.root / "redis.log").open("ab") as log:
            process = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", LOOPBACK, "--save", "",
                 "--appendonly", "no", "--dir", str(self.root)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.pid = process.pid
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1.0)
        deadline = time.monotonic() + REDIS_READY_TIMEOUT_S
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.RedisError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise PrivateServiceError(
                            f"redis-server on port {self.port} did not start; see {self.root}"
                        ) from None
                    time.sleep(POLL_S)
        finally:
            client.close()

    def stop(self) -> None:
        if self.pid is not None:
            terminate(self.pid)
            self.pid = None

    def is_running(self) -> bool:
        return self.pid is not None and is_alive(self.pid)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
