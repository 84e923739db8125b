"""The serving forms (fused SAE members, sparse input layers) answer as the trained modules do."""

from __future__ import annotations

import pytest
import torch
from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

from handlers import recommendation as rec
from training.config import RBMParams, SAEParams
from training.models.rbm import RBMNet
from training.models.sae import SAENet
from training.models.serving import SERVED_TOLERANCE, ServingRBM, ServingSAE, serving_module

N_ITEMS = 40
ATOL = 1e-5  # float32 serving forms: rounding only
INT8_ATOL = SERVED_TOLERANCE  # int8 output layers: what export allows


def _ratings(users: int = 6, seed: int = 0) -> torch.Tensor:
    """Sparse 1-5 stars; the last user has rated nothing (an empty bag for embedding_bag)."""
    generator = torch.Generator().manual_seed(seed)
    stars = torch.randint(1, 6, (users, N_ITEMS), generator=generator).float()
    rated = torch.rand(users, N_ITEMS, generator=generator) < 0.2
    rated[0, :3] = True
    rated[-1] = False
    return stars * rated


def _randomised(net: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """Random weights and biases everywhere (fresh biases are zero and hide mistakes)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in [*net.parameters(), *net.buffers()]:
            if tensor.is_floating_point() and tensor.dim() > 0:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.3)
    return net.eval()


SAE_VARIANTS = {
    "three members, one layer": SAEParams(hidden_layers=[12], n_members=3, dropout=0.5),
    "deep network, relu": SAEParams(hidden_layers=[8, 4], activation="relu"),
    "deep ensemble, implicit input": SAEParams(
        hidden_layers=[6, 3], n_members=2, implicit_input=True, activation="tanh"
    ),
    "not centred": SAEParams(hidden_layers=[10], center=False),
}


QUANTIZE = pytest.mark.parametrize(
    ("quantize", "atol"), [(False, ATOL), (True, INT8_ATOL)], ids=["float32", "int8"]
)
SPARSE = pytest.mark.parametrize("sparse_input", [True, False], ids=["sparse", "dense"])


@QUANTIZE
@SPARSE
@pytest.mark.parametrize("params", SAE_VARIANTS.values(), ids=SAE_VARIANTS.keys())
def test_serving_sae_matches_the_trained_ensemble(params, sparse_input, quantize, atol):
    net = _randomised(SAENet(N_ITEMS, params))
    served = serving_module(net, sparse_input, quantize)
    ratings = _ratings()
    with torch.no_grad():
        expected = net(ratings)
        assert torch.allclose(served(ratings), expected, atol=atol)
        assert torch.allclose(served(ratings[:1]), expected[:1], atol=atol)
        assert torch.allclose(torch.jit.script(served)(ratings), expected, atol=atol)


def test_serving_sae_fuses_members_into_one_network():
    params = SAEParams(hidden_layers=[12], n_members=3)
    served = serving_module(_randomised(SAENet(N_ITEMS, params)), quantize=False)
    assert isinstance(served, ServingSAE)
    assert served.encoder_by_input.shape == (N_ITEMS, 36)
    assert served.decoder.weight.shape == (N_ITEMS, 36) and len(served.hidden) == 0
    deep_net = _randomised(SAENet(N_ITEMS, SAEParams(hidden_layers=[6, 3], n_members=2)))
    deep = serving_module(deep_net, quantize=False)
    # 6 -> 3 -> 6 per member: two block-diagonal middle layers over the members' units
    assert [layer.weight.shape for layer in deep.hidden] == [(6, 12), (12, 6)]
    assert deep.hidden[0].weight[:3, 6:].abs().sum() == 0


@QUANTIZE
@SPARSE
@pytest.mark.parametrize("encoding", ["implicit", "liked"])
def test_serving_rbm_matches_the_trained_one(encoding, sparse_input, quantize, atol):
    net = _randomised(RBMNet(N_ITEMS, RBMParams(n_hidden=16, encoding=encoding)))
    served = serving_module(net, sparse_input, quantize)
    assert isinstance(served, ServingRBM)
    ratings = _ratings()
    with torch.no_grad():
        expected = net(ratings)
        assert torch.allclose(served(ratings), expected, atol=atol)
        assert torch.allclose(torch.jit.script(served)(ratings[1:2]), expected[1:2], atol=atol)


def test_int8_serving_forms_hold_a_quarter_of_the_output_bytes():
    net = _randomised(SAENet(N_ITEMS, SAEParams(hidden_layers=[6, 3], n_members=2)))
    served = serving_module(net)
    layers = [served.decoder, *served.hidden]
    assert all(isinstance(layer, DynamicLinear) for layer in layers)
    assert all(layer.weight().dtype == torch.qint8 for layer in layers)
    rbm = serving_module(_randomised(RBMNet(N_ITEMS, RBMParams(n_hidden=16))))
    assert isinstance(rbm.visible, DynamicLinear) and rbm.quantized


@pytest.mark.parametrize(
    ("name", "net"),
    [
        ("sae", SAENet(N_ITEMS, SAEParams(hidden_layers=[12], n_members=3))),
        ("sae", SAENet(N_ITEMS, SAEParams(hidden_layers=[6, 3], n_members=2, implicit_input=True))),
        ("rbm", RBMNet(N_ITEMS, RBMParams(n_hidden=16))),
    ],
)
@pytest.mark.parametrize("quantize", [False, True], ids=["float32", "int8"])
def test_explanation_vectors_are_the_trained_models(name, net, quantize):
    """The handlers read item vectors from the served TorchScript: they must not change."""
    net = _randomised(net)
    trained = rec.item_vectors(name, dict(net.state_dict()))
    scripted = torch.jit.script(serving_module(net, quantize=quantize))
    assert torch.equal(rec.item_vectors(name, dict(scripted.state_dict())), trained)


def test_serving_module_rejects_other_modules():
    with pytest.raises(TypeError, match="no serving form for Linear"):
        serving_module(torch.nn.Linear(2, 2))


def test_serving_forms_hold_no_autograd_history():
    """Buffers built from trained parameters must be plain tensors (copyable, no graph kept)."""
    nets = (
        SAENet(N_ITEMS, SAEParams(hidden_layers=[6, 3], n_members=2)),
        RBMNet(N_ITEMS, RBMParams(n_hidden=8)),
    )
    for net in nets:
        served = serving_module(net, quantize=False)
        assert all(t.grad_fn is None and not t.requires_grad for t in served.state_dict().values())
