"""A batch of logged requests against the reference: every feature and every model's scores
compared (PSI, KS), as a ``DriftReport`` printed as text or JSON. When a threshold trips, the
report recommends a retrain (``movierec retrain``, docs/lifecycle.md): the models learned from a
distribution the traffic has left."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from training.monitoring.drift.reference import FEATURES, Reference
from training.monitoring.drift.request_log import LoggedRequest
from training.monitoring.drift.statistics import (
    KS_DRIFT_THRESHOLD,
    KS_MAX_P_VALUE,
    PSI_DRIFT_THRESHOLD,
    Comparison,
    compare_values,
)

RETRAIN_COMMAND = "movierec retrain"


def feature_values(
    requests: Sequence[LoggedRequest], popularity: Mapping[int, int]
) -> dict[str, list[float]]:
    """Per feature, the values a batch of requests shows (unknown items have popularity 0)."""
    values: dict[str, list[float]] = {name: [] for name in FEATURES}
    for request in requests:
        values["rating_value"].extend(request.ratings.values())
        values["item_popularity"].extend(popularity.get(item, 0) for item in request.ratings)
        values["profile_size"].append(len(request.ratings))
    return values


@dataclass(frozen=True)
class DriftReport:
    n_requests: int
    since: datetime | None
    until: datetime | None
    comparisons: list[Comparison]

    @property
    def drifted(self) -> bool:
        return any(c.drifted for c in self.comparisons)

    @property
    def retrain_because(self) -> list[str]:
        """What tripped a threshold, as "scope name" (empty: no retrain recommended)."""
        return [f"{c.scope} {c.name}" for c in self.comparisons if c.drifted]

    def recommendation(self) -> dict[str, Any]:
        because = self.retrain_because
        return {"retrain": bool(because), "because": because, "command": RETRAIN_COMMAND}

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_requests": self.n_requests,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "drifted": self.drifted,
            "thresholds": {
                "psi": PSI_DRIFT_THRESHOLD,
                "ks": KS_DRIFT_THRESHOLD,
                "ks_max_p_value": KS_MAX_P_VALUE,
            },
            "comparisons": [asdict(c) for c in self.comparisons],
            "recommendation": self.recommendation(),
        }

    def to_text(self) -> str:
        def fmt(value: float | None, spec: str) -> str:
            return "-" if value is None else format(value, spec)

        span = f"{self.since or 'start'} .. {self.until or 'now'}"
        lines = [
            f"drift report: {self.n_requests} requests, {span}",
            f"thresholds: PSI > {PSI_DRIFT_THRESHOLD}, or KS > {KS_DRIFT_THRESHOLD} "
            f"with p < {KS_MAX_P_VALUE}",
            f"{'scope':<11}{'name':<17}{'values':>8}{'PSI':>9}{'KS':>8}{'p-value':>10}  drift",
        ]
        for c in self.comparisons:
            verdict = "YES" if c.drifted else ("no" if not c.note else c.note)
            lines.append(
                f"{c.scope:<11}{c.name:<17}{c.n_values:>8}{fmt(c.psi, '.4f'):>9}"
                f"{fmt(c.ks_statistic, '.4f'):>8}{fmt(c.ks_pvalue, '.2e'):>10}  {verdict}"
            )
        lines.append("DRIFT DETECTED" if self.drifted else "no drift detected")
        if self.retrain_because:
            lines.append(
                f"recommendation: retrain ({RETRAIN_COMMAND}): drift in "
                + ", ".join(self.retrain_because)
            )
        return "\n".join(lines)


def compare_requests(
    reference: Reference,
    requests: Sequence[LoggedRequest],
    since: datetime | None = None,
    until: datetime | None = None,
    min_requests: int = 1,
) -> DriftReport:
    """Every feature, and the scores of every model with at least ``min_requests`` requests."""
    values = feature_values(requests, reference.item_popularity)
    comparisons = [
        compare_values("feature", name, reference.features.get(name), values[name])
        for name in FEATURES
    ]
    by_model: dict[str, list[LoggedRequest]] = {}
    for request in requests:
        by_model.setdefault(request.model, []).append(request)
    for model in sorted(by_model):
        if len(by_model[model]) < min_requests:
            continue
        scores = [s for request in by_model[model] for s in request.scores]
        comparisons.append(compare_values("prediction", model, reference.scores.get(model), scores))
    return DriftReport(len(requests), since, until, comparisons)
