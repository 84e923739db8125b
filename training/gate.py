"""The promotion gate: a candidate replaces the champion only when it is not worse on the figures
its model is judged by, within the tolerances of ``params.yaml``'s ``gate`` section.

SAE: test RMSE (lower is better) and served NDCG@k, the figure of the TorchServe form; RBM: test
NDCG@k. Both models are scored by the caller on the same data with the one protocol
(training/retrain.py); this module only compares, so the rule reads in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from handlers import contract
from training.config import GateParams

RMSE = "rmse"
NDCG = "ndcg"
SERVED_NDCG = "served_ndcg"
PROMOTED = "promoted"
REJECTED = "rejected"


@dataclass(frozen=True)
class Criterion:
    figure: str  # key in the figures dicts
    higher_is_better: bool
    tolerance: float


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reasons: list[str] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        return PROMOTED if self.promote else REJECTED

    @property
    def summary(self) -> str:
        return "; ".join(self.reasons)


def criteria(model: str, gate: GateParams) -> tuple[Criterion, ...]:
    if model == contract.SAE:
        return (
            Criterion(RMSE, False, gate.sae.rmse_tolerance),
            Criterion(SERVED_NDCG, True, gate.sae.ndcg_tolerance),
        )
    if model == contract.RBM:
        return (Criterion(NDCG, True, gate.rbm.ndcg_tolerance),)
    raise KeyError(f"no gate is defined for {model!r}")


def judge(
    model: str,
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    gate: GateParams,
) -> GateDecision:
    """Promote when every criterion holds: the candidate is at most ``tolerance`` worse."""
    if champion is None:
        return GateDecision(True, ["no champion yet"])
    reasons, promote = [], True
    for rule in criteria(model, gate):
        new, old = candidate[rule.figure], champion[rule.figure]
        worse_by = (old - new) if rule.higher_is_better else (new - old)
        holds = worse_by <= rule.tolerance
        promote &= holds
        change = f"worse by {worse_by:.4f}" if worse_by > 0 else f"better by {-worse_by:.4f}"
        relation = "within" if holds else "beyond"
        reasons.append(
            f"{rule.figure} {new:.4f} vs champion {old:.4f} "
            f"({change}, {relation} tolerance {rule.tolerance})"
        )
    return GateDecision(promote, reasons)
