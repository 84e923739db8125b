"""Realistic request profiles for the load tests, sampled once from the prepared data into JSON.

A profile is one test-split user: the ratings the model sees (their training ratings, often
only part of them, as a user who has not rated everything yet) and the ratings they went on to
give in the test period (what the web scenario rates next). The JSON also carries the catalogue
order (``item_ids``, for dense Triton vectors), search words taken from real titles and the
genres, so Locust processes read one file and never import torch or the data code.

    .venv/bin/python -m benchmarks.profiles --dataset ml-100k --out /tmp/profiles.json
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1
DEFAULT_DATASET = "ml-100k"
DEFAULT_COUNT = 400  # profiles per file: enough variety that caches see realistic hit rates
DEFAULT_SEED = 42
# A partial profile keeps at least this many ratings (or all of them, if the user has fewer).
MIN_PARTIAL_RATINGS = 5
FULL_PROFILE_SHARE = 0.5  # the other half arrive with a random part of their ratings
SEARCH_TERM_COUNT = 200
MIN_SEARCH_TERM_LENGTH = 4
TITLE_WORD = re.compile(r"[A-Za-z]+")


def _ratings_of(row, item_ids: list[int]) -> dict[str, int]:
    columns = row.nonzero().squeeze(1).tolist()
    return {str(item_ids[c]): int(row[c]) for c in columns}


def _partial(ratings: dict[str, int], rng: random.Random) -> dict[str, int]:
    if rng.random() < FULL_PROFILE_SHARE or len(ratings) <= MIN_PARTIAL_RATINGS:
        return ratings
    keep = rng.randint(MIN_PARTIAL_RATINGS, len(ratings))
    return dict(rng.sample(sorted(ratings.items()), keep))


def search_terms(movies: list[dict], count: int, rng: random.Random) -> list[str]:
    """Distinct lower-case words of real titles, as people type them into the search box."""
    words = sorted(
        {
            word.lower()
            for movie in movies
            for word in TITLE_WORD.findall(movie.get("title", ""))
            if len(word) >= MIN_SEARCH_TERM_LENGTH
        }
    )
    return rng.sample(words, min(count, len(words)))


def sample_profiles(
    prepared_folder: Path, count: int = DEFAULT_COUNT, seed: int = DEFAULT_SEED
) -> dict:
    """``count`` test-split users (seeded) with their training and held-out ratings."""
    from training.data.preprocess import load_prepared

    prepared = load_prepared(Path(prepared_folder))
    item_ids = [int(i) for i in prepared.metadata["item_ids"]]
    user_ids = prepared.metadata.get("user_ids") or list(range(1, prepared.train.shape[0] + 1))
    test_users = prepared.test.count_nonzero(dim=1).nonzero().squeeze(1).tolist()
    if not test_users:
        raise ValueError(f"{prepared_folder}: the test split holds no ratings to sample from")
    rng = random.Random(seed)
    chosen = sorted(rng.sample(test_users, min(count, len(test_users))))
    profiles = [
        {
            "user_id": int(user_ids[row]),
            "ratings": _partial(_ratings_of(prepared.train[row], item_ids), rng),
            "held_out": _ratings_of(prepared.test[row], item_ids),
        }
        for row in chosen
    ]
    genres = sorted({genre for movie in prepared.movies for genre in movie.get("genres", [])})
    return {
        "format": FORMAT_VERSION,
        "dataset": prepared.metadata.get("dataset"),
        "split": prepared.metadata.get("split"),
        "seed": seed,
        "item_ids": item_ids,
        "profiles": profiles,
        "search_terms": search_terms(prepared.movies, SEARCH_TERM_COUNT, rng),
        "genres": genres,
    }


def dense_ratings(item_ids: list[int], profiles: list[dict]) -> np.ndarray:
    """The profiles' ratings as float32 rows [len(profiles), len(item_ids)] in catalogue order
    (0 = unrated): what a client of the dense models (Triton, the in-process baseline) sends."""
    column_of = {movie: column for column, movie in enumerate(item_ids)}
    rows = np.zeros((len(profiles), len(item_ids)), dtype=np.float32)
    for row, profile in zip(rows, profiles, strict=True):
        for movie, stars in profile["ratings"].items():
            row[column_of[int(movie)]] = stars
    return rows


def write_profiles(
    prepared_folder: Path, out: Path, count: int = DEFAULT_COUNT, seed: int = DEFAULT_SEED
) -> Path:
    data = sample_profiles(prepared_folder, count, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data), encoding="utf-8")
    return out


def main() -> None:
    from training.config import Paths

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default=DEFAULT_DATASET)
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    path = write_profiles(Paths().prepared(args.dataset), args.out, args.count, args.seed)
    print(path)


if __name__ == "__main__":
    main()
