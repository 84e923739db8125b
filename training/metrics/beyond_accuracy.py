"""Beyond-accuracy figures of top-K lists: coverage, diversity, novelty, cold-start buckets and
simulated business figures.

Coverage, diversity, novelty and the business figures take ``recommended`` (long [users, k],
item indices best first, as ``training.metrics.ranking.top_k`` returns them) for the users under
evaluation; the cold-start buckets take the score, train and test matrices and apply the ranking
protocol of ``training.metrics.ranking`` within each bucket.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from training.metrics.ranking import ranking_metrics, rating_metrics, top_k

# Lower edges of the cold-start buckets, by number of training ratings; the last is open.
USER_BUCKET_EDGES = (1, 20, 50, 100)
# Items start at 0: a test item nobody rated in train is the coldest case there is.
ITEM_BUCKET_EDGES = (0, 1, 10, 50, 100)
FIVE_STARS = 5.0


def catalog_coverage(recommended: torch.Tensor, n_items: int) -> float:
    """Share of the catalogue that appears in at least one list."""
    if recommended.numel() == 0 or n_items == 0:
        return 0.0
    return int(recommended.unique().numel()) / n_items


def genre_matrix(item_genres: Sequence[Sequence[str]]) -> torch.Tensor:
    """Binary [n_items, n_genres] matrix from each item's genre list (catalogue order)."""
    names = sorted({genre for genres in item_genres for genre in genres})
    column = {name: j for j, name in enumerate(names)}
    matrix = torch.zeros(len(item_genres), len(names))
    for i, genres in enumerate(item_genres):
        for genre in genres:
            matrix[i, column[genre]] = 1.0
    return matrix


def intra_list_diversity(recommended: torch.Tensor, genres: torch.Tensor) -> float:
    """Mean over lists of the mean pairwise Jaccard distance between the items' genre sets.

    Two items without any genre count as identical (distance 0). Lists shorter than two items
    have no pairs and are left out.
    """
    users, k = recommended.shape
    if users == 0 or k < 2:
        return float("nan")
    sets = genres[recommended]  # [users, k, n_genres]
    shared = sets @ sets.transpose(1, 2)
    sizes = sets.sum(dim=2)
    union = sizes.unsqueeze(2) + sizes.unsqueeze(1) - shared
    distance = torch.where(union > 0, 1.0 - shared / union.clamp(min=1.0), torch.zeros_like(union))
    pairs = torch.triu(torch.ones(k, k, dtype=torch.bool), diagonal=1)
    return float(distance[:, pairs].mean())


def item_popularity(train: torch.Tensor) -> torch.Tensor:
    """How many users rated each item in train."""
    return (train > 0).sum(dim=0)


def novelty(recommended: torch.Tensor, popularity: torch.Tensor, n_users: int) -> float:
    """Mean self-information -log2(share of users who rated the item) over recommended items.

    An item nobody rated counts as rated once: as novel as an observable item can be, and finite.
    """
    if recommended.numel() == 0:
        return float("nan")
    share = popularity[recommended].clamp(min=1).double() / n_users
    return float(-torch.log2(share).mean())


def median_popularity(recommended: torch.Tensor, popularity: torch.Tensor) -> float:
    """The median over users of the median training-rating count of the films in their list:
    how well known a typical recommended film is (a list of films rated by one or two people
    scores 1-2, however well they were rated)."""
    if recommended.numel() == 0:
        return float("nan")
    per_user = popularity[recommended].float().quantile(0.5, dim=1)
    return float(per_user.quantile(0.5))


def bucket_label(lower: int, upper: int | None) -> str:
    return f"[{lower},{upper})" if upper is not None else f"[{lower}+)"


def bucket_masks(counts: torch.Tensor, edges: Sequence[int]) -> list[tuple[str, torch.Tensor]]:
    """(label, boolean mask) per bucket [edges[i], edges[i+1]), the last one open."""
    bounds: list[int | None] = [*edges, None]
    return [
        (
            bucket_label(lower, upper),
            (counts >= lower) & (counts < (upper if upper is not None else math.inf)),
        )
        for lower, upper in zip(edges, bounds[1:], strict=True)
    ]


def user_cold_start(
    scores: torch.Tensor,
    train: torch.Tensor,
    test: torch.Tensor,
    k: int,
    threshold: float,
    rating_scores: bool,
    ratings: torch.Tensor | None = None,
    edges: Sequence[int] = USER_BUCKET_EDGES,
) -> list[dict[str, float | int | str]]:
    """The ranking figures at k of ``scores`` (and RMSE, of ``ratings`` when given, when the
    model predicts ratings) of the users in each bucket of their number of training ratings,
    by the same protocol as the whole population."""
    ratings = scores if ratings is None else ratings
    rows: list[dict[str, float | int | str]] = []
    for label, members in bucket_masks((train > 0).sum(dim=1), edges):
        figures = ranking_metrics(scores[members], train[members], test[members], [k], threshold)
        row: dict[str, float | int | str] = {"bucket": label, "n_users": figures.get("n_users", 0)}
        for name in ("precision", "recall", "ndcg"):
            row[f"{name}@{k}"] = figures[f"{name}@{k}"] if row["n_users"] else float("nan")
        if rating_scores:
            row["rmse"] = rating_metrics(ratings[members], test[members])["rmse"]
        rows.append(row)
    return rows


def item_cold_start(
    scores: torch.Tensor,
    train: torch.Tensor,
    test: torch.Tensor,
    k: int,
    threshold: float,
    rating_scores: bool,
    ratings: torch.Tensor | None = None,
    edges: Sequence[int] = ITEM_BUCKET_EDGES,
) -> list[dict[str, float | int | str]]:
    """Per bucket of items' number of training ratings: the share of relevant (user, item) test
    pairs that made the user's top-k (``hit_rate@k``), and the RMSE on the bucket's test
    ratings (of ``ratings`` when given) when the model predicts ratings."""
    ratings = scores if ratings is None else ratings
    relevant = test >= threshold
    in_top = torch.zeros_like(relevant)
    in_top.scatter_(1, top_k(scores, train > 0, k), True)
    rows: list[dict[str, float | int | str]] = []
    for label, members in bucket_masks((train > 0).sum(dim=0), edges):
        pairs = relevant[:, members]
        n_pairs = int(pairs.sum())
        hits = int((in_top[:, members] & pairs).sum())
        row: dict[str, float | int | str] = {
            "bucket": label,
            "n_items": int(members.sum()),
            "n_relevant_pairs": n_pairs,
            f"hit_rate@{k}": hits / n_pairs if n_pairs else float("nan"),
        }
        if rating_scores:
            row["rmse"] = rating_metrics(ratings[:, members], test[:, members])["rmse"]
        rows.append(row)
    return rows


def hit_rate(recommended: torch.Tensor, relevant: torch.Tensor) -> float:
    """Share of users with at least one relevant item in their list; ``relevant`` is the
    boolean [users, n_items] matrix of the same users."""
    if recommended.shape[0] == 0:
        return 0.0
    return float(relevant.gather(1, recommended).any(dim=1).float().mean())


def business_figures(recommended: torch.Tensor, targets: torch.Tensor, k: int) -> dict[str, float]:
    """Simulated business figures of the top-k lists against the test period.

    A simulated click is a recommended item the user went on to rate in the test period.
    click-through = share of users with at least one click (hit rate@k over clicks);
    conversion = share of clicks rated five stars; satisfaction = mean test rating of clicks.
    ``targets`` holds the evaluated users' test ratings (0 = none), rows aligned with
    ``recommended``.
    """
    ratings = targets.gather(1, recommended[:, :k])
    clicks = ratings > 0
    n_clicks = int(clicks.sum())
    if recommended.shape[0] == 0:
        return {f"click_through@{k}": 0.0, f"conversion@{k}": 0.0, f"satisfaction@{k}": 0.0}
    return {
        f"click_through@{k}": float(clicks.any(dim=1).float().mean()),
        f"conversion@{k}": float((ratings == FIVE_STARS).sum()) / n_clicks if n_clicks else 0.0,
        f"satisfaction@{k}": float(ratings[clicks].mean()) if n_clicks else float("nan"),
    }
