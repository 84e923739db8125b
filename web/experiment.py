"""The A/B experiment: deterministic, stored arm assignment and per-arm click-through statistics.

A click is positive feedback on a shown recommendation (thumbs up or "watched",
``contract.CLICK_KINDS``; the online click-through metrics count the same). Each arm is
compared with the first (control) arm by a two-sided two-proportion z-test on CTR.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from scipy.stats import norm
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from handlers import contract
from web.tables import Assignment, Feedback, Impression, User

CLICK_KINDS = contract.CLICK_KINDS
SIGNIFICANCE_LEVEL = 0.05


def arm_for(external_id: str, experiment: str, arms: tuple[str, ...]) -> str:
    """The same user always lands in the same arm of the same experiment (no state needed)."""
    digest = hashlib.sha256(f"{experiment}:{external_id}".encode()).digest()
    return arms[int.from_bytes(digest[:8], "big") % len(arms)]


def assign(db: Session, user: User, experiment: str, arms: tuple[str, ...]) -> str:
    """The user's stored arm, assigning (and storing) it on first sight."""
    stored = db.scalar(
        select(Assignment.arm).where(
            Assignment.user_id == user.id, Assignment.experiment == experiment
        )
    )
    if stored is not None:
        return stored
    arm = arm_for(user.external_id, experiment, arms)
    db.add(Assignment(user_id=user.id, experiment=experiment, arm=arm))
    try:
        db.commit()
    except IntegrityError:  # a concurrent request stored it; same hash, same arm
        db.rollback()
    return arm


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
