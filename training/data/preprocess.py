"""Raw MovieLens files -> user-item tensors, encodings, catalogue and metadata.

Columns are positions in the full movie catalogue (sorted by MovieLens id) and rows are the
users who rated something, sorted by id; train and test share both indices.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from training.config import DataParams, get_logger
from training.data import encoding
from training.data.datasets import DatasetSpec, get_spec
from training.data.ingest import read_source
from training.data.parsers import (
    DataValidationError,
    Movie,
    Ratings,
    check_against_catalogue,
    read_movies,
    read_ratings,
    read_user_ids,
)

log = get_logger("data")

TRAIN_FILE = "train.pt"
TEST_FILE = "test.pt"
RBM_LIKED_FILE = "train_rbm_liked.pt"
IMPLICIT_FILE = "train_implicit.pt"
METADATA_FILE = "metadata.json"
MOVIES_FILE = "movies.json"


@dataclass
class Split:
    train: Ratings
    test: Ratings
    name: str
    files: tuple[str, str]


def _select(ratings: Ratings, mask: np.ndarray) -> Ratings:
    return Ratings(*(getattr(ratings, f)[mask] for f in Ratings.__dataclass_fields__))


def load_split(spec: DatasetSpec, folder: Path, params: DataParams, ratings_file: str) -> Split:
    if spec.name == "ml-100k":
        base, test = spec.splits[params.split]
        return Split(
            read_ratings(folder / base, spec.sep),
            read_ratings(folder / test, spec.sep),
            params.split,
            (base, test),
        )
    ratings = read_ratings(folder / ratings_file, spec.sep)
    rng = np.random.default_rng(params.seed)
    is_test = rng.random(len(ratings)) < params.test_fraction
    return Split(
        _select(ratings, ~is_test),
        _select(ratings, is_test),
        f"random-{params.test_fraction:g}-seed{params.seed}",
        (ratings_file, ratings_file),
    )


def _check_disjoint(split: Split, folder: Path) -> None:
    train_keys = set(zip(split.train.users.tolist(), split.train.items.tolist(), strict=True))
    for row, key in enumerate(
        zip(split.test.users.tolist(), split.test.items.tolist(), strict=True)
    ):
        if key in train_keys:
            raise DataValidationError(
                folder / split.files[1],
                int(split.test.lines[row]),
                f"user {key[0]} rated item {key[1]} in both train and test",
            )


def _triples(
    ratings: Ratings, user_index: dict[int, int], item_index: dict[int, int]
) -> np.ndarray:
    rows = np.fromiter((user_index[u] for u in ratings.users.tolist()), np.int64, len(ratings))
    cols = np.fromiter((item_index[i] for i in ratings.items.tolist()), np.int64, len(ratings))
    return np.stack([rows, cols, ratings.ratings.astype(np.int64)], axis=1)


def prepare(raw_folder: Path, out_folder: Path, params: DataParams) -> dict:
    """Validate the raw files and write every preprocessed output; returns the metadata."""
    spec = get_spec(params.dataset)
    source = read_source(raw_folder)
    movies: list[Movie] = sorted(read_movies(spec, raw_folder), key=lambda m: m.movie_id)
    users_file = "u.user" if spec.name == "ml-100k" else "users.dat"
    user_sep = "|" if spec.name == "ml-100k" else "::"
    known_users = set(read_user_ids(raw_folder / users_file, user_sep))
    split = load_split(spec, raw_folder, params, source["ratings"])

    movie_ids = {m.movie_id for m in movies}
    for part, path in ((split.train, split.files[0]), (split.test, split.files[1])):
        check_against_catalogue(raw_folder / path, part, movie_ids, known_users)
    _check_disjoint(split, raw_folder)

    item_ids = [m.movie_id for m in movies]
    user_ids = sorted(set(split.train.users.tolist()) | set(split.test.users.tolist()))
    item_index = {mid: col for col, mid in enumerate(item_ids)}
    user_index = {uid: row for row, uid in enumerate(user_ids)}
    n_users, n_items = len(user_ids), len(item_ids)

    train = encoding.convert_to_matrix(
        _triples(split.train, user_index, item_index), n_users, n_items
    )
    test = encoding.convert_to_matrix(
        _triples(split.test, user_index, item_index), n_users, n_items
    )

    out_folder.mkdir(parents=True, exist_ok=True)
    torch.save(encoding.to_sparse(train), out_folder / TRAIN_FILE)
    torch.save(encoding.to_sparse(test), out_folder / TEST_FILE)
    rbm_liked = encoding.prepare_rbm_data(train, params.rbm_threshold).to(torch.int8)
    torch.save(rbm_liked, out_folder / RBM_LIKED_FILE)
    torch.save(
        encoding.to_sparse(encoding.prepare_implicit_data(train)), out_folder / IMPLICIT_FILE
    )
    (out_folder / MOVIES_FILE).write_text(
        json.dumps([m.to_dict() for m in movies], ensure_ascii=False) + "\n", encoding="utf-8"
    )

    all_values = np.concatenate([split.train.ratings, split.test.ratings]).astype(int)
    histogram = {str(star): int((all_values == star).sum()) for star in range(1, 6)}
    metadata = {
        "dataset": spec.name,
        "subset": source.get("subset"),
        "split": split.name,
        "split_files": list(split.files),
        "n_users": n_users,
        "n_items": n_items,
        "n_train": len(split.train),
        "n_test": len(split.test),
        "density": (len(split.train) + len(split.test)) / float(n_users * n_items),
        "rating_histogram": histogram,
        "rating_mean": float(all_values.mean()),
        "rbm_threshold": params.rbm_threshold,
        "source": {"origin": source["origin"], "location": source["location"]},
        "source_sha256": source["sha256"],
        "item_ids": item_ids,
        "user_ids": user_ids,
    }
    (out_folder / METADATA_FILE).write_text(json.dumps(metadata, indent=1) + "\n", encoding="utf-8")
    log.info(
        "%s/%s: %d users x %d items, %d train / %d test ratings%s",
        spec.name,
        split.name,
        n_users,
        n_items,
        len(split.train),
        len(split.test),
        f" [{source['subset']}]" if source.get("subset") else "",
    )
    return metadata


def summary(metadata: dict) -> dict:
    """The scalar figures of a preparation, for DVC metrics."""
    keys = (
        "dataset",
        "subset",
        "split",
        "n_users",
        "n_items",
        "n_train",
        "n_test",
        "density",
        "rating_mean",
    )
    return {key: metadata[key] for key in keys}


@dataclass
class PreparedData:
    """What a model needs from ``data/preprocessed/<dataset>``: dense matrices and metadata."""

    train: torch.Tensor  # float32 [n_users, n_items], 0 = unrated
    test: torch.Tensor
    metadata: dict
    movies: list[dict]

    @property
    def n_items(self) -> int:
        return int(self.metadata["n_items"])


def load_prepared(folder: Path) -> PreparedData:
    if not (folder / METADATA_FILE).is_file():
        raise FileNotFoundError(
            f"{folder} holds no prepared data; run `movierec data prepare` (or `dvc repro prepare`)"
        )
    return PreparedData(
        train=encoding.to_dense(torch.load(folder / TRAIN_FILE)),
        test=encoding.to_dense(torch.load(folder / TEST_FILE)),
        metadata=json.loads((folder / METADATA_FILE).read_text(encoding="utf-8")),
        movies=json.loads((folder / MOVIES_FILE).read_text(encoding="utf-8")),
    )
