"""A real Prometheus (Debian's binary) on a free loopback port, scraping the given targets every
second with the project's rules, and instant queries over its HTTP API."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
import yaml

from tests.monitoring.promql import RULES
from training.serving.processes import LOOPBACK, free_ports, terminate, wait_http

SCRAPE_INTERVAL = "1s"
READY_TIMEOUT_S = 60
STOP_TIMEOUT_S = 20
QUERY_TIMEOUT_S = 10


def debian_binary(name: str, package: str) -> str:
    """A binary from Debian's packages, or a skip (a failure in CI, where `make system-deps`
    installs it)."""
    found = shutil.which(name)
    if found is None:
        message = f"{name} not found: apt-get install {package} (make system-deps)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def prometheus_binary() -> str:
    return debian_binary("prometheus", "prometheus")


@contextmanager
def started_prometheus(folder: Path, config: Mapping[str, Any]) -> Iterator[str]:
    """Prometheus running ``config`` (written to ``folder``, its rule files beside it) on a free
    loopback port; yields its URL, stopped and waited for when the block ends."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "prometheus.yml").write_text(yaml.safe_dump(dict(config)))
    (port,) = free_ports(1)
    url = f"http://{LOOPBACK}:{port}"
    with (folder / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [prometheus_binary(), f"--config.file={folder / 'prometheus.yml'}",
             f"--storage.tsdb.path={folder / 'data'}", f"--web.listen-address={LOOPBACK}:{port}"],
            cwd=folder, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_http(f"{url}/-/ready", READY_TIMEOUT_S, process=psutil.Process(process.pid))
        yield url
    finally:
        terminate(process.pid, STOP_TIMEOUT_S)
        process.wait(timeout=STOP_TIMEOUT_S)


@contextmanager
def running_prometheus(folder: Path, targets: Mapping[str, str]) -> Iterator[str]:
    """Prometheus scraping ``targets`` (job -> URL of its metrics page); yields its URL."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(RULES, folder / RULES.name)
    jobs = []
    for job, url in targets.items():
        scheme, _, rest = url.partition("://")
        address, _, path = rest.partition("/")
        jobs.append(
            {
                "job_name": job,
                "scheme": scheme,
                "metrics_path": f"/{path}",
                "static_configs": [{"targets": [address]}],
            }
        )
    config = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "rule_files": [RULES.name],
        "scrape_configs": jobs,
    }
    with started_prometheus(folder, config) as url:
        yield url


def instant_query(url: str, expr: str) -> dict:
    """Prometheus' whole answer to an instant query (``status``, ``data`` or ``error``)."""
    return requests.get(
        f"{url}/api/v1/query", params={"query": expr}, timeout=QUERY_TIMEOUT_S
    ).json()
