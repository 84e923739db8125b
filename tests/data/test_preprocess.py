"""Preprocessing: synthetic folders (exact cells, every validation), real ML-100K, ML-1M subset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.data.synthetic import BASE, MOVIES, TEST, write_raw_1m, write_raw_100k
from training.config import DataParams, Paths
from training.data.datasets import ML_1M, ML_100K
from training.data.holdout import holdout
from training.data.ingest import fetch
from training.data.parsers import DataValidationError
from training.data.preprocess import (
    IMPLICIT_FILE,
    METADATA_FILE,
    MOVIES_FILE,
    RBM_LIKED_FILE,
    TEST_FILE,
    TRAIN_FILE,
    load_prepared,
    prepare,
    summary,
)

ML_100K_USERS, ML_100K_ITEMS = 943, 1682
U1_TRAIN, U1_TEST = 80_000, 20_000
ML_1M_ITEMS = 3883  # movies.dat lines: every column of the catalogue, rated or not
ML_1M_PARTIAL_USERS, ML_1M_PARTIAL_RATINGS = 2999, 487_650
METADATA_KEYS = {
    "dataset",
    "subset",
    "split",
    "split_files",
    "n_users",
    "n_items",
    "n_train",
    "n_test",
    "density",
    "rating_histogram",
    "rating_mean",
    "rbm_threshold",
    "source",
    "source_sha256",
    "item_ids",
    "user_ids",
}
# Raw lines of u1.base / u1.test checked cell by cell (1-based; first, middle and last).
SPOT_LINES = (1, 2, 777, 12_345, 19_999, 20_000)


def cell(prepared, user_id: int, item_id: int) -> tuple[int, int]:
    meta = prepared.metadata
    return meta["user_ids"].index(user_id), meta["item_ids"].index(item_id)


def raw_line(path: Path, number: int) -> tuple[int, int, float]:
    with path.open(encoding="ascii") as handle:
        for current, text in enumerate(handle, start=1):
            if current == number:
                user, item, rating, _ = text.split("\t")
                return int(user), int(item), float(rating)
    raise AssertionError(f"{path} has no line {number}")


# --- synthetic ML-100K: exact layout ------------------------------------------------------------


@pytest.fixture
def synthetic_100k(tmp_path):
    raw = write_raw_100k(tmp_path / "raw" / "ml-100k")
    out = tmp_path / "prepared"
    metadata = prepare(raw, out, DataParams())
    return metadata, out


def test_synthetic_100k_indices_and_cells(synthetic_100k):
    metadata, out = synthetic_100k
    assert metadata["item_ids"] == [1, 2, 3, 7]  # whole catalogue, sorted, u.item was not
    assert metadata["user_ids"] == [10, 20]  # user 30 rated nothing
    assert (metadata["n_users"], metadata["n_items"]) == (2, 4)
    assert (metadata["n_train"], metadata["n_test"]) == (len(BASE), len(TEST))
    prepared = load_prepared(out)
    expected_train = torch.tensor([[5.0, 3.0, 0.0, 0.0], [0.0, 0.0, 1.0, 4.0]])
    expected_test = torch.tensor([[0.0, 0.0, 2.0, 0.0], [4.0, 0.0, 0.0, 0.0]])
    assert torch.equal(prepared.train, expected_train)
    assert torch.equal(prepared.test, expected_test)
    assert prepared.n_items == 4


def test_synthetic_100k_encodings_and_catalogue(synthetic_100k):
    _, out = synthetic_100k
    liked = torch.load(out / RBM_LIKED_FILE)
    assert liked.tolist() == [[1, 1, -1, -1], [-1, -1, 0, 1]]
    implicit = torch.load(out / IMPLICIT_FILE).to_dense()
    assert implicit.tolist() == [[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]
    movies = json.loads((out / MOVIES_FILE).read_text(encoding="utf-8"))
    assert [m["movie_id"] for m in movies] == [1, 2, 3, 7]
    assert movies[2] == {
        "movie_id": 3,
        "title": "Misérables, Les",
        "year": 1995,
        "genres": ["Drama", "Musical"],
    }


def test_synthetic_100k_metadata_figures(synthetic_100k):
    metadata, out = synthetic_100k
    assert json.loads((out / METADATA_FILE).read_text(encoding="utf-8")) == metadata
    assert metadata["rating_histogram"] == {"1": 1, "2": 1, "3": 1, "4": 2, "5": 1}
    assert metadata["density"] == pytest.approx(6 / 8)
    assert metadata["rating_mean"] == pytest.approx((5 + 3 + 1 + 4 + 2 + 4) / 6)
    assert metadata["split"] == "u1" and metadata["split_files"] == ["u1.base", "u1.test"]
    assert metadata["subset"] is None
    assert set(summary(metadata)) <= METADATA_KEYS


# --- validation through prepare: split files against the catalogue, overlap --------------------


@pytest.mark.parametrize(
    ("base", "test", "bad_file", "bad_line", "expected"),
    [
        pytest.param(
            [*BASE, (20, 99, 3)],
            TEST,
            "u1.base",
            5,
            "item 99 is not in the catalogue",
            id="unknown-item",
        ),
        pytest.param(
            BASE,
            [*TEST, (40, 2, 3)],
            "u1.test",
            3,
            "user 40 is not in the user list",
            id="unknown-user",
        ),
        pytest.param(
            BASE,
            [(20, 2, 5), (10, 2, 4)],
            "u1.test",
            2,
            "user 10 rated item 2 in both train and test",
            id="train-test-overlap",
        ),
        pytest.param(
            BASE, [*TEST, (10, 1, 9)], "u1.test", 3, "rating 9 is outside 1-5", id="bad-rating"
        ),
    ],
)
def test_split_errors_name_file_and_line(tmp_path, base, test, bad_file, bad_line, expected):
    raw = write_raw_100k(tmp_path / "raw", base=base, test=test)
    out = tmp_path / "prepared"
    with pytest.raises(DataValidationError) as exc:
        prepare(raw, out, DataParams())
    assert str(exc.value).startswith(f"{raw / bad_file}:{bad_line}: ")
    assert expected in str(exc.value)
    assert not (out / METADATA_FILE).exists()


def test_damaged_catalogue_stops_prepare(tmp_path):
    raw = write_raw_100k(tmp_path / "raw")
    with (raw / "u.item").open("ab") as handle:
        handle.write("9|Mis\ufffdrables (1995)|01-Jan-1995||x|".encode() + b"|".join([b"0"] * 19))
    with pytest.raises(DataValidationError, match=r"u\.item:5: .*U\+FFFD"):
        prepare(raw, tmp_path / "prepared", DataParams())


def test_load_prepared_of_empty_folder_says_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="movierec data prepare"):
        load_prepared(tmp_path)


# --- synthetic ML-1M: random split --------------------------------------------------------------


def _synthetic_1m_ratings() -> list[tuple[int, int, int]]:
    items = [m[0] for m in MOVIES]
    return [(u, i, 1 + (u + i) % 5) for u in (10, 20, 30) for i in items]


def test_synthetic_1m_random_split_is_seeded_and_complete(tmp_path):
    ratings = _synthetic_1m_ratings()
    raw = write_raw_1m(tmp_path / "raw", ratings)
    params = DataParams(dataset="ml-1m", split="random", test_fraction=0.5, seed=3)
    first = prepare(raw, tmp_path / "a", params)
    again = prepare(raw, tmp_path / "b", params)
    other = prepare(raw, tmp_path / "c", params.model_copy(update={"seed": 4}))
    assert first["split"] == "random-0.5-seed3"
    assert again == first
    assert other["n_train"] + other["n_test"] == len(ratings)
    assert first["n_train"] + first["n_test"] == len(ratings)
    assert first["item_ids"] == [1, 2, 3, 7] and first["user_ids"] == [10, 20, 30]
    a, b, c = (load_prepared(tmp_path / name) for name in "abc")
    assert torch.equal(a.train, b.train) and torch.equal(a.test, b.test)
    assert not torch.equal(a.train, c.train)
    # Train and test partition the ratings: every rating sits in exactly one of them.
    assert not ((a.train > 0) & (a.test > 0)).any()
    expected = torch.zeros(3, 4)
    for user, item, rating in ratings:
        expected[first["user_ids"].index(user), first["item_ids"].index(item)] = rating
    assert torch.equal(a.train + a.test, expected)


# --- the real ML-100K (u1) ----------------------------------------------------------------------


def test_ml100k_shape_and_counts(prepared):
    meta = prepared.metadata
    assert (meta["n_users"], meta["n_items"]) == (ML_100K_USERS, ML_100K_ITEMS)
    assert (meta["n_train"], meta["n_test"]) == (U1_TRAIN, U1_TEST)
    assert prepared.train.shape == prepared.test.shape == (ML_100K_USERS, ML_100K_ITEMS)
    assert int((prepared.train > 0).sum()) == U1_TRAIN
    assert int((prepared.test > 0).sum()) == U1_TEST
    assert not ((prepared.train > 0) & (prepared.test > 0)).any()
    assert meta["density"] == pytest.approx((U1_TRAIN + U1_TEST) / (ML_100K_USERS * ML_100K_ITEMS))


def test_ml100k_metadata_keys_and_source(prepared):
    meta = prepared.metadata
    assert METADATA_KEYS <= set(meta)
    assert meta["dataset"] == "ml-100k" and meta["split"] == "u1" and meta["subset"] is None
    assert meta["source"]["origin"] == "mirror"
    assert meta["source_sha256"]["u1.base"] == ML_100K.files["u1.base"]
    assert meta["source_sha256"]["u.data"] == ML_100K.ratings[0].sha256
    assert meta["user_ids"] == list(range(1, ML_100K_USERS + 1))


def test_ml100k_item_ids_are_the_sorted_catalogue(prepared, project_home):
    raw = Paths(project_home).raw_dataset("ml-100k")
    catalogue = [int(line.split(b"|")[0]) for line in (raw / "u.item").read_bytes().splitlines()]
    assert prepared.metadata["item_ids"] == sorted(catalogue)
    assert [m["movie_id"] for m in prepared.movies] == prepared.metadata["item_ids"]
    toy_story = prepared.movies[0]
    assert toy_story["title"] == "Toy Story" and toy_story["year"] == 1995


def test_ml100k_histogram_matches_tensors(prepared):
    histogram = prepared.metadata["rating_histogram"]
    assert sum(histogram.values()) == U1_TRAIN + U1_TEST
    both = torch.cat([prepared.train.flatten(), prepared.test.flatten()])
    for star in range(1, 6):
        assert histogram[str(star)] == int((both == star).sum())
    assert set(torch.unique(both).tolist()) == {0.0, 1.0, 2.0, 3.0, 4.0, 5.0}


@pytest.mark.parametrize("split_file", ["u1.base", "u1.test"])
def test_ml100k_raw_lines_land_in_their_cell(prepared, project_home, split_file):
    matrix = prepared.train if split_file == "u1.base" else prepared.test
    other = prepared.test if split_file == "u1.base" else prepared.train
    path = Paths(project_home).raw_dataset("ml-100k") / split_file
    for number in SPOT_LINES:
        user, item, rating = raw_line(path, number)
        row, col = cell(prepared, user, item)
        assert matrix[row, col] == rating, f"{split_file}:{number}"
        assert other[row, col] == 0, f"{split_file}:{number} leaks into the other split"


def test_ml100k_saved_encodings(prepared, project_home):
    folder = Paths(project_home).prepared("ml-100k")
    train = torch.load(folder / TRAIN_FILE)
    assert train.is_sparse  # sparse is far smaller at ~5% density
    assert (folder / TRAIN_FILE).stat().st_size < ML_100K_USERS * ML_100K_ITEMS * 4
    assert torch.load(folder / TEST_FILE).is_sparse
    liked = torch.load(folder / RBM_LIKED_FILE)
    assert liked.shape == prepared.train.shape
    assert torch.equal(liked == -1, prepared.train == 0)
    assert torch.equal(liked == 1, prepared.train >= prepared.metadata["rbm_threshold"])
    implicit = torch.load(folder / IMPLICIT_FILE).to_dense()
    assert torch.equal(implicit.bool(), prepared.train > 0)


# --- the shared mirror's ML-1M subset -----------------------------------------------------------


@pytest.fixture(scope="module")
def ml1m_partial(tmp_path_factory, mirror) -> dict:
    paths = Paths(tmp_path_factory.mktemp("ml1m-home"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MOVIELENS_MIRROR", str(mirror))
        fetch("ml-1m", paths.raw)
    return prepare(
        paths.raw_dataset("ml-1m"),
        paths.prepared("ml-1m"),
        DataParams(dataset="ml-1m", split="random"),
    )


def test_ml1m_partial_is_labelled_as_subset(ml1m_partial):
    assert ml1m_partial["subset"] == ML_1M.ratings[1].subset
    assert "1-2999" in ml1m_partial["subset"]
    assert ml1m_partial["split_files"] == [ML_1M.ratings[1].filename] * 2


def test_ml1m_partial_counts_and_split(ml1m_partial):
    meta = ml1m_partial
    assert meta["n_train"] + meta["n_test"] == ML_1M_PARTIAL_RATINGS
    assert meta["n_test"] / ML_1M_PARTIAL_RATINGS == pytest.approx(0.1, abs=0.005)
    assert meta["split"] == "random-0.1-seed42"
    assert meta["n_users"] == ML_1M_PARTIAL_USERS
    assert meta["user_ids"] == list(range(1, ML_1M_PARTIAL_USERS + 1))
    assert meta["n_items"] == ML_1M_ITEMS and meta["item_ids"] == sorted(meta["item_ids"])
    assert sum(meta["rating_histogram"].values()) == ML_1M_PARTIAL_RATINGS


# --- holdout: the per-user validation carve-out -------------------------------------------------


@pytest.fixture(scope="module")
def ratings_matrix() -> torch.Tensor:
    generator = torch.Generator().manual_seed(7)
    values = torch.randint(1, 6, (200, 150), generator=generator).float()
    matrix = values * (torch.rand(200, 150, generator=generator) < 0.1)
    matrix[0] = 0  # a user with no ratings at all
    matrix[1] = 0
    matrix[1, 5] = 4  # a user with a single rating
    return matrix


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.5])
def test_holdout_fraction_and_partition(ratings_matrix, fraction):
    kept, held = holdout(ratings_matrix, fraction, seed=0)
    assert kept.shape == held.shape == ratings_matrix.shape
    assert torch.equal(kept + held, ratings_matrix)
    assert not ((kept > 0) & (held > 0)).any()
    share = (held > 0).sum().item() / (ratings_matrix > 0).sum().item()
    assert share == pytest.approx(fraction, abs=0.03)


@pytest.mark.parametrize("fraction", [0.3, 0.999])
def test_holdout_every_user_keeps_a_rating(ratings_matrix, fraction):
    kept, held = holdout(ratings_matrix, fraction, seed=1)
    has_ratings = (ratings_matrix > 0).any(dim=1)
    assert torch.equal((kept > 0).any(dim=1), has_ratings)
    assert kept[1, 5] == 4 and held[1].sum() == 0
    assert kept[0].sum() == 0 and held[0].sum() == 0


def test_holdout_is_deterministic_by_seed(ratings_matrix):
    first, second = holdout(ratings_matrix, 0.2, seed=5), holdout(ratings_matrix, 0.2, seed=5)
    assert torch.equal(first[1], second[1])
    assert not torch.equal(first[1], holdout(ratings_matrix, 0.2, seed=6)[1])


def test_holdout_leaves_input_untouched(ratings_matrix):
    before = ratings_matrix.clone()
    holdout(ratings_matrix, 0.5, seed=0)
    assert torch.equal(ratings_matrix, before)
