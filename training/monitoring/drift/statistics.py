"""The drift statistics: PSI over bins fixed by a reference distribution, the two-sample KS
statistic against the reference's sample, and the rule that flags a distribution as drifted."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

# Reference samples kept for the KS test; enough for a KS precision of about 0.02.
REFERENCE_SAMPLE_SIZE = 5000
REFERENCE_SEED = 42
PSI_QUANTILE_BINS = 10
# Empty bins would make PSI infinite; a small floor keeps it finite and still large.
PSI_EPSILON = 1e-4
PSI_DRIFT_THRESHOLD = 0.2
KS_DRIFT_THRESHOLD = 0.1
KS_MAX_P_VALUE = 0.01
ROUND_DIGITS = 6


def psi(
    expected: Sequence[float] | np.ndarray,
    actual: Sequence[float] | np.ndarray,
    epsilon: float = PSI_EPSILON,
) -> float:
    """Population stability index of two proportion vectors over the same bins."""
    e = np.clip(np.asarray(expected, dtype=float), epsilon, None)
    a = np.clip(np.asarray(actual, dtype=float), epsilon, None)
    if e.shape != a.shape:
        raise ValueError(f"bins differ: expected {e.shape}, actual {a.shape}")
    return float(np.sum((a - e) * np.log(a / e)))


def ks(reference: Sequence[float], actual: Sequence[float]) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic and p-value."""
    result = stats.ks_2samp(np.asarray(reference, float), np.asarray(actual, float))
    return float(result.statistic), float(result.pvalue)


@dataclass(frozen=True)
class Distribution:
    """A reference distribution: PSI bins (inner edges, bin i = (edges[i-1], edges[i]]), the
    reference's share in each bin, and a sample for KS."""

    edges: list[float]
    proportions: list[float]
    sample: list[float]

    @classmethod
    def from_values(
        cls,
        values: Iterable[float],
        discrete: bool = False,
        sample_size: int = REFERENCE_SAMPLE_SIZE,
        seed: int = REFERENCE_SEED,
    ) -> Distribution:
        data = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, float)
        if data.size == 0:
            raise ValueError("a reference distribution needs at least one value")
        if discrete:
            levels = np.unique(data)
            edges = (levels[:-1] + levels[1:]) / 2
        else:
            quantiles = np.linspace(0, 1, PSI_QUANTILE_BINS + 1)[1:-1]
            edges = np.unique(np.quantile(data, quantiles))
        counts = np.bincount(np.digitize(data, edges, right=True), minlength=edges.size + 1)
        sample = data
        if data.size > sample_size:
            sample = np.random.default_rng(seed).choice(data, sample_size, replace=False)
        return cls(
            edges=[round(float(e), ROUND_DIGITS) for e in edges],
            proportions=[round(float(p), ROUND_DIGITS) for p in counts / data.size],
            sample=[round(float(v), ROUND_DIGITS) for v in np.sort(sample)],
        )

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Distribution:
        return cls(list(raw["edges"]), list(raw["proportions"]), list(raw["sample"]))

    def bin_proportions(self, values: Sequence[float]) -> np.ndarray:
        data = np.asarray(values, float)
        counts = np.bincount(
            np.digitize(data, self.edges, right=True), minlength=len(self.edges) + 1
        )
        return counts / max(data.size, 1)

    def compare(self, values: Sequence[float]) -> tuple[float, float, float]:
        """(PSI, KS statistic, KS p-value) of ``values`` against this reference."""
        index = psi(self.proportions, self.bin_proportions(values))
        statistic, p_value = ks(self.sample, values)
        return index, statistic, p_value


@dataclass(frozen=True)
class Comparison:
    """One distribution's drift figures; ``scope`` is "feature" or "prediction"."""

    scope: str
    name: str
    n_values: int
    psi: float | None
    ks_statistic: float | None
    ks_pvalue: float | None
    drifted: bool
    note: str = ""


def is_drift(index: float, statistic: float, p_value: float) -> bool:
    return index > PSI_DRIFT_THRESHOLD or (
        statistic > KS_DRIFT_THRESHOLD and p_value < KS_MAX_P_VALUE
    )


def compare_values(
    scope: str, name: str, reference: Distribution | None, values: list[float]
) -> Comparison:
    """``values`` against ``reference``; no figures when either is missing."""
    if reference is None:
        return Comparison(scope, name, len(values), None, None, None, False, "no reference")
    if not values:
        return Comparison(scope, name, 0, None, None, None, False, "no values")
    index, statistic, p_value = reference.compare(values)
    return Comparison(
        scope, name, len(values), index, statistic, p_value, is_drift(index, statistic, p_value)
    )
