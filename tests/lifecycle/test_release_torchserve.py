"""`movierec release torchserve` on a real TorchServe while requests keep coming: the new version
takes over with no failed request, and a rollback brings the old one back the same way."""

from __future__ import annotations

import json
import zipfile

import pytest
import requests

from tests.fixtures.release import NEW_VERSION
from tests.lifecycle.request_stream import RequestStream, switches_once

pytestmark = pytest.mark.slow

OLD_VERSION = "1.0"
BODY = {"ratings": {"1": 5, "50": 4, "100": 5}, "k": 5}
# Answers seen before the swap starts and after it ends, per phase.
BEFORE, AFTER = 200, 200
REQUEST_TIMEOUT_S = 10


def manifest_version(mar) -> str:
    with zipfile.ZipFile(mar) as archive:
        return json.loads(archive.read("MAR-INF/MANIFEST.json"))["model"]["modelVersion"]


def stream_for(server) -> RequestStream:
    session = requests.Session()

    def call() -> str:
        response = session.post(
            f"{server.inference_url}/predictions/sae", json=BODY, timeout=REQUEST_TIMEOUT_S
        )
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
        answer = response.json()
        assert answer["recommendations"], answer
        return answer["version"]

    return RequestStream(call)


def swap_under_load(server, action) -> tuple[RequestStream, object]:
    with stream_for(server) as stream:
        stream.wait_for(BEFORE)
        result = action()
        stream.wait_for(AFTER)
    return stream, result


def test_release_then_rollback_under_load(
    release_torchserve, management, sae_new_archive, tmp_path
):
    from training.serving.release import torchserve as ts_release
    from training.serving.release.state import Release

    store = ts_release.ModelStore(release_torchserve.model_store)
    state_dir = tmp_path / "release"
    assert management.default_version("sae").version == OLD_VERSION

    stream, released = swap_under_load(
        release_torchserve,
        lambda: ts_release.release(management, store, "sae", sae_new_archive, state_dir),
    )
    assert stream.errors == []
    assert len(stream.answers) >= BEFORE + AFTER
    for thread, versions in stream.versions_by_thread().items():
        assert switches_once(versions, OLD_VERSION, NEW_VERSION), (
            thread,
            versions[:3],
            versions[-3:],
        )
    assert [v.version for v in management.versions("sae")] == [NEW_VERSION]
    assert released.phase == "released"
    assert Release.load(state_dir, "torchserve") == released
    # A restart of TorchServe serves the new version; the old archive is kept for a rollback.
    assert manifest_version(store.served("sae")) == NEW_VERSION
    assert manifest_version(store.versioned("sae", OLD_VERSION)) == OLD_VERSION

    stream, rolled_back = swap_under_load(
        release_torchserve,
        lambda: ts_release.rollback(management, store, released, state_dir),
    )
    assert stream.errors == []
    for thread, versions in stream.versions_by_thread().items():
        assert switches_once(versions, NEW_VERSION, OLD_VERSION), (
            thread,
            versions[:3],
            versions[-3:],
        )
    assert [v.version for v in management.versions("sae")] == [OLD_VERSION]
    assert rolled_back.phase == "rolled_back"
    assert manifest_version(store.served("sae")) == OLD_VERSION


def test_refuses_the_version_already_served_and_changes_nothing(
    release_torchserve, management, tmp_path
):
    from training.config import ConfigError
    from training.serving.release import torchserve as ts_release

    store = ts_release.ModelStore(release_torchserve.model_store)
    served = store.served("sae")
    with pytest.raises(ConfigError, match="already what sae serves"):
        ts_release.release(management, store, "sae", served, tmp_path / "release")
    assert [v.version for v in management.versions("sae")] == [OLD_VERSION]
    assert not (tmp_path / "release").exists()


def test_cli_errors_name_what_is_missing(sae_new_archive, tmp_path, monkeypatch):
    """Exit codes as for every command: 3 for nothing to act on, 4 for a missing archive or
    server."""
    from typer.testing import CliRunner

    from training.cli import app
    from training.serving.processes import free_port

    monkeypatch.setenv("MOVIEREC_HOME", str(tmp_path))
    runner = CliRunner()
    status = runner.invoke(app, ["release", "status"])
    assert status.exit_code == 3 and "no release yet" in status.output
    missing = tmp_path / "nope.mar"
    release = runner.invoke(app, ["release", "torchserve", "--model", "sae", "--mar", str(missing)])
    assert release.exit_code == 4 and f"{missing}: no such archive" in release.output
    nobody = f"http://127.0.0.1:{free_port()}"
    down = runner.invoke(
        app,
        ["release", "torchserve", "--mar", str(sae_new_archive), "--management-url", nobody],
    )
    assert down.exit_code == 4 and "TorchServe unreachable" in down.output
    assert not (tmp_path / ".run" / "release").exists()
