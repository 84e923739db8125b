"""``movierec release torchserve|triton|promote|rollback|status``: the typer commands.

Each reads and writes the release file under ``.run/release/`` (``state``), which the web app
reads for its canary; the steps themselves are in ``release.torchserve`` and ``release.triton``.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from handlers import contract
from training.config import ConfigError, Paths
from training.serving import processes
from training.serving.release import torchserve as ts_release
from training.serving.release.state import BACKENDS, Release, state_dir
from training.serving.torchserve_client import read_key_file
from training.serving.torchserve_management import TorchServeManagement
from training.serving.torchserve_server import KEY_FILE, SERVICE, Ports

DEFAULT_PORTS = Ports()
DEFAULT_INFERENCE_URL = f"http://{processes.LOOPBACK}:{DEFAULT_PORTS.inference}"
DEFAULT_MANAGEMENT_URL = f"http://{processes.LOOPBACK}:{DEFAULT_PORTS.management}"

ModelOption = Annotated[str, typer.Option(help=f"One of {', '.join(contract.SERVED_MODELS)}.")]
BackendOption = Annotated[str, typer.Option(help=f"Model server: {' or '.join(BACKENDS)}.")]
InferenceOption = Annotated[str, typer.Option(help="TorchServe inference URL.")]
ManagementOption = Annotated[str, typer.Option(help="TorchServe management URL.")]
StoreOption = Annotated[
    Path | None, typer.Option(help="TorchServe's model store (default model_store/).")
]
QuietOption = Annotated[
    float, typer.Option(help="Seconds an old version's queue must stay empty before it goes.")
]


def torchserve_client(inference_url: str, management_url: str) -> TorchServeManagement:
    """A management client; with the keys of `movierec serve torchserve --config prod` if any."""
    key_file = processes.run_dir() / SERVICE / KEY_FILE
    keys = read_key_file(key_file) if key_file.is_file() else {}
    return TorchServeManagement(
        inference_url,
        management_url,
        inference_token=keys.get("inference"),
        management_token=keys.get("management"),
    )


def _echo(release: Release) -> None:
    typer.echo(json.dumps(asdict(release)))


def _last_release(backend: str) -> Release:
    found = Release.load(state_dir(), backend)
    if found is None:
        raise ConfigError(f"{backend}: no release yet (nothing under {state_dir()})")
    return found


def release_torchserve_command(
    model: ModelOption = contract.SAE,
    mar: Annotated[
        Path | None, typer.Option(help="The new version's archive (export torchserve --version).")
    ] = None,
    canary: Annotated[
        int | None,
        typer.Option(help="Stop before the default moves: this % of visitors get the new one."),
    ] = None,
    inference_url: InferenceOption = DEFAULT_INFERENCE_URL,
    management_url: ManagementOption = DEFAULT_MANAGEMENT_URL,
    model_store: StoreOption = None,
    quiet: QuietOption = ts_release.DRAIN_QUIET_S,
) -> None:
    """Register a new version beside the running one, probe it, make it the default, drain and
    unregister the old one (with --canary, stop before the default moves)."""
    if mar is None:
        raise typer.BadParameter("give the new version's archive with --mar")
    store = ts_release.ModelStore(model_store or Paths().model_store)
    client = torchserve_client(inference_url, management_url)
    try:
        done = ts_release.release(client, store, model, mar, state_dir(), canary, quiet_s=quiet)
    finally:
        client.close()
    _echo(done)


def promote_command(
    backend: BackendOption = "torchserve",
    inference_url: InferenceOption = DEFAULT_INFERENCE_URL,
    management_url: ManagementOption = DEFAULT_MANAGEMENT_URL,
    model_store: StoreOption = None,
    quiet: QuietOption = ts_release.DRAIN_QUIET_S,
) -> None:
    """End a canary: its new version becomes the only one."""
    last = _last_release(backend)
    if backend != ts_release.BACKEND:
        raise ConfigError(f"{backend}: releases there have no canary to promote")
    store = ts_release.ModelStore(model_store or Paths().model_store)
    client = torchserve_client(inference_url, management_url)
    try:
        _echo(ts_release.promote(client, store, last, state_dir(), quiet))
    finally:
        client.close()


def rollback_command(
    backend: BackendOption = "torchserve",
    inference_url: InferenceOption = DEFAULT_INFERENCE_URL,
    management_url: ManagementOption = DEFAULT_MANAGEMENT_URL,
    model_store: StoreOption = None,
    quiet: QuietOption = ts_release.DRAIN_QUIET_S,
) -> None:
    """Back to the version served before the last release (a canary's or a finished one)."""
    last = _last_release(backend)
    store = ts_release.ModelStore(model_store or Paths().model_store)
    client = torchserve_client(inference_url, management_url)
    try:
        _echo(ts_release.rollback(client, store, last, state_dir(), quiet_s=quiet))
    finally:
        client.close()


def status_command(backend: BackendOption = "torchserve") -> None:
    """The last release on that model server (phase, versions, canary share), as JSON."""
    _echo(_last_release(backend))
