"""Carving a validation set out of the training matrix, per user."""

from __future__ import annotations

import torch


def holdout(matrix: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Move a random ``fraction`` of every user's ratings to a second matrix of the same shape.

    Each user keeps at least one rating in the first matrix so their vector can be folded in.
    """
    generator = torch.Generator().manual_seed(seed)
    observed = matrix > 0
    draw = torch.rand(matrix.shape, generator=generator)
    held = observed & (draw < fraction)
    # Never hold out a user's every rating.
    emptied = observed.any(dim=1) & ~(observed & ~held).any(dim=1)
    if emptied.any():
        keep_first = torch.zeros_like(held)
        first = observed[emptied].float().argmax(dim=1)
        keep_first[emptied.nonzero().squeeze(1), first] = True
        held &= ~keep_first
    return matrix * ~held, matrix * held
