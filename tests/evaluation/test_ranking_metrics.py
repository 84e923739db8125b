"""ranking_metrics, rating_metrics and top_k against examples computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from handlers import recommendation as rec
from training.metrics.ranking import ranking_metrics, rating_metrics, top_k

LOG2_3, LOG2_5 = math.log2(3), math.log2(5)

# 3 users x 5 items. u0 saw item 0, u1 item 2, u2 item 1 (train). Relevant = test >= 4:
#   u0 {1, 3} (item 4 is rated 2: not relevant), u1 {4}, u2 none (only a 3) -> not evaluated.
TRAIN = torch.tensor([[5.0, 0, 0, 0, 0], [0, 0, 3, 0, 0], [0, 5, 0, 0, 0]])
TEST = torch.tensor([[0.0, 4, 0, 5, 2], [0, 0, 0, 0, 4], [3, 0, 0, 0, 0]])
# Unseen items by score: u0 -> 4, 3, 2, 1 (hits 0 1 0 1); u1 -> 1, 4, 0, 3 (hits 0 1 0 0).
SCORES = torch.tensor([[9.0, 0.1, 0.5, 0.8, 0.9], [0.2, 0.9, 9.0, 0.1, 0.5], [1, 2, 3, 4, 5]])


def test_top_k_skips_seen_items_and_orders_by_score():
    assert top_k(SCORES, TRAIN > 0, 4).tolist()[:2] == [[4, 3, 2, 1], [1, 4, 0, 3]]


def test_top_k_caps_k_at_the_catalogue_size():
    assert top_k(torch.tensor([[0.3, 0.1]]), torch.zeros(1, 2, dtype=torch.bool), 5).shape == (1, 2)


@pytest.fixture(scope="module")
def figures() -> dict[str, float]:
    return ranking_metrics(SCORES, TRAIN, TEST, [2, 4], threshold=4)


def test_only_users_with_a_relevant_item_count(figures):
    assert figures["n_users"] == 2


def test_precision_by_hand(figures):
    # K=2: u0 1/2, u1 1/2. K=4: u0 2/4, u1 1/4 -> 0.375.
    assert figures["precision@2"] == pytest.approx(0.5)
    assert figures["precision@4"] == pytest.approx(0.375)


def test_recall_by_hand(figures):
    # K=2: u0 1 of 2 relevant, u1 1 of 1 -> 0.75. K=4: both find all -> 1.
    assert figures["recall@2"] == pytest.approx(0.75)
    assert figures["recall@4"] == pytest.approx(1.0)


def test_ndcg_by_hand(figures):
    # K=2: u0 DCG 1/log2(3), IDCG 1 + 1/log2(3); u1 DCG 1/log2(3), IDCG 1.
    u0 = (1 / LOG2_3) / (1 + 1 / LOG2_3)
    u1 = 1 / LOG2_3
    assert figures["ndcg@2"] == pytest.approx((u0 + u1) / 2, abs=1e-6)
    # K=4: u0 DCG 1/log2(3) + 1/log2(5), same IDCG; u1 unchanged.
    u0 = (1 / LOG2_3 + 1 / LOG2_5) / (1 + 1 / LOG2_3)
    assert figures["ndcg@4"] == pytest.approx((u0 + u1) / 2, abs=1e-6)


def test_map_by_hand(figures):
    # K=2: u0 AP = (1/2) / min(2 relevant, 2) = 0.25; u1 AP = (1/2) / 1 = 0.5 -> 0.375.
    assert figures["map@2"] == pytest.approx(0.375)
    # K=4: u0 AP = (1/2 + 2/4) / 2 = 0.5; u1 0.5 -> 0.5.
    assert figures["map@4"] == pytest.approx(0.5)


def test_no_relevant_user_gives_zeros():
    figures = ranking_metrics(SCORES[2:], TRAIN[2:], TEST[2:], [2])
    assert figures["ndcg@2"] == 0.0 and figures["precision@2"] == 0.0


def test_perfect_ranking_scores_one():
    # u0's relevant items scored highest -> every figure is 1 at K = number of relevant items.
    scores = torch.tensor([[0.0, 0.9, 0.1, 0.8, 0.2]])
    figures = ranking_metrics(scores, TRAIN[:1], TEST[:1], [2])
    assert figures["precision@2"] == figures["recall@2"] == figures["map@2"] == 1.0
    assert figures["ndcg@2"] == pytest.approx(1.0)


def test_rating_metrics_by_hand():
    # Observed pairs (pred, true): (3, 4), (2, 2), (5, 3): errors -1, 0, 2.
    predicted = torch.tensor([[3.0, 4.0], [2.0, 5.0]])
    targets = torch.tensor([[4.0, 0.0], [2.0, 3.0]])
    figures = rating_metrics(predicted, targets)
    assert figures["rmse"] == pytest.approx(math.sqrt(5 / 3))  # (1 + 0 + 4) / 3
    assert figures["mae"] == pytest.approx(1.0)
    # Mean of targets 3: SS_tot = 1 + 1 + 0 = 2, SS_res = 5 -> R² = 1 - 5/2.
    assert figures["r2"] == pytest.approx(-1.5)


def test_rating_metrics_without_targets_are_nan():
    assert math.isnan(rating_metrics(torch.ones(1, 2), torch.zeros(1, 2))["rmse"])


# -- the one top-k: handlers.recommendation.top_k_columns ---------------------------------------


def test_top_k_columns_breaks_ties_by_the_lower_column():
    scores = torch.tensor([[1.0, 3.0, 3.0, 2.0, 3.0], [0.5, 0.5, 0.5, 0.5, 0.5]])
    everything = torch.ones(2, 5, dtype=torch.bool)
    assert rec.top_k_columns(scores, everything, 3).tolist() == [[1, 2, 4], [0, 1, 2]]
    # Masked columns drop out of the tie; the next tied candidate takes their place.
    mask = torch.tensor([[True, True, False, True, True], [False, True, True, True, True]])
    assert rec.top_k_columns(scores, mask, 3).tolist() == [[1, 4, 3], [1, 2, 3]]


def test_top_k_columns_never_puts_a_masked_column_before_a_candidate():
    # The masked columns score highest; they only fill a row's list after its candidates.
    scores = torch.tensor([[9.0, 1.0, 9.0, 0.5], [0.0, 8.0, 7.0, 9.0]])
    mask = torch.tensor([[False, True, False, True], [True, False, True, False]])
    assert rec.top_k_columns(scores, mask, 2).tolist() == [[1, 3], [2, 0]]
    full = rec.top_k_columns(scores, mask, 4)
    assert full[:, :2].tolist() == [[1, 3], [2, 0]]
    assert not mask.gather(1, full[:, 2:]).any()  # the filler: non-candidates only
    assert rec.top_k_columns(scores, mask, 10).shape == (2, 4)  # k capped at the catalogue
    assert rec.top_k(scores[0], mask[0], 4) == [1, 3]  # the handlers' list drops the filler


def test_a_candidate_scored_minus_infinity_still_comes_before_masked_columns():
    scores = torch.tensor([5.0, -math.inf, 1.0])
    mask = torch.tensor([False, True, True])
    assert rec.top_k(scores, mask, 2) == [2, 1]


def _reference_top_k(scores: list[float], candidates: list[bool], k: int) -> list[int]:
    """Best score first, ties to the lower column, candidates only."""
    columns = [c for c, ok in enumerate(candidates) if ok]
    return sorted(columns, key=lambda c: (-scores[c], c))[:k]


def test_the_evaluator_ranks_the_lists_the_handlers_serve():
    generator = torch.Generator().manual_seed(0)
    # Scores of a few distinct values: many ties, as softmax underflow or int8 can give.
    scores = torch.randint(0, 4, (30, 12), generator=generator).float()
    seen = torch.rand(30, 12, generator=generator) < 0.4
    seen[0] = True  # a user with no candidates at all
    seen[1, :11] = True  # one with a single candidate
    k = 5
    lists = top_k(scores, seen, k)
    assert lists.shape == (30, k)
    for row in range(30):
        served = rec.top_k(scores[row], ~seen[row], k)
        assert served == _reference_top_k(scores[row].tolist(), (~seen[row]).tolist(), k)
        # The evaluator's list starts with the served one (then non-candidates, never hits
        # when test and train are disjoint).
        assert lists[row, : len(served)].tolist() == served
        assert bool(seen[row, lists[row, len(served) :]].all())


def test_distinct_scores_take_topks_order_and_agree_with_the_reference():
    """Without ties the one top-k takes torch.topk's order; it must be the same lists."""
    generator = torch.Generator().manual_seed(1)
    scores = torch.rand(40, 300, generator=generator)
    seen = torch.rand(40, 300, generator=generator) < 0.1
    lists = top_k(scores, seen, 10)
    for row in range(40):
        expected = _reference_top_k(scores[row].tolist(), (~seen[row]).tolist(), 10)
        assert lists[row].tolist() == expected
        assert rec.top_k(scores[row], ~seen[row], 10) == expected
