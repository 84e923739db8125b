"""The model_snapshot the TorchServe configs register the archives with."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.fixtures.torchserve import TEST_BATCH_SIZE, TEST_MAX_BATCH_DELAY_MS
from training.export.torchserve import DEFAULTS, UNBATCHED, ServingSettings
from training.serving.torchserve_server import Ports, render_config
from training.serving.torchserve_snapshot import (
    REGISTRATION_DEFAULTS,
    archive_registration,
    startup_snapshot,
)


def fake_archive(store: Path, name: str, version: str, config: dict | None) -> Path:
    """A .mar holding only what the snapshot reads (TorchServe is not involved here)."""
    path = store / f"{name}.mar"
    manifest = {"runtime": "python", "model": {"modelName": name, "modelVersion": version}}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("MAR-INF/MANIFEST.json", json.dumps(manifest))
        if config is not None:
            archive.writestr("model-config.yaml", yaml.safe_dump(config))
    return path


def test_default_settings_batch_in_the_snapshot_only(tmp_path):
    config = DEFAULTS.model_config()
    # Registered any other way (load_models, the API without parameters): no batching.
    assert (config["batchSize"], config["maxBatchDelay"]) == (
        UNBATCHED["batchSize"],
        UNBATCHED["maxBatchDelay"],
    )
    version, settings = archive_registration(fake_archive(tmp_path, "sae", "1.0", config))
    assert version == "1.0"
    assert settings == {
        "minWorkers": DEFAULTS.workers,
        "maxWorkers": DEFAULTS.workers,
        "batchSize": DEFAULTS.batch_size,
        "maxBatchDelay": 0,
        "responseTimeout": DEFAULTS.response_timeout_s,
    }


def test_snapshot_lists_every_model_with_its_version(tmp_path):
    fake_archive(tmp_path, "sae", "2.1", ServingSettings(workers=3, batch_size=4).model_config())
    fake_archive(tmp_path, "echo", "1.0", None)
    snapshot = json.loads(startup_snapshot(tmp_path, ("sae", "echo")))
    assert snapshot["modelCount"] == 2
    sae = snapshot["models"]["sae"]["2.1"]
    assert sae["marName"] == "sae.mar" and sae["defaultVersion"] is True
    assert (sae["minWorkers"], sae["maxWorkers"], sae["batchSize"]) == (3, 3, 4)
    echo = snapshot["models"]["echo"]["1.0"]
    assert {key: echo[key] for key in REGISTRATION_DEFAULTS} == REGISTRATION_DEFAULTS
    assert json.loads(startup_snapshot(tmp_path, ()))["modelCount"] == 0


def test_a_missing_archive_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.mar"):
        startup_snapshot(tmp_path, ("nope",))


def test_dev_config_registers_the_archives_from_a_snapshot(tmp_path):
    fake_archive(tmp_path, "sae", "1.0", DEFAULTS.model_config())
    fake_archive(tmp_path, "rbm", "1.0", DEFAULTS.model_config())
    text = render_config("dev", Ports(), tmp_path, ("sae", "rbm"), "127.0.0.1")
    lines = dict(line.split("=", 1) for line in text.splitlines() if line and line[0] != "#")
    assert "load_models" not in lines
    snapshot = json.loads(lines["model_snapshot"])
    assert sorted(snapshot["models"]) == ["rbm", "sae"]


@pytest.mark.slow
def test_a_running_server_took_the_snapshot_settings(torchserve):
    """The session's archives ask for batches of TEST_BATCH_SIZE within TEST_MAX_BATCH_DELAY_MS."""
    client = torchserve.client()
    try:
        (described,) = client.describe("sae")
    finally:
        client.close()
    assert (described["batchSize"], described["maxBatchDelay"]) == (
        TEST_BATCH_SIZE,
        TEST_MAX_BATCH_DELAY_MS,
    )
