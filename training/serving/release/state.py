"""What a release left behind: one small JSON file per model server under ``.run/release/``.

``movierec release`` writes it; ``promote`` and ``rollback`` read it to know what to end; the
web app reads it (``web/experiment.py``) to route a canary's share of visitors to the new
version and to name the versions on the experiment page. Writes are atomic (a reader never sees
half a file). Standard library and ``training.config`` only, so the web app imports it cheaply.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from training.config import ConfigError, Paths

STATE_DIR = Path(".run") / "release"
BACKENDS = ("torchserve", "triton")
Phase = Literal["canary", "released", "rolled_back"]
PHASES: tuple[Phase, ...] = ("canary", "released", "rolled_back")
# A version is stored as an A/B arm by the web app (web/tables.py: String(16) arms).
MAX_VERSION_LENGTH = 16
CANARY_MIN_PERCENT, CANARY_MAX_PERCENT = 1, 99
EXPERIMENT_PREFIX = "canary"


def state_dir(root: Path | str | None = None) -> Path:
    """``<root>/.run/release``: where the CLI and the web app look for the release files."""
    return Paths(root).root / STATE_DIR


def state_path(directory: Path, backend: str) -> Path:
    if backend not in BACKENDS:
        raise ConfigError(f"unknown model server {backend!r}; choose one of {BACKENDS}")
    return Path(directory) / f"{backend}.json"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def check_version(version: str, where: str) -> str:
    """A model version the web app can store as an arm and put in a URL path."""
    if not version or len(version) > MAX_VERSION_LENGTH or "/" in version:
        raise ConfigError(
            f"{where}: model version {version!r} must be 1-{MAX_VERSION_LENGTH} characters "
            "without '/'"
        )
    return version


@dataclass(frozen=True)
class Release:
    """One model's move from ``control`` (served before) to ``candidate`` (the new version).

    ``phase``: "canary" while both serve (``percent`` of visitors get the candidate),
    "released" once the candidate is the only version, "rolled_back" once the control is again.
    """

    backend: str
    model: str
    phase: Phase
    control: str
    candidate: str
    percent: int
    control_archive: str
    candidate_archive: str
    started_at: str
    ended_at: str | None = None

    @property
    def experiment(self) -> str:
        """The A/B experiment name its canary's visitors are assigned under."""
        return f"{EXPERIMENT_PREFIX}:{self.model}:{self.control}>{self.candidate}"

    @property
    def arms(self) -> tuple[str, str]:
        """Control first: the experiment page compares the candidate with it."""
        return (self.control, self.candidate)

    @property
    def is_canary(self) -> bool:
        return self.phase == "canary"

    @property
    def serving(self) -> str:
        """The version a visitor outside the canary gets (the default version)."""
        return self.candidate if self.phase == "released" else self.control

    def moved_to(self, phase: Phase) -> Release:
        ended = None if phase == "canary" else now_iso()
        return replace(self, phase=phase, ended_at=ended)

    def save(self, directory: Path) -> Path:
        path = state_path(directory, self.backend)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1) + "\n", encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, directory: Path, backend: str) -> Release | None:
        """The model server's last release, None if it never had one."""
        path = state_path(directory, backend)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            release = cls(**raw)
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{path}: not a release state file ({exc}); remove it") from exc
        if release.phase not in PHASES:
            raise ConfigError(f"{path}: unknown phase {release.phase!r}")
        return release
