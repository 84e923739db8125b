"""The ``model_snapshot`` line with which the TorchServe configs register the archives at start.

Why not ``load_models``: TorchServe 0.12 registers those with each archive's model-config.yaml,
where ``maxBatchDelay: 0`` counts as unset and becomes 100 ms. A snapshot passes its values as
given (as the management API does), so a delay of 0 holds: a worker takes the requests already
queued and never waits for more, which lifts throughput under load at no cost to a lone request.

``movierec export torchserve`` writes two sets of values into model-config.yaml: the top-level
ones, safe for anyone who registers an archive some other way (no batching), and a ``snapshot``
section that overrides them here.

Standard library only: the TorchServe image renders its config with this module
(docker/render_torchserve_config.py) and holds no other project code.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterable
from pathlib import Path

MANIFEST = "MAR-INF/MANIFEST.json"
MODEL_CONFIG = "model-config.yaml"
SNAPSHOT_SECTION = "snapshot"
SNAPSHOT_NAME = "startup.cfg"
# What a snapshot must give for every model, with TorchServe's defaults for an archive that
# does not say (batching off, one worker).
REGISTRATION_DEFAULTS = {
    "minWorkers": 1,
    "maxWorkers": 1,
    "batchSize": 1,
    "maxBatchDelay": 100,
    "responseTimeout": 120,
}
# model-config.yaml as the export writes it (yaml.safe_dump): "key: 12" at the top level or
# indented under a "section:" line. Nothing else is read.
_SECTION = re.compile(r"^(\w+):\s*$")
_INTEGER = re.compile(r"^(\s*)(\w+):\s*(-?\d+)\s*$")


def _integers(text: str) -> dict[str, dict[str, int]]:
    """Integer settings by section ("" for the top level)."""
    found: dict[str, dict[str, int]] = {"": {}}
    section = ""
    for line in text.splitlines():
        if match := _SECTION.match(line):
            section = match.group(1)
        elif match := _INTEGER.match(line):
            indent, key, value = match.groups()
            found.setdefault(section if indent else "", {})[key] = int(value)
            if not indent:
                section = ""
    return found


def archive_registration(mar: Path) -> tuple[str, dict[str, int]]:
    """An archive's version and the settings a snapshot registers it with."""
    with zipfile.ZipFile(mar) as archive:
        version = str(json.loads(archive.read(MANIFEST))["model"]["modelVersion"])
        names = set(archive.namelist())
        text = archive.read(MODEL_CONFIG).decode("utf-8") if MODEL_CONFIG in names else ""
    found = _integers(text)
    settings = {**found[""], **found.get(SNAPSHOT_SECTION, {})}
    return version, {key: settings.get(key, value) for key, value in REGISTRATION_DEFAULTS.items()}


def startup_snapshot(model_store: Path | str, models: Iterable[str]) -> str:
    """One line of JSON for ``model_snapshot=``: ``models`` (``<name>.mar`` in ``model_store``)."""
    entries = {}
    for name in models:
        version, settings = archive_registration(Path(model_store) / f"{name}.mar")
        entries[name] = {version: {"defaultVersion": True, "marName": f"{name}.mar", **settings}}
    snapshot = {"name": SNAPSHOT_NAME, "modelCount": len(entries), "models": entries}
    return json.dumps(snapshot, separators=(",", ":"))
