"""The A/B experiments: deterministic, stored arm assignment and per-arm click-through statistics.

Two kinds: the models experiment (arms are models: a visitor's default model) and a release's
canary (arms are versions of one model: ``movierec release ... --canary PERCENT`` sends that
share of visitors to the new version and the rest to the old one; both sides read the release
file of ``training/serving/release/state.py``). A click is positive feedback on a shown
recommendation (thumbs up or "watched", ``contract.CLICK_KINDS``; the online click-through
metrics count the same). Each arm is compared with the first (control) arm by a two-sided
two-proportion z-test on CTR.
"""

from __future__ import annotations

import hashlib
import math
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from scipy.stats import norm
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from handlers import contract
from training.config import ConfigError, get_logger
from training.serving.release.state import BACKENDS, Release
from web.config import WebSettings
from web.tables import Assignment, Feedback, Impression, User

log = get_logger("web")

CLICK_KINDS = contract.CLICK_KINDS
SIGNIFICANCE_LEVEL = 0.05
PERCENT = 100


def _bucket(external_id: str, experiment: str, buckets: int) -> int:
    digest = hashlib.sha256(f"{experiment}:{external_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % buckets


def arm_for(external_id: str, experiment: str, arms: tuple[str, ...]) -> str:
    """The same user always lands in the same arm of the same experiment (no state needed)."""
    return arms[_bucket(external_id, experiment, len(arms))]


def canary_arm_for(external_id: str, release: Release) -> str:
    """The candidate version for ``release.percent`` % of users, the control for the rest."""
    in_canary = _bucket(external_id, release.experiment, PERCENT) < release.percent
    return release.candidate if in_canary else release.control


def _stored_arm(db: Session, user: User, experiment: str, arm: str) -> str:
    """The user's stored arm of ``experiment``; ``arm`` is stored on first sight."""
    stored = db.scalar(
        select(Assignment.arm).where(
            Assignment.user_id == user.id, Assignment.experiment == experiment
        )
    )
    if stored is not None:
        return stored
    db.add(Assignment(user_id=user.id, experiment=experiment, arm=arm))
    try:
        db.commit()
    except IntegrityError:  # a concurrent request stored it; same hash, same arm
        db.rollback()
    return arm


def assign(db: Session, user: User, experiment: str, arms: tuple[str, ...]) -> str:
    """The user's stored arm, assigning (and storing) it on first sight."""
    return _stored_arm(db, user, experiment, arm_for(user.external_id, experiment, arms))


class ReleaseWatch:
    """A model server's release file (``.run/release/<server>.json``), read again only when it
    changes: one stat per request, so a canary starts and ends without restarting the app."""

    def __init__(self, directory: Path, backend: str) -> None:
        self.directory, self.backend = Path(directory), backend
        self.path = self.directory / f"{backend}.json" if backend in BACKENDS else None
        self._seen: tuple[int, Release | None] | None = None
        self._lock = threading.Lock()

    def current(self) -> Release | None:
        if self.path is None:  # the in-process backend has no server to release to
            return None
        try:
            stamp = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return None
        with self._lock:
            if self._seen is None or self._seen[0] != stamp:
                try:
                    self._seen = (stamp, Release.load(self.directory, self.backend))
                except ConfigError as exc:  # a broken file must not break the pages
                    log.error("release file ignored: %s", exc)
                    self._seen = (stamp, None)
            return self._seen[1]


_watches: dict[tuple[Path, str], ReleaseWatch] = {}
_watches_lock = threading.Lock()


def release_watch(directory: Path, backend: str) -> ReleaseWatch:
    """One watch per file for the whole process (its threads share it)."""
    with _watches_lock:
        key = (Path(directory), backend)
        if key not in _watches:
            _watches[key] = ReleaseWatch(*key)
        return _watches[key]


def current_release(settings: WebSettings) -> Release | None:
    """The last release on the app's model server; None if none (or in-process models)."""
    return release_watch(settings.release_dir, settings.model_backend).current()


def pinned_versions(db: Session, user: User, release: Release | None) -> dict[str, str]:
    """{model: version} for a user in a canary: the version of their stored arm; {} otherwise
    (the server's default version answers)."""
    if release is None or not release.is_canary:
        return {}
    arm = _stored_arm(db, user, release.experiment, canary_arm_for(user.external_id, release))
    return {release.model: arm}


@dataclass(frozen=True)
class ArmStats:
    arm: str
    users: int
    impressions: int
    clicks: int
    z: float | None = None
    p_value: float | None = None

    @property
    def ctr(self) -> float:
        return self.clicks / self.impressions if self.impressions else 0.0

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < SIGNIFICANCE_LEVEL


def two_proportion_z_test(
    clicks_a: int, shown_a: int, clicks_b: int, shown_b: int
) -> tuple[float, float] | None:
    """(z, two-sided p) for H0: equal CTR, with the pooled standard error; None if undefined."""
    if shown_a == 0 or shown_b == 0:
        return None
    pooled = (clicks_a + clicks_b) / (shown_a + shown_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / shown_a + 1 / shown_b))
    if se == 0:
        return None
    z = (clicks_b / shown_b - clicks_a / shown_a) / se
    return z, float(2 * norm.sf(abs(z)))


def arm_stats(db: Session, experiment: str, arms: tuple[str, ...]) -> list[ArmStats]:
    """Impressions and clicks of each arm's own model (what the arm's users were served)."""
    users = dict(
        db.execute(
            select(Assignment.arm, func.count())
            .where(Assignment.experiment == experiment)
            .group_by(Assignment.arm)
        ).all()
    )
    shown = dict(
        db.execute(
            select(Impression.arm, func.count())
            .where(Impression.arm == Impression.model)
            .group_by(Impression.arm)
        ).all()
    )
    clicks = dict(
        db.execute(
            select(Feedback.arm, func.count())
            .where(Feedback.arm == Feedback.model, Feedback.kind.in_(CLICK_KINDS))
            .group_by(Feedback.arm)
        ).all()
    )
    return _with_tests(arms, users, shown, clicks)


def _with_tests(arms: tuple[str, ...], users: dict, shown: dict, clicks: dict) -> list[ArmStats]:
    control = arms[0]
    stats = []
    for arm in arms:
        test = None
        if arm != control:
            test = two_proportion_z_test(
                clicks.get(control, 0), shown.get(control, 0), clicks.get(arm, 0), shown.get(arm, 0)
            )
        stats.append(
            ArmStats(
                arm=arm,
                users=users.get(arm, 0),
                impressions=shown.get(arm, 0),
                clicks=clicks.get(arm, 0),
                z=test[0] if test else None,
                p_value=test[1] if test else None,
            )
        )
    return stats


def canary_stats(db: Session, release: Release) -> list[ArmStats]:
    """Per version arm of a canary: its users, and the impressions and clicks of the released
    model they were served while the canary ran (after their assignment, before its end)."""
    assigned = Assignment.experiment == release.experiment
    users = dict(
        db.execute(
            select(Assignment.arm, func.count()).where(assigned).group_by(Assignment.arm)
        ).all()
    )
    ended = datetime.fromisoformat(release.ended_at) if release.ended_at else None

    def during(table: type[Impression] | type[Feedback]) -> list[ColumnElement[bool]]:
        window = [
            assigned,
            table.model == release.model,
            table.created_at >= Assignment.assigned_at,
        ]
        return window if ended is None else [*window, table.created_at <= ended]

    shown = dict(
        db.execute(
            select(Assignment.arm, func.count())
            .join(Impression, Impression.user_id == Assignment.user_id)
            .where(*during(Impression))
            .group_by(Assignment.arm)
        ).all()
    )
    clicks = dict(
        db.execute(
            select(Assignment.arm, func.count())
            .join(Feedback, Feedback.user_id == Assignment.user_id)
            .where(*during(Feedback), Feedback.kind.in_(CLICK_KINDS))
            .group_by(Assignment.arm)
        ).all()
    )
    return _with_tests(release.arms, users, shown, clicks)
