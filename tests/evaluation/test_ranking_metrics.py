"""ranking_metrics, rating_metrics and top_k against examples computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

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
