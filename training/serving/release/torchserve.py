"""A new model version on a running TorchServe, with no request lost.

The steps, through the management API (``training.serving.torchserve_management``):

1. register the new archive as another version of the model, beside the running one;
2. wait until its workers are READY and probe it with a real prediction (which must name it);
3. make it the default version (a prediction that names no version now goes to it);
4. drain the old version (its queue stays empty for ``quiet_s``) and unregister it.

A canary stops after step 2: the web app routes a share of its visitors to the new version
(a prediction naming the version) while the rest keep the default; ``promote`` runs steps 3-4,
``rollback`` drains and unregisters the new version instead. A finished release can be rolled
back too: the old archive is registered again and the same steps run the other way.

The model store keeps one archive per version (``<model>-<version>.mar``) and ``<model>.mar``
always holds the version being served, so a restart of TorchServe serves it too.
"""

from __future__ import annotations

import shutil
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from handlers import contract
from handlers.serving_artifact import ARTIFACT_FILE, ServingArtifact
from training.config import ConfigError, get_logger
from training.serving.processes import ServiceUnavailableError
from training.serving.release.state import (
    CANARY_MAX_PERCENT,
    CANARY_MIN_PERCENT,
    Release,
    check_version,
    now_iso,
)
from training.serving.torchserve_client import TorchServeError
from training.serving.torchserve_management import TorchServeManagement, VersionState
from training.serving.torchserve_snapshot import archive_registration

log = get_logger("serving")

BACKEND = "torchserve"
READY_TIMEOUT_S = 180.0
# The old version is unregistered once its queue has stayed empty this long: requests routed to
# it just before the default moved (or pinned to it by a canary visitor's page) get answered.
DRAIN_QUIET_S = 2.0
DRAIN_TIMEOUT_S = 60.0
POLL_S = 0.2
# The probe asks for recommendations from a user who loved the catalogue's first few films.
PROBE_ITEMS = 5
PROBE_K = 3


class ReleaseError(ServiceUnavailableError):
    """A step of a release failed; what was served before is still served (exit code 4)."""


@dataclass(frozen=True)
class ModelStore:
    """The archives of every version of each model, in TorchServe's model store."""

    root: Path

    def served(self, model: str) -> Path:
        """What a (re)start of TorchServe registers (``torchserve_snapshot``)."""
        return self.root / f"{model}.mar"

    def versioned(self, model: str, version: str) -> Path:
        return self.root / f"{model}-{version}.mar"

    def keep(self, source: Path, dest: Path) -> Path:
        """Copy ``source`` to ``dest`` atomically (a TorchServe start never reads half a file)."""
        if source.resolve() != dest.resolve():
            tmp = dest.with_suffix(".mar.tmp")
            shutil.copyfile(source, tmp)
            tmp.replace(dest)
        return dest


def archive_version(mar: Path) -> str:
    """The version in an archive's manifest (what TorchServe registers it as)."""
    try:
        version, _ = archive_registration(mar)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise ConfigError(f"{mar}: not a TorchServe archive ({exc})") from exc
    return check_version(version, str(mar))


def probe_body(mar: Path) -> dict[str, object]:
    """A request the archive's own catalogue can answer with a personal ranking."""
    with zipfile.ZipFile(mar) as archive:
        artifact = ServingArtifact.from_bytes(archive.read(ARTIFACT_FILE), f"{mar}:{ARTIFACT_FILE}")
    liked = {str(item): contract.MAX_RATING for item in artifact.item_ids[:PROBE_ITEMS]}
    return {"ratings": liked, "k": PROBE_K}


def _keep_control(store: ModelStore, model: str, current: VersionState) -> Path | None:
    """Every version keeps its own archive, so a rollback can register it again. None when the
    served version's archive is gone (``export --from-registry`` overwrote ``<model>.mar``)."""
    kept = store.versioned(model, current.version)
    registered = store.root / current.archive
    if registered.is_file() and archive_version(registered) == current.version:
        return store.keep(registered, kept)
    if kept.is_file():
        return kept
    log.warning(
        "%s %s: no archive of it is left in %s; a finished release cannot be rolled back",
        model, current.version, store.root,
    )  # fmt: skip
    return None


def _wait_ready(
    client: TorchServeManagement, model: str, version: str, timeout_s: float
) -> VersionState:
    deadline = time.monotonic() + timeout_s
    while True:
        state = client.version(model, version)
        if state.ready:
            return state
        if time.monotonic() >= deadline:
            raise ReleaseError(
                f"{model} {version}: workers {list(state.workers)} not READY after {timeout_s:g}s; "
                "see TorchServe's model_log.log"
            )
        time.sleep(POLL_S)


def drain(
    client: TorchServeManagement,
    model: str,
    version: str,
    quiet_s: float = DRAIN_QUIET_S,
    timeout_s: float = DRAIN_TIMEOUT_S,
) -> None:
    """Return once ``version``'s queue has been empty for ``quiet_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    quiet_since: float | None = None
    while True:
        now = time.monotonic()
        pending = client.version(model, version).pending
        if pending:
            quiet_since = None
        else:
            quiet_since = now if quiet_since is None else quiet_since
            if now - quiet_since >= quiet_s:
                return
        if now >= deadline:
            raise ReleaseError(
                f"{model} {version}: still {pending} queued requests after {timeout_s:g}s"
            )
        time.sleep(POLL_S)


def _register(
    client: TorchServeManagement, archive: Path, model: str, version: str, ready_timeout_s: float
) -> None:
    """Register ``archive`` (in the model store) as ``version`` and probe it; unregister it again
    when it does not answer as it should, so a failed release leaves nothing behind."""
    _, settings = archive_registration(archive)
    try:
        client.register_version(
            archive.name,
            model,
            workers=settings["minWorkers"],
            batch_size=settings["batchSize"],
            max_batch_delay_ms=settings["maxBatchDelay"],
            response_timeout_s=settings["responseTimeout"],
        )
    except TorchServeError as exc:  # TorchServe removes what it could not start
        raise ReleaseError(f"{model} {version}: TorchServe refused {archive.name}: {exc}") from exc
    try:
        _wait_ready(client, model, version, ready_timeout_s)
        answer = client.recommend_version(model, version, probe_body(archive))
        named = answer.get("version")
        if named != version or not answer.get("recommendations"):
            raise ReleaseError(
                f"{model} {version}: the probe's answer names version {named!r} and holds "
                f"{len(answer.get('recommendations') or [])} recommendations"
            )
    except (ReleaseError, TorchServeError) as exc:
        client.unregister_version(model, version)
        raise ReleaseError(f"{model} {version} not released: {exc}") from exc
    log.info("%s %s registered, READY and probed", model, version)


def _swap_default(
    client: TorchServeManagement, release: Release, to: str, away: str, state_dir: Path,
    quiet_s: float,
) -> None:  # fmt: skip
    """Default -> ``to``; the release file says so (the web app stops pinning ``away``);
    ``away`` is drained and unregistered."""
    client.set_default(release.model, to)
    release.save(state_dir)
    drain(client, release.model, away, quiet_s)
    client.unregister_version(release.model, away)
    log.info("%s: %s serves, %s drained and unregistered", release.model, to, away)


def release(
    client: TorchServeManagement,
    store: ModelStore,
    model: str,
    mar: Path,
    state_dir: Path,
    canary_percent: int | None = None,
    ready_timeout_s: float = READY_TIMEOUT_S,
    quiet_s: float = DRAIN_QUIET_S,
) -> Release:
    """Serve ``mar`` as ``model``'s new version (a canary of ``canary_percent`` % if given)."""
    if model not in contract.SERVED_MODELS:
        raise ConfigError(f"unknown model {model!r}; choose one of {contract.SERVED_MODELS}")
    if canary_percent is not None and not (
        CANARY_MIN_PERCENT <= canary_percent <= CANARY_MAX_PERCENT
    ):
        raise ConfigError(
            f"--canary {canary_percent}: a share from {CANARY_MIN_PERCENT} to "
            f"{CANARY_MAX_PERCENT} percent"
        )
    if not mar.is_file():
        raise FileNotFoundError(f"{mar}: no such archive; `movierec export torchserve` builds one")
    candidate = archive_version(mar)
    registered = client.versions(model)
    current = client.default_version(model)
    if candidate == current.version:
        raise ConfigError(f"{mar}: version {candidate} is already what {model} serves")
    others = [v.version for v in registered if v.version != current.version]
    if others:
        raise ConfigError(
            f"{model}: version(s) {others} registered beside {current.version} (a canary?); "
            "`movierec release promote` or `rollback` first"
        )
    control_archive = _keep_control(store, model, current)
    candidate_archive = store.keep(mar, store.versioned(model, candidate))
    _register(client, candidate_archive, model, candidate, ready_timeout_s)
    state = Release(
        backend=BACKEND,
        model=model,
        phase="canary",
        control=current.version,
        candidate=candidate,
        percent=canary_percent or 100,
        control_archive=control_archive.name if control_archive else "",
        candidate_archive=candidate_archive.name,
        started_at=now_iso(),
    )
    if canary_percent is not None:
        state.save(state_dir)
        log.info("%s: canary %s for %d %% of visitors", model, candidate, canary_percent)
        return state
    return promote(client, store, state, state_dir, quiet_s)


def promote(
    client: TorchServeManagement,
    store: ModelStore,
    state: Release,
    state_dir: Path,
    quiet_s: float = DRAIN_QUIET_S,
) -> Release:
    """The canary's version becomes the only one."""
    if not state.is_canary:
        raise ConfigError(
            f"{state.model}: no canary to promote (the last release is {state.phase})"
        )
    done = state.moved_to("released")
    _swap_default(client, done, state.candidate, state.control, state_dir, quiet_s)
    store.keep(store.root / state.candidate_archive, store.served(state.model))
    return done


def rollback(
    client: TorchServeManagement,
    store: ModelStore,
    state: Release,
    state_dir: Path,
    ready_timeout_s: float = READY_TIMEOUT_S,
    quiet_s: float = DRAIN_QUIET_S,
) -> Release:
    """Back to the control version: a canary's candidate goes; a finished release is undone."""
    model = state.model
    undone = state.moved_to("rolled_back")
    if state.phase == "canary":
        undone.save(state_dir)  # the web app stops sending visitors to the candidate
        drain(client, model, state.candidate, quiet_s)
        client.unregister_version(model, state.candidate)
    elif state.phase == "released":
        if not state.control_archive:
            raise ConfigError(f"{model} {state.control}: no archive of it was kept to roll back to")
        _register(client, store.root / state.control_archive, model, state.control, ready_timeout_s)
        _swap_default(client, undone, state.control, state.candidate, state_dir, quiet_s)
        store.keep(store.root / state.control_archive, store.served(model))
    else:
        raise ConfigError(f"{model}: the last release ({state.candidate}) is already rolled back")
    log.info("%s: rolled back to %s", model, state.control)
    return undone
