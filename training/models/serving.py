"""Inference-only forms of the trained models: same answers, a fraction of the memory traffic.

A served request is one user (or a handful) who rated about a hundred of the catalogue's
movies. The training modules read every weight on every call: the SAE ensemble reads its three
encoders and three decoders (12 MB for three 300-unit members on ML-100K), the RBM its weight
matrix twice. At batch sizes of 1-8 that is memory-bound, so the serving forms

* read only the rows of the input layer that belong to rated movies (``embedding_bag`` with the
  ratings as per-sample weights: a sparse-dense product with no dense input tensor), and
* fuse the SAE's members into one network: the first layers stacked (each member's hidden units
  side by side), deeper layers block-diagonal, the output layers side by side fed the hidden
  units scaled by 1/members, so one product gives the members' mean, and
* fit a user's row over the item codes (``ridge_rows``) on the codes of the films rated in the
  batch only, so its conjugate-gradient steps read a few hundred codes, not the catalogue's, and
* keep the dense layers after it in int8 (``quantize``: dynamic quantization, activations stay
  float32 and are quantized per call), a quarter of the bytes of the output layers, which every
  request reads in full.

``sparse_input=False`` keeps the input layer a dense product: graphs for ``torch.export`` / ONNX
cannot hold the data-dependent number of rated movies, and batched GPU inference prefers it.
Without ``quantize`` outputs match the training modules to float32 rounding; with it, within a
few hundredths of a star or of a probability, and the test figures of the served form are
checked against the trained one at export (``training.export.torchserve``).

Explanations read item vectors from the serving artifact (``training.export.artifact``), which
export computes from the trained modules, so no server reads weights to explain.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

from training.data.encoding import prepare_autoencoder_data
from training.models.rbm import RBMEnsemble
from training.models.sae import (
    MAX_RATING,
    MIN_RATING,
    SAENet,
    blend_ranking,
    centred_baseline,
    ridge_rows,
)

# How far an int8 serving form (this module's for TorchServe, onnxruntime's for Triton on CPU)
# may move any score (stars or probabilities) from the trained model's; exports check it.
SERVED_TOLERANCE = 0.05


def _rated_bags(rated: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """True entries of [batch, n_items] as embedding_bag input: (rows, columns, offsets)."""
    found = rated.nonzero()
    rows, columns = found[:, 0], found[:, 1]
    counts = torch.bincount(rows, minlength=rated.shape[0])
    return rows, columns, torch.cumsum(counts, 0) - counts


class ServingSAE(nn.Module):
    """``SAENet.forward`` with the members fused into one network and a sparse input layer."""

    # Buffers (register_buffer), declared for the type checker only: TorchScript reads class
    # annotations and cannot resolve postponed (string) ones.
    if TYPE_CHECKING:
        encoder_by_input: torch.Tensor
        encoder_bias: torch.Tensor
        global_mean: torch.Tensor
        item_bias: torch.Tensor
        watch_encoder_by_input: torch.Tensor
        watch_encoder_bias: torch.Tensor
        rank_weight: torch.Tensor
        item_codes: torch.Tensor

    @torch.no_grad()
    def __init__(self, net: SAENet, sparse_input: bool = True) -> None:
        super().__init__()
        self.sparse_input = sparse_input
        self.center = net.center
        self.bias_reg = float(net.bias_reg)
        self.implicit_input = net.implicit_input
        self.rating_range = (MIN_RATING, MAX_RATING)  # an attribute, so TorchScript keeps it
        members = net.autoencoders()
        linears = [[m for m in member if isinstance(m, nn.Linear)] for member in members]
        activations = [m for m in members[0] if not isinstance(m, nn.Linear | nn.Dropout)]
        self.activation = activations[0] if activations else nn.Identity()
        n_members = len(linears)
        first = [layers[0] for layers in linears]
        # [n_inputs, hidden of all members]: row i is what input i adds to every hidden unit.
        self.register_buffer(
            "encoder_by_input", torch.cat([layer.weight for layer in first]).t().contiguous()
        )
        self.register_buffer("encoder_bias", torch.cat([layer.bias for layer in first]))
        self.hidden = nn.ModuleList(
            [
                _linear(
                    torch.block_diag(*[layers[depth].weight for layers in linears]),
                    torch.cat([layers[depth].bias for layers in linears]),
                )
                for depth in range(1, len(linears[0]) - 1)
            ]
        )
        last = [layers[-1] for layers in linears]
        # Weights side by side, unscaled; the hidden units are scaled by 1/members instead.
        self.decoder = _linear(
            torch.cat([layer.weight for layer in last], dim=1),
            torch.stack([layer.bias for layer in last]).mean(dim=0),
        )
        self.member_share = 1.0 / n_members
        self.register_buffer("global_mean", net.global_mean.clone())
        self.register_buffer("item_bias", net.item_bias.clone())
        # "Will watch": its input layer read by rated movie too, its output layer int8-able.
        self.has_watch = net.watch is not None
        watch = net.watch
        self.watch_activation = watch.activation if watch is not None else nn.Identity()
        self.register_buffer(
            "watch_encoder_by_input",
            watch.encoder.weight.t().contiguous() if watch is not None else torch.zeros(0, 0),
        )
        self.register_buffer(
            "watch_encoder_bias",
            watch.encoder.bias.clone() if watch is not None else torch.zeros(0),
        )
        self.watch_decoder: nn.Module = (
            _linear(watch.decoder.weight, watch.decoder.bias)
            if watch is not None
            else nn.Identity()
        )
        self.register_buffer("rank_weight", net.rank_weight.clone())
        # Item codes (float32: the conjugate-gradient steps need more than int8's precision).
        self.has_items = net.has_items
        self.register_buffer(
            "item_codes", net.item_codes.clone() if net.has_items else torch.zeros(0, 0)
        )
        self.item_ridge = float(net.item_ridge) if net.has_items else 0.0
        self.member_weight = float(net.member_weight) if net.has_items else 1.0
        self.item_cg_steps = net.item_cg_steps

    def forward(self, ratings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ratings = prepare_autoencoder_data(ratings)
        rated = ratings > 0
        mask = rated.to(ratings.dtype)
        base = torch.zeros_like(ratings)
        if self.center:
            base = centred_baseline(ratings, mask, self.global_mean, self.item_bias, self.bias_reg)
        hidden = self.encode((ratings - base) * mask, mask, rated)
        for layer in self.hidden:
            hidden = self.activation(layer(hidden))
        low, high = self.rating_range
        residual = self.decoder(hidden * self.member_share)
        if self.has_items:
            items = self.item_residual((ratings - base) * mask, mask, rated)
            residual = self.member_weight * residual + (1.0 - self.member_weight) * items
        predicted = (base + residual).clamp(low, high)
        if not self.has_watch:
            return predicted, predicted
        logits = self.watch_decoder(self.watch_encode(mask, rated))
        return predicted, blend_ranking(logits, predicted, self.rank_weight)

    def item_residual(
        self, residual: torch.Tensor, mask: torch.Tensor, rated: torch.Tensor
    ) -> torch.Tensor:
        """Each user's ridge row over the item codes, times every code."""
        if not self.sparse_input:
            row = ridge_rows(self.item_codes, residual, mask, self.item_ridge, self.item_cg_steps)
        else:
            # Only the films someone in the batch rated enter the fit.
            columns = rated.any(dim=0).nonzero().squeeze(1)
            row = ridge_rows(
                self.item_codes.index_select(0, columns),
                residual.index_select(1, columns),
                mask.index_select(1, columns),
                self.item_ridge,
                self.item_cg_steps,
            )
        return row @ self.item_codes.t()

    def watch_encode(self, mask: torch.Tensor, rated: torch.Tensor) -> torch.Tensor:
        """WatchNet's hidden layer: the rated movies' rows, each 1/sqrt(movies rated)."""
        share = mask.sum(dim=1, keepdim=True).clamp(min=1.0).rsqrt()
        if not self.sparse_input:
            hidden = (mask * share) @ self.watch_encoder_by_input
        else:
            rows, columns, offsets = _rated_bags(rated)
            hidden = F.embedding_bag(
                columns,
                self.watch_encoder_by_input,
                offsets,
                mode="sum",
                per_sample_weights=share.squeeze(1)[rows],
            )
        return self.watch_activation(hidden + self.watch_encoder_bias)

    def encode(
        self, residual: torch.Tensor, mask: torch.Tensor, rated: torch.Tensor
    ) -> torch.Tensor:
        n_items = residual.shape[1]
        if not self.sparse_input:
            inputs = torch.cat([residual, mask], dim=1) if self.implicit_input else residual
            return self.activation(inputs @ self.encoder_by_input + self.encoder_bias)
        rows, columns, offsets = _rated_bags(rated)
        values = residual[rows, columns]
        if self.implicit_input:
            # Each rated movie feeds two inputs (its residual, then "was rated" = 1), kept
            # next to each other so every user's entries stay one contiguous bag.
            columns = torch.stack([columns, columns + n_items], dim=1).flatten()
            values = torch.stack([values, torch.ones_like(values)], dim=1).flatten()
            offsets = offsets * 2
        hidden = F.embedding_bag(
            columns, self.encoder_by_input, offsets, mode="sum", per_sample_weights=values
        )
        return self.activation(hidden + self.encoder_bias)


class ServingRBM(nn.Module):
    """``RBMEnsemble.forward`` with the members' hidden passes fused into one sparse product."""

    if TYPE_CHECKING:  # buffers, as in ServingSAE
        threshold: torch.Tensor
        weight_by_item: torch.Tensor
        hidden_bias: torch.Tensor

    @torch.no_grad()
    def __init__(self, net: RBMEnsemble, sparse_input: bool = True) -> None:
        super().__init__()
        members = net.rbms()
        self.sparse_input = sparse_input
        self.implicit = members[0].encoding == "implicit"
        self.n_members = len(members)
        self.register_buffer("threshold", members[0].threshold.clone())
        # [n_items, members * n_hidden]: the hidden pass of every member in one embedding table
        # (explanations read the item vectors from it).
        self.register_buffer(
            "weight_by_item", torch.cat([m.weight.t() for m in members], dim=1).contiguous()
        )
        self.register_buffer("hidden_bias", torch.cat([m.hidden_bias for m in members]))
        # Each member's visible pass is its own layer (int8 under quantize(); onnxruntime's
        # quantizer wants each MatMul's weight as its own initializer).
        self.visible = nn.ModuleList([_linear(m.weight.t(), m.visible_bias) for m in members])

    def forward(self, ratings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probabilities = self.probabilities(ratings)
        return probabilities, probabilities

    def probabilities(self, ratings: torch.Tensor) -> torch.Tensor:
        # Visible units are 0/1 (unknown ones, -1 in training, enter the hidden pass as 0),
        # so the hidden pass sums the liked movies' rows.
        visible = ratings > 0
        if not self.implicit:
            visible = visible & (ratings >= self.threshold)
        if self.sparse_input:
            _, columns, offsets = _rated_bags(visible)
            hidden = F.embedding_bag(columns, self.weight_by_item, offsets, mode="sum")
        else:
            hidden = visible.to(torch.float32) @ self.weight_by_item
        hidden = torch.sigmoid(hidden + self.hidden_bias)
        parts = hidden.chunk(self.n_members, dim=1)
        total = torch.zeros_like(ratings, dtype=torch.float32)
        for index, layer in enumerate(self.visible):
            total = total + torch.sigmoid(layer(parts[index]))
        return total / self.n_members


def _linear(weight: torch.Tensor, bias: torch.Tensor) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
    return layer.requires_grad_(False)


def serving_module(model: nn.Module, sparse_input: bool = True, quantize: bool = True) -> nn.Module:
    """The inference form of a trained SAENet or RBMEnsemble (in eval mode, no gradients)."""
    if isinstance(model, SAENet):
        served: nn.Module = ServingSAE(model, sparse_input)
    elif isinstance(model, RBMEnsemble):
        served = ServingRBM(model, sparse_input)
    else:
        raise TypeError(f"no serving form for {type(model).__name__}")
    served = served.eval().requires_grad_(False)
    return _quantized(served) if quantize else served


@torch.no_grad()
def _quantized(served: nn.Module) -> nn.Module:
    """int8 weights for the dense layers after the (sparse) input layer."""
    with warnings.catch_warnings():
        # torch 2.13 points eager-mode quantization to torchao, which is not in this stack.
        warnings.simplefilter("ignore")
        # One scale per output unit (per channel): each item's weights keep their own range.
        spec = {nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig}
        quantized = torch.ao.quantization.quantize_dynamic(served, spec, dtype=torch.qint8)
    _by_row(quantized)
    return quantized


class RowByRow(nn.Module):
    """A dynamically quantized layer applied to each row on its own.

    Dynamic quantization scales a call's activations over the whole tensor, so a user's scores
    would move with whoever shares the batch (top-10 lists of 37 of 100 test users changed
    between batched and lone calls); one row at a time, an answer never depends on batch mates.
    TorchServe batches at most 2 requests here, so the cost is one extra call at most.
    """

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if inputs.shape[0] == 1:
            return self.layer(inputs)
        return torch.cat([self.layer(inputs[row : row + 1]) for row in range(inputs.shape[0])])


def _by_row(module: nn.Module) -> None:
    """Wrap every dynamically quantized linear layer of ``module`` in RowByRow, in place."""
    for name, child in list(module.named_children()):
        if isinstance(child, torch.ao.nn.quantized.dynamic.Linear):
            setattr(module, name, RowByRow(child))
        else:
            _by_row(child)
