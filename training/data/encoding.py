"""Conversions between rating triples, user-item matrices and the encodings the models learn.

These are plain torch ops so the models can call them inside ``forward`` and exported graphs
take raw 0-5 ratings.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import torch

# Final, so TorchScript can compile the functions that use them.
UNRATED: Final[float] = 0.0
RBM_UNKNOWN: Final[float] = -1.0


def convert_to_matrix(data: np.ndarray, n_users: int, n_items: int) -> torch.Tensor:
    """Rows of (user index, item index, rating) -> dense float32 [n_users, n_items], 0 = unrated."""
    data = np.asarray(data)
    matrix = torch.zeros(n_users, n_items, dtype=torch.float32)
    if data.size:
        rows = torch.as_tensor(data[:, 0], dtype=torch.long)
        cols = torch.as_tensor(data[:, 1], dtype=torch.long)
        matrix[rows, cols] = torch.as_tensor(data[:, 2], dtype=torch.float32)
    return matrix


def prepare_autoencoder_data(ratings: torch.Tensor) -> torch.Tensor:
    """The SAE learns from the raw 1-5 ratings with 0 for unrated, as float32."""
    return ratings.to(torch.float32)


def prepare_rbm_data(ratings: torch.Tensor, threshold: float | torch.Tensor = 3) -> torch.Tensor:
    """Liked (rating >= threshold) -> 1, disliked -> 0, unrated -> -1. ``threshold`` may be a
    0-d tensor (the RBM's buffer)."""
    liked = (ratings >= threshold).to(torch.float32)
    return torch.where(ratings > UNRATED, liked, torch.full_like(liked, RBM_UNKNOWN))


def prepare_implicit_data(ratings: torch.Tensor) -> torch.Tensor:
    """Rated -> 1, unrated -> 0: the encoding ranking quality is judged on."""
    return (ratings > UNRATED).to(torch.float32)


def to_sparse(matrix: torch.Tensor) -> torch.Tensor:
    return matrix.to_sparse_coo().coalesce()


def to_dense(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to_dense() if tensor.is_sparse else tensor
