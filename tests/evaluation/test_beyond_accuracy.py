"""Coverage, diversity, novelty, cold-start buckets and business figures on tiny cases."""

from __future__ import annotations

import math

import pytest
import torch

from training.metrics.beyond_accuracy import (
    bucket_masks,
    business_figures,
    catalog_coverage,
    genre_matrix,
    hit_rate,
    intra_list_diversity,
    item_cold_start,
    item_popularity,
    median_popularity,
    novelty,
    user_cold_start,
)

# Items 0..4: {A, B}, {B}, {C}, {}, {}.
GENRES = genre_matrix([["A", "B"], ["B"], ["C"], [], []])


def test_genre_matrix_has_one_column_per_genre():
    assert GENRES.shape == (5, 3)
    assert GENRES.sum(dim=1).tolist() == [2, 1, 1, 0, 0]


def test_catalog_coverage_counts_distinct_items():
    # Lists {0, 1} and {1, 2}: 3 distinct items of 5.
    assert catalog_coverage(torch.tensor([[0, 1], [1, 2]]), 5) == pytest.approx(0.6)


def test_intra_list_diversity_by_hand():
    # [0, 1]: Jaccard({A,B}, {B}) = 1/2 -> distance 0.5. [1, 2]: disjoint -> 1. Mean 0.75.
    assert intra_list_diversity(torch.tensor([[0, 1], [1, 2]]), GENRES) == pytest.approx(0.75)
    # [0, 1, 2]: pairs 0.5, 1, 1 -> 2.5 / 3.
    assert intra_list_diversity(torch.tensor([[0, 1, 2]]), GENRES) == pytest.approx(2.5 / 3)


def test_items_without_genres_count_as_identical():
    assert intra_list_diversity(torch.tensor([[3, 4]]), GENRES) == 0.0


def test_single_item_lists_have_no_diversity():
    assert math.isnan(intra_list_diversity(torch.tensor([[0]]), GENRES))


def test_novelty_by_hand():
    # 4 users; item 0 rated by 4, item 1 by 2, item 2 by 1, item 3 by nobody (counts as 1).
    train = torch.tensor([[5.0, 4, 3, 0], [4, 0, 0, 0], [3, 2, 0, 0], [1, 0, 0, 0]])
    popularity = item_popularity(train)
    assert popularity.tolist() == [4, 2, 1, 0]
    # Self-information: -log2(4/4) = 0, -log2(2/4) = 1, -log2(1/4) = 2, -log2(1/4) = 2.
    assert novelty(torch.tensor([[0, 1], [2, 3]]), popularity, 4) == pytest.approx(1.25)


def test_bucket_masks_cover_half_open_ranges():
    buckets = bucket_masks(torch.tensor([0, 1, 19, 20, 150]), (1, 20))
    assert [label for label, _ in buckets] == ["[1,20)", "[20+)"]
    assert buckets[0][1].tolist() == [False, True, True, False, False]
    assert buckets[1][1].tolist() == [False, False, False, True, True]


# Cold start: users with 1, 2 and 3 train ratings; items rated 3, 2, 1 and 0 times in train.
CS_TRAIN = torch.tensor([[5.0, 0, 0, 0], [5, 4, 0, 0], [5, 4, 3, 0]])
CS_TEST = torch.tensor([[0.0, 5, 0, 0], [0, 0, 0, 4], [0, 0, 0, 5]])
# The same scores for everyone; top-1 unseen: u0 -> item 1 (hit), u1 -> 2 (miss), u2 -> 3 (hit).
CS_SCORES = torch.tensor([[4.0, 3, 2, 1]]).expand(3, -1)


def test_user_cold_start_by_hand():
    rows = user_cold_start(
        CS_SCORES, CS_TRAIN, CS_TEST, k=1, threshold=4, rating_scores=True, edges=(1, 2)
    )
    assert [(r["bucket"], r["n_users"]) for r in rows] == [("[1,2)", 1), ("[2+)", 2)]
    assert rows[0]["ndcg@1"] == pytest.approx(1.0)
    assert rows[1]["ndcg@1"] == pytest.approx(0.5)  # u1 misses, u2 hits
    # RMSE: u0 predicts 3 for a 5 -> 2; u1 1 for 4, u2 1 for 5 -> sqrt((9 + 16) / 2).
    assert rows[0]["rmse"] == pytest.approx(2.0)
    assert rows[1]["rmse"] == pytest.approx(math.sqrt(12.5))


def test_user_cold_start_leaves_rmse_out_for_non_rating_scores():
    rows = user_cold_start(CS_SCORES, CS_TRAIN, CS_TEST, 1, 4, rating_scores=False, edges=(1,))
    assert "rmse" not in rows[0]


def test_item_cold_start_by_hand():
    rows = item_cold_start(
        CS_SCORES, CS_TRAIN, CS_TEST, k=1, threshold=4, rating_scores=True, edges=(0, 1, 3)
    )
    by_bucket = {r["bucket"]: r for r in rows}
    # [0,1): item 3; relevant pairs (u1, 3) and (u2, 3); only u2 has it on top.
    assert by_bucket["[0,1)"]["n_items"] == 1
    assert by_bucket["[0,1)"]["n_relevant_pairs"] == 2
    assert by_bucket["[0,1)"]["hit_rate@1"] == pytest.approx(0.5)
    assert by_bucket["[0,1)"]["rmse"] == pytest.approx(math.sqrt(12.5))
    # [1,3): items 1 and 2; the one relevant pair (u0, 1) is u0's top item; predicted 3 for a 5.
    assert by_bucket["[1,3)"]["hit_rate@1"] == pytest.approx(1.0)
    assert by_bucket["[1,3)"]["rmse"] == pytest.approx(2.0)
    # [3+): item 0 has no test ratings at all.
    assert by_bucket["[3+)"]["n_relevant_pairs"] == 0
    assert math.isnan(by_bucket["[3+)"]["hit_rate@1"])


def test_business_figures_by_hand():
    recommended = torch.tensor([[0, 1], [2, 3], [0, 1]])
    targets = torch.tensor([[5.0, 0, 0, 0], [0, 0, 3, 4], [0, 0, 2, 0]])
    # Clicks (recommended and rated in test): u0 item 0 (5), u1 items 2 (3) and 3 (4), u2 none.
    figures = business_figures(recommended, targets, k=2)
    assert figures["click_through@2"] == pytest.approx(2 / 3)
    assert figures["conversion@2"] == pytest.approx(1 / 3)  # one of three clicks is 5 stars
    assert figures["satisfaction@2"] == pytest.approx(4.0)  # (5 + 3 + 4) / 3


def test_business_figures_only_look_at_the_first_k():
    recommended = torch.tensor([[1, 0]])
    targets = torch.tensor([[5.0, 0]])
    assert business_figures(recommended, targets, k=1)["click_through@1"] == 0.0


def test_hit_rate_counts_users_with_a_relevant_item_in_their_list():
    relevant = torch.tensor([[False, True, False], [False, False, True]])
    # u0's list [1, 0] holds item 1 (relevant); u1's [0, 1] misses item 2.
    assert hit_rate(torch.tensor([[1, 0], [0, 1]]), relevant) == pytest.approx(0.5)


def test_median_popularity_by_hand():
    popularity = torch.tensor([10, 1, 3, 7, 2, 5])
    # Per list: median of (10, 1, 3) = 3, of (7, 2, 5) = 5, of (1, 2, 3) = 2; their median 3.
    lists = torch.tensor([[0, 1, 2], [3, 4, 5], [1, 4, 2]])
    assert median_popularity(lists, popularity) == 3.0
    assert median_popularity(lists[1:2], popularity) == 5.0


def test_median_popularity_of_lists_of_films_one_or_two_people_rated():
    train = torch.tensor([[5.0, 4, 1, 0], [4, 0, 0, 0], [3, 5, 0, 0], [1, 0, 0, 0]])
    popularity = item_popularity(train)  # [4, 2, 1, 0]
    niche = torch.tensor([[1, 2, 2], [2, 1, 1]])
    assert 1.0 <= median_popularity(niche, popularity) <= 2.0
    assert median_popularity(torch.tensor([[0, 0, 1]]), popularity) == 4.0  # a well-known list


def test_median_popularity_of_no_lists_is_nan():
    assert math.isnan(median_popularity(torch.empty(0, 3, dtype=torch.long), torch.ones(4)))


def test_cold_start_rmse_reads_the_ratings_given_beside_the_ranking():
    """The SAE ranks by one tensor and predicts ratings in another: the buckets' ranking figures
    come from the first, their RMSE from the second."""
    ratings = torch.full((3, 4), 4.0)
    by_ranking = user_cold_start(CS_SCORES, CS_TRAIN, CS_TEST, 1, 4, True, edges=(1, 2))
    both = user_cold_start(CS_SCORES, CS_TRAIN, CS_TEST, 1, 4, True, ratings, edges=(1, 2))
    assert [r["ndcg@1"] for r in both] == [r["ndcg@1"] for r in by_ranking]
    # u0: 4 for a 5 -> 1; u1 4 for 4, u2 4 for 5 -> sqrt(1 / 2).
    assert both[0]["rmse"] == pytest.approx(1.0)
    assert both[1]["rmse"] == pytest.approx(math.sqrt(0.5))
    items = item_cold_start(
        CS_SCORES, CS_TRAIN, CS_TEST, 1, 4, True, ratings=ratings, edges=(0, 1, 3)
    )
    by_bucket = {r["bucket"]: r for r in items}
    assert by_bucket["[0,1)"]["hit_rate@1"] == pytest.approx(0.5)  # from the ranking
    assert by_bucket["[0,1)"]["rmse"] == pytest.approx(math.sqrt(0.5))  # (4 vs 4, 4 vs 5)
    assert by_bucket["[1,3)"]["rmse"] == pytest.approx(1.0)
