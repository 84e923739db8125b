"""``movierec export ... --from-registry``: built from the champion alias (or a pinned version),
with the registry name, version and run in the archive's and the graph's metadata."""

from __future__ import annotations

import json
import zipfile

import pytest
from typer.testing import CliRunner

from handlers.serving_artifact import ARTIFACT_FILE, ServingArtifact
from tests.lifecycle.registry_store import LifecycleStore, lifecycle_store
from training.cli import app as movierec_app
from training.config import REPO_ROOT

PARAMS = REPO_ROOT / "params.yaml"
EXIT_USAGE, EXIT_UNAVAILABLE = 2, 4  # training/cli.py's documented exit codes
MANIFEST = "MAR-INF/MANIFEST.json"
pytestmark = pytest.mark.slow  # registers models in MLflow and builds archives


@pytest.fixture(scope="module")
def registered(project_home, checkpoints, tmp_path_factory) -> tuple[LifecycleStore, dict]:
    """The session's SAE and RBM registered (each its model's first version: the champion)."""
    from training.registry import register_checkpoint
    from training.tracking import configure_mlflow

    with lifecycle_store(project_home, tmp_path_factory.mktemp("export")) as store:
        configure_mlflow(store.params.mlflow.experiment_name, store.paths)
        runs = {
            model: register_checkpoint(checkpoints[model], store.params, f"register-{model}")[0]
            for model in ("sae", "rbm")
        }
        yield store, runs


def invoke(*args: str):
    return CliRunner().invoke(movierec_app, list(args), prog_name="movierec")


def test_torchserve_archive_names_the_champion(registered, tmp_path):
    _, runs = registered
    out = tmp_path / "store"
    result = invoke(
        "export", "torchserve", "--from-registry", "--models", "rbm", "--out", str(out),
        "--params", str(PARAMS), "--dataset", "ml-100k",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(out / "rbm.mar") as archive:
        manifest = json.loads(archive.read(MANIFEST))
        artifact = ServingArtifact.from_bytes(archive.read(ARTIFACT_FILE), "rbm.mar")
    reference = {"name": "movierec-rbm", "version": "1", "run_id": runs["rbm"], "alias": "champion"}
    assert manifest["model"]["modelVersion"] == "1" == artifact.version
    assert artifact.metadata["registry"] == reference
    assert artifact.metadata["parts"]["rbm"]["registry"] == reference
    assert artifact.metadata["mlflow_run_id"] == runs["rbm"]


def test_onnx_graph_metadata_names_the_pinned_version(registered, tmp_path):
    import onnx

    from training.export.from_registry import download_checkpoints
    from training.export.onnx import export_model

    store, runs = registered
    checkpoint = download_checkpoints(store.params, ("rbm",), tmp_path / "ckpt", {"rbm": 1})["rbm"]
    path, _ = export_model(checkpoint, tmp_path / "repo")

    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    assert props["registry_name"] == "movierec-rbm"
    assert props["registry_version"] == "1"
    assert props["registry_run_id"] == runs["rbm"] == props["mlflow_run_id"]
    assert "registry_alias" not in props  # pinned, not followed through the alias


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("torchserve", "--models", "hybrid", "--version", "3"), EXIT_USAGE, "say which model"),
        (("torchserve", "--models", "rbm", "--version", "9"), EXIT_UNAVAILABLE, "no version 9"),
        (("onnx", "--version", "sae=nine"), EXIT_USAGE, "not a registry version number"),
    ],
)
def test_bad_registry_versions_are_clear_errors(registered, args, code, message):
    result = invoke("export", *args, "--from-registry", "--params", str(PARAMS))
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_onnx_version_needs_from_registry(registered):
    result = invoke("export", "onnx", "--version", "sae=1", "--params", str(PARAMS))
    assert result.exit_code == EXIT_USAGE and "--from-registry" in result.output


def test_an_unreachable_mlflow_is_unavailable(monkeypatch):
    import socket

    import mlflow

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        uri = f"http://127.0.0.1:{probe.getsockname()[1]}"
    previous = mlflow.get_tracking_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    try:
        result = invoke("export", "torchserve", "--from-registry", "--params", str(PARAMS))
    finally:
        mlflow.set_tracking_uri(previous)
    assert result.exit_code == EXIT_UNAVAILABLE, result.output
    assert f"MLflow at {uri}" in result.stderr and "Traceback" not in result.output
