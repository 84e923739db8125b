"""A new model version on a running Triton, with no restart and no request lost.

Triton runs in explicit model-control mode (``training/serving/triton_server.py``) and each
model's config keeps the latest version folder only (``version_policy: { latest {
num_versions: 1 } }``). A release copies the new graphs into the next numbered folder
(``triton_repo/<model>/<n+1>/``, made complete under another name first, then renamed) and asks
Triton to load the model again (``POST /v2/repository/models/<model>/load``): Triton loads the
new version, sends new requests to it, and unloads the old one once its requests are done; the
hybrid ensemble asks for the latest SAE and RBM (``model_version: -1``), so it follows without a
restart. The new version is then probed by a real inference; if that fails, the folder is moved
aside and the old version loaded again.

A rollback moves the newest folder aside (``rolled-back-<n>``, a name Triton ignores) and loads
the model again, so the version before it serves. Triton releases have no canary: its clients
ask for a model, not a version.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import requests

from handlers.serving_artifact import ARTIFACT_FILE, ServingArtifact
from training.config import ConfigError, get_logger
from training.serving import triton_names as tn
from training.serving.release.state import Release, now_iso
from training.serving.release.torchserve import PROBE_ITEMS, ReleaseError

log = get_logger("serving")

BACKEND = "triton"
LOAD_TIMEOUT_S = 180.0  # a load answers once the new version is ready (or failed)
REQUEST_TIMEOUT_S = 10.0
STAGING_PREFIX = ".staging-"
ROLLED_BACK_PREFIX = "rolled-back-"


class TritonModelControl:
    """Triton's repository API (explicit mode) and a probe over its HTTP inference API."""

    def __init__(self, http_url: str) -> None:
        self.http_url = http_url.rstrip("/")
        self.session = requests.Session()

    def _post(self, path: str, body: dict[str, Any], timeout: float) -> Any:
        url = f"{self.http_url}{path}"
        try:
            response = self.session.post(url, json=body, timeout=timeout)
        except requests.RequestException as exc:
            raise ReleaseError(f"POST {url}: Triton unreachable ({exc})") from exc
        if response.status_code != 200:
            raise ReleaseError(f"POST {url}: HTTP {response.status_code}: {response.text[:300]}")
        return response.json() if response.content else None

    def ready_versions(self, model: str) -> list[str]:
        index = self._post("/v2/repository/index", {}, REQUEST_TIMEOUT_S)
        return sorted(
            (entry["version"] for entry in index
             if entry["name"] == model and entry.get("state") == tn.READY),
            key=int,
        )  # fmt: skip

    def load(self, model: str) -> None:
        """Load ``model`` again as its folder now stands: what its version policy picks."""
        self._post(f"/v2/repository/models/{model}/load", {}, LOAD_TIMEOUT_S)

    def infer(self, model: str, version: str, ratings: list[float]) -> dict[str, Any]:
        """One user's ratings through that version of the model (JSON over HTTP)."""
        spec = tn.RATINGS
        body = {"inputs": [{"name": spec.name, "shape": [1, len(ratings)],
                            "datatype": spec.triton_dtype, "data": ratings}]}  # fmt: skip
        answer: dict[str, Any] = self._post(
            f"/v2/models/{model}/versions/{version}/infer", body, REQUEST_TIMEOUT_S
        )
        return answer

    def close(self) -> None:
        self.session.close()


def version_folders(repo: Path, model: str) -> list[int]:
    """The model's numbered version folders, oldest first."""
    folder = repo / model
    return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())


def _check_source(source: Path, model: str) -> None:
    needed = [tn.ONNX_FILENAME, ARTIFACT_FILE]
    if model in tn.QUANTIZED_MODELS:
        needed.append(tn.ONNX_INT8_FILENAME)
    missing = [name for name in needed if not (source / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{source}: no {', '.join(missing)}; `movierec export onnx --repo DIR` writes a "
            f"version folder (DIR/{model}/1)"
        )


def _probe(control: TritonModelControl, repo: Path, model: str, version: str) -> None:
    artifact = ServingArtifact.load(repo / model / version / ARTIFACT_FILE)
    ratings = [0.0] * len(artifact.item_ids)
    ratings[:PROBE_ITEMS] = [5.0] * PROBE_ITEMS
    answer = control.infer(model, version, ratings)
    if answer.get("model_version") != version or not answer.get("outputs"):
        raise ReleaseError(f"{model} {version}: the probe was answered by {answer}")


def _set_aside(repo: Path, model: str, version: str) -> None:
    folder = repo / model / version
    aside = repo / model / f"{ROLLED_BACK_PREFIX}{version}"
    if aside.exists():
        shutil.rmtree(aside)
    folder.rename(aside)


def _serve_only(control: TritonModelControl, model: str, version: str) -> None:
    served = control.ready_versions(model)
    if served != [version]:
        raise ReleaseError(f"{model}: Triton serves versions {served}, not {version} alone")


def release(
    control: TritonModelControl, repo: Path, model: str, source: Path, state_dir: Path
) -> Release:
    """Serve the graphs in ``source`` as ``model``'s next version."""
    if model not in tn.ONNX_MODELS:
        raise ConfigError(f"unknown Triton model {model!r}; choose one of {tn.ONNX_MODELS}")
    _check_source(source, model)
    versions = version_folders(repo, model)
    if not versions:
        raise FileNotFoundError(f"{repo / model}: no version folder; `movierec export onnx`")
    current, candidate = str(versions[-1]), str(versions[-1] + 1)
    _serve_only(control, model, current)
    staging = repo / model / f"{STAGING_PREFIX}{candidate}"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging, ignore=shutil.ignore_patterns("__pycache__"))
    staging.rename(repo / model / candidate)  # Triton never sees half a version
    try:
        control.load(model)
        _serve_only(control, model, candidate)
        _probe(control, repo, model, candidate)
    except ReleaseError as exc:
        _set_aside(repo, model, candidate)
        control.load(model)
        raise ReleaseError(f"{model} {candidate} not released ({exc}); {current} serves") from exc
    started = now_iso()
    done = Release(
        backend=BACKEND,
        model=model,
        phase="released",
        control=current,
        candidate=candidate,
        percent=100,
        control_archive=f"{model}/{current}",
        candidate_archive=f"{model}/{candidate}",
        started_at=started,
        ended_at=started,
    )
    done.save(state_dir)
    log.info("%s: version %s serves, %s unloaded", model, candidate, current)
    return done


def rollback(control: TritonModelControl, repo: Path, state: Release, state_dir: Path) -> Release:
    """The version before the release serves again; the released one is moved aside."""
    if state.phase != "released":
        raise ConfigError(f"{state.model}: the last release ({state.candidate}) is {state.phase}")
    if not (repo / state.model / state.control).is_dir():
        raise FileNotFoundError(f"{repo / state.model / state.control}: nothing to roll back to")
    _set_aside(repo, state.model, state.candidate)
    control.load(state.model)
    _serve_only(control, state.model, state.control)
    undone = state.moved_to("rolled_back")
    undone.save(state_dir)
    log.info("%s: rolled back to version %s", state.model, state.control)
    return undone
