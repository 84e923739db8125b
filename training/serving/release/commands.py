"""``movierec release torchserve|triton|promote|rollback|status``: the typer commands.

Each reads and writes the release file under ``.run/release/`` (``state``), which the web app
reads for its canary; the steps themselves are in ``release.torchserve`` and ``release.triton``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from handlers import contract
from training.config import ConfigError, Paths
from training.serving import processes
from training.serving.release import torchserve as ts_release
from training.serving.release import triton as triton_release
from training.serving.release.state import BACKENDS, Release, state_dir
from training.serving.torchserve_client import TorchServeError, read_key_file
from training.serving.torchserve_management import TorchServeManagement
from training.serving.torchserve_server import KEY_FILE, SERVICE, Ports
from training.serving.triton_server import DEFAULT_HTTP_PORT

DEFAULT_PORTS = Ports()
DEFAULT_INFERENCE_URL = f"http://{processes.LOOPBACK}:{DEFAULT_PORTS.inference}"
DEFAULT_MANAGEMENT_URL = f"http://{processes.LOOPBACK}:{DEFAULT_PORTS.management}"
DEFAULT_TRITON_URL = f"http://{processes.LOOPBACK}:{DEFAULT_HTTP_PORT}"

ModelOption = Annotated[str, typer.Option(help=f"One of {', '.join(contract.SERVED_MODELS)}.")]
BackendOption = Annotated[str, typer.Option(help=f"Model server: {' or '.join(BACKENDS)}.")]
InferenceOption = Annotated[str, typer.Option(help="TorchServe inference URL.")]
ManagementOption = Annotated[str, typer.Option(help="TorchServe management URL.")]
StoreOption = Annotated[
    Path | None, typer.Option(help="TorchServe's model store (default model_store/).")
]
TritonUrlOption = Annotated[str, typer.Option(help="Triton's HTTP endpoint.")]
TritonRepoOption = Annotated[
    Path | None, typer.Option(help="Triton's model repository (default triton_repo/).")
]
QuietOption = Annotated[
    float, typer.Option(help="Seconds an old version's queue must stay empty before it goes.")
]


@contextmanager
def torchserve_client(inference_url: str, management_url: str) -> Iterator[TorchServeManagement]:
    """A management client (with the keys of `movierec serve torchserve --config prod` if any);
    TorchServe's errors end the command with exit code 4 and its message."""
    key_file = processes.run_dir() / SERVICE / KEY_FILE
    keys = read_key_file(key_file) if key_file.is_file() else {}
    client = TorchServeManagement(
        inference_url,
        management_url,
        inference_token=keys.get("inference"),
        management_token=keys.get("management"),
    )
    try:
        yield client
    except TorchServeError as exc:
        raise ts_release.ReleaseError(f"TorchServe: {exc}") from exc
    finally:
        client.close()


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
        Path | None,
        typer.Option(
            help="The new version's archive; default <model store>/<model>.mar, the champion's "
            "as `movierec export torchserve --from-registry` writes it."
        ),
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
    store = ts_release.ModelStore(model_store or Paths().model_store)
    mar = mar or store.served(model)
    with torchserve_client(inference_url, management_url) as client:
        done = ts_release.release(client, store, model, mar, state_dir(), canary, quiet_s=quiet)
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
    with torchserve_client(inference_url, management_url) as client:
        _echo(ts_release.promote(client, store, last, state_dir(), quiet))


def rollback_command(
    backend: BackendOption = "torchserve",
    inference_url: InferenceOption = DEFAULT_INFERENCE_URL,
    management_url: ManagementOption = DEFAULT_MANAGEMENT_URL,
    model_store: StoreOption = None,
    quiet: QuietOption = ts_release.DRAIN_QUIET_S,
    triton_url: TritonUrlOption = DEFAULT_TRITON_URL,
    triton_repo: TritonRepoOption = None,
) -> None:
    """Back to the version served before the last release (a canary's or a finished one)."""
    last = _last_release(backend)
    if backend == triton_release.BACKEND:
        control = triton_release.TritonModelControl(triton_url)
        try:
            repo = triton_repo or Paths().triton_repo
            _echo(triton_release.rollback(control, repo, last, state_dir()))
        finally:
            control.close()
        return
    store = ts_release.ModelStore(model_store or Paths().model_store)
    with torchserve_client(inference_url, management_url) as client:
        _echo(ts_release.rollback(client, store, last, state_dir(), quiet_s=quiet))


def release_triton_command(
    source: Annotated[
        Path,
        typer.Option(
            help="The new version's folder (model.onnx, ...), e.g. DIR/sae/1 as "
            "`movierec export onnx --repo DIR` writes it."
        ),
    ],
    model: ModelOption = contract.SAE,
    triton_url: TritonUrlOption = DEFAULT_TRITON_URL,
    triton_repo: TritonRepoOption = None,
) -> None:
    """Copy a new version into triton_repo/<model>/<n+1>/ and load it on the running Triton
    (explicit model control): the old version goes once its requests are done, the ensemble
    follows without a restart."""
    control = triton_release.TritonModelControl(triton_url)
    try:
        repo = triton_repo or Paths().triton_repo
        _echo(triton_release.release(control, repo, model, source, state_dir()))
    finally:
        control.close()


def status_command(backend: BackendOption = "torchserve") -> None:
    """The last release on that model server (phase, versions, canary share), as JSON."""
    _echo(_last_release(backend))
