"""Assertions shared by the Triton tests."""

from __future__ import annotations

import numpy as np

ATOL = 1e-5


def assert_valid_top_k(scores, ratings, item_ids, top_ids, top_scores, atol=ATOL) -> None:
    """top_ids are the best unrated items by ``scores``, best first, whatever the tie order."""
    column = {item: index for index, item in enumerate(item_ids)}
    columns = np.vectorize(column.__getitem__)(top_ids)
    rows = np.arange(len(scores))[:, None]
    assert np.allclose(scores[rows, columns], top_scores, atol=atol)
    assert (ratings[rows, columns] == 0).all(), "a rated item was recommended"
    assert (np.diff(top_scores, axis=1) <= atol).all(), "top_scores are not sorted"
    left_out = np.where(ratings > 0, -np.inf, scores)
    left_out[rows, columns] = -np.inf
    assert (left_out.max(axis=1) <= top_scores[:, -1] + atol).all(), "a better item was left out"
