"""A/B assignment is deterministic and balanced; the z-test matches the textbook formula."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from scipy.stats import norm

from web.experiment import arm_for, two_proportion_z_test


def test_assignment_is_deterministic_and_roughly_balanced():
    arms = ("sae", "rbm")
    assert arm_for("web:abc", "exp", arms) == arm_for("web:abc", "exp", arms)
    counts = Counter(arm_for(f"web:{i}", "exp", arms) for i in range(2000))
    assert set(counts) == set(arms)
    assert abs(counts["sae"] - counts["rbm"]) < 200
    changed = sum(arm_for(f"web:{i}", "exp", arms) != arm_for(f"web:{i}", "exp2", arms)
                  for i in range(200))  # fmt: skip
    assert 50 < changed < 150  # another experiment reshuffles users


def test_two_proportion_z_test_against_the_formula():
    z, p = two_proportion_z_test(30, 1000, 50, 1000)
    pooled = 80 / 2000
    expected_z = (0.05 - 0.03) / math.sqrt(pooled * (1 - pooled) * (2 / 1000))
    assert z == pytest.approx(expected_z)
    assert p == pytest.approx(2 * norm.sf(expected_z))
    assert p < 0.05
    assert two_proportion_z_test(0, 0, 1, 10) is None
    assert two_proportion_z_test(0, 10, 0, 10) is None  # no clicks anywhere: undefined
