"""Rating triples -> user-item matrices -> the encodings the SAE and the RBM learn from."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.data.encoding import (
    RBM_UNKNOWN,
    convert_to_matrix,
    prepare_autoencoder_data,
    prepare_implicit_data,
    prepare_rbm_data,
    to_dense,
    to_sparse,
)

# Every rating value once, plus unrated: [unrated, 1, 2, 3, 4, 5].
ALL_VALUES = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]])


def test_convert_to_matrix_places_each_rating():
    triples = np.array([[0, 0, 5], [0, 3, 1], [2, 1, 4], [1, 2, 3]])
    matrix = convert_to_matrix(triples, n_users=3, n_items=4)
    assert matrix.dtype == torch.float32
    expected = torch.tensor([[5.0, 0.0, 0.0, 1.0], [0.0, 0.0, 3.0, 0.0], [0.0, 4.0, 0.0, 0.0]])
    assert torch.equal(matrix, expected)


def test_convert_to_matrix_keeps_shape_of_empty_users_and_items():
    matrix = convert_to_matrix(np.array([[1, 1, 2]]), n_users=4, n_items=6)
    assert matrix.shape == (4, 6)
    assert int((matrix != 0).sum()) == 1 and matrix[1, 1] == 2.0


def test_convert_to_matrix_of_no_ratings_is_all_unrated():
    matrix = convert_to_matrix(np.empty((0, 3), dtype=np.int64), n_users=2, n_items=3)
    assert torch.equal(matrix, torch.zeros(2, 3))


def test_convert_to_matrix_rejects_index_outside_shape():
    with pytest.raises(IndexError):
        convert_to_matrix(np.array([[0, 5, 3]]), n_users=1, n_items=5)


def test_autoencoder_data_is_the_raw_ratings_as_float32():
    ints = torch.tensor([[0, 3, 5]], dtype=torch.int64)
    encoded = prepare_autoencoder_data(ints)
    assert encoded.dtype == torch.float32
    assert encoded.tolist() == [[0.0, 3.0, 5.0]]


def test_rbm_liked_threshold_3():
    encoded = prepare_rbm_data(ALL_VALUES, threshold=3)
    assert encoded.tolist() == [[RBM_UNKNOWN, 0.0, 0.0, 1.0, 1.0, 1.0]]
    assert encoded.dtype == torch.float32


def test_rbm_default_threshold_is_3():
    assert torch.equal(prepare_rbm_data(ALL_VALUES), prepare_rbm_data(ALL_VALUES, threshold=3))


def test_rbm_threshold_moves_the_boundary():
    assert prepare_rbm_data(ALL_VALUES, threshold=4).tolist() == [[-1.0, 0.0, 0.0, 0.0, 1.0, 1.0]]
    assert prepare_rbm_data(ALL_VALUES, threshold=1).tolist() == [[-1.0, 1.0, 1.0, 1.0, 1.0, 1.0]]


def test_implicit_rated_is_one():
    encoded = prepare_implicit_data(ALL_VALUES)
    assert encoded.tolist() == [[0.0, 1.0, 1.0, 1.0, 1.0, 1.0]]
    assert encoded.dtype == torch.float32


def test_encodings_agree_on_a_random_matrix():
    generator = torch.Generator().manual_seed(0)
    ratings = torch.randint(0, 6, (30, 40), generator=generator).float()
    rated = ratings > 0
    rbm = prepare_rbm_data(ratings)
    implicit = prepare_implicit_data(ratings)
    assert torch.equal(rbm == RBM_UNKNOWN, ~rated)
    assert torch.equal(rbm == 1, ratings >= 3)
    assert torch.equal(implicit.bool(), rated)


def test_sparse_round_trip(tmp_path):
    generator = torch.Generator().manual_seed(1)
    values = torch.randint(1, 6, (50, 80), generator=generator).float()
    matrix = values * (torch.rand(50, 80, generator=generator) < 0.05)
    sparse = to_sparse(matrix)
    assert sparse.is_sparse and sparse.is_coalesced()
    assert sparse._nnz() == int((matrix != 0).sum())
    assert torch.equal(to_dense(sparse), matrix)
    torch.save(sparse, tmp_path / "m.pt")
    assert torch.equal(to_dense(torch.load(tmp_path / "m.pt")), matrix)


def test_to_dense_leaves_dense_tensors_alone():
    matrix = torch.ones(2, 2)
    assert to_dense(matrix) is matrix
