"""The load tests' request profiles (``benchmarks/profiles.py``) and their dense form."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import profiles

COUNT = 60
SEED = 7


@pytest.fixture(scope="module")
def sampled(project_home, tmp_path_factory) -> dict:
    from training.config import Paths

    out = tmp_path_factory.mktemp("profiles") / "profiles.json"
    profiles.write_profiles(Paths(project_home).prepared("ml-100k"), out, COUNT, SEED)
    return json.loads(out.read_text(encoding="utf-8"))


def test_profiles_are_test_split_users_with_ratings_to_send_and_to_hold_out(sampled):
    assert len(sampled["profiles"]) == COUNT
    assert len({p["user_id"] for p in sampled["profiles"]}) == COUNT
    for profile in sampled["profiles"]:
        assert profile["ratings"] and profile["held_out"]
        assert not profile["ratings"].keys() & profile["held_out"].keys()


def test_dense_rows_hold_exactly_each_profiles_ratings_in_catalogue_order(sampled):
    item_ids = sampled["item_ids"]
    rows = profiles.dense_ratings(item_ids, sampled["profiles"])
    assert rows.dtype == np.float32 and rows.shape == (COUNT, len(item_ids))
    for row, profile in zip(rows, sampled["profiles"], strict=True):
        read_back = {str(item_ids[column]): int(row[column]) for column in np.flatnonzero(row)}
        assert read_back == profile["ratings"]


def test_a_rating_of_a_movie_outside_the_catalogue_is_refused(sampled):
    stranger = {"ratings": {str(max(sampled["item_ids"]) + 1): 4}}
    with pytest.raises(KeyError):
        profiles.dense_ratings(sampled["item_ids"], [stranger])
