"""The serving forms (fused SAE members, sparse input layers) answer as the trained modules do."""

from __future__ import annotations

import pytest
import torch
from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

from training.config import RBMParams, SAEParams
from training.models.rbm import RBMEnsemble, RBMNet
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
        if isinstance(net, SAENet) and net.has_items:
            net.member_weight.fill_(0.4)  # the default 1.0 would leave the item codes out
    return net.eval()


SAE_VARIANTS = {
    "three members, one layer": SAEParams(hidden_layers=[12], n_members=3, dropout=0.5),
    "deep network, relu": SAEParams(hidden_layers=[8, 4], activation="relu"),
    "deep ensemble, implicit input": SAEParams(
        hidden_layers=[6, 3], n_members=2, implicit_input=True, activation="tanh"
    ),
    "not centred": SAEParams(hidden_layers=[10], center=False),
    "item codes and a watch network": SAEParams(
        hidden_layers=[8], n_members=2, implicit_input=True, item_hidden=5, watch_hidden=4
    ),
}


def _close(served, expected, atol: float) -> bool:
    """Both outputs, (scores, ranking), within atol."""
    return all(torch.allclose(a, b, atol=atol) for a, b in zip(served, expected, strict=True))


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
        assert _close(served(ratings), expected, atol)
        assert _close(served(ratings[:1]), [e[:1] for e in expected], atol)
        assert _close(torch.jit.script(served)(ratings), expected, atol)


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
    net = _randomised(RBMEnsemble(N_ITEMS, RBMParams(n_hidden=16, encoding=encoding)))
    served = serving_module(net, sparse_input, quantize)
    assert isinstance(served, ServingRBM)
    ratings = _ratings()
    with torch.no_grad():
        expected = net(ratings)
        assert _close(served(ratings), expected, atol)
        assert _close(torch.jit.script(served)(ratings[1:2]), [e[1:2] for e in expected], atol)


@pytest.mark.parametrize("model", ["sae", "rbm"])
def test_int8_answers_do_not_depend_on_batch_mates(model):
    """Dynamic quantization scales activations per call: row by row, a user's scores are the
    same alone as in any batch (to float32 rounding)."""
    if model == "sae":
        net = _randomised(
            SAENet(N_ITEMS, SAEParams(hidden_layers=[6], n_members=2, watch_hidden=5))
        )
    else:
        net = _randomised(RBMEnsemble(N_ITEMS, RBMParams(n_hidden=16, n_members=2)))
    served = torch.jit.script(serving_module(net))
    ratings = _ratings()
    with torch.no_grad():
        together = served(ratings)
        for row in range(len(ratings)):
            alone = served(ratings[row : row + 1])
            for batched, single in zip(together, alone, strict=True):
                # float32 rounding only; per-batch activation scales move scores ~1e-3
                assert torch.allclose(batched[row : row + 1], single, rtol=0, atol=1e-6)


def test_int8_serving_forms_hold_a_quarter_of_the_output_bytes():
    net = _randomised(SAENet(N_ITEMS, SAEParams(hidden_layers=[6, 3], n_members=2)))
    served = serving_module(net)
    layers = [wrapper.layer for wrapper in (served.decoder, *served.hidden)]
    assert all(isinstance(layer, DynamicLinear) for layer in layers)
    assert all(layer.weight().dtype == torch.qint8 for layer in layers)
    rbm = serving_module(_randomised(RBMEnsemble(N_ITEMS, RBMParams(n_hidden=16, n_members=2))))
    assert len(rbm.visible) == 2
    assert all(isinstance(wrapper.layer, DynamicLinear) for wrapper in rbm.visible)
    assert all(wrapper.layer.weight().dtype == torch.qint8 for wrapper in rbm.visible)


def test_serving_module_rejects_other_modules():
    with pytest.raises(TypeError, match="no serving form for Linear"):
        serving_module(torch.nn.Linear(2, 2))
    # One RBM is served as an ensemble of one (RBMRecommender builds RBMEnsemble).
    with pytest.raises(TypeError, match="no serving form for RBMNet"):
        serving_module(RBMNet(N_ITEMS, RBMParams(n_hidden=4)))


def test_serving_forms_hold_no_autograd_history():
    """Buffers built from trained parameters must be plain tensors (copyable, no graph kept)."""
    nets = (
        SAENet(N_ITEMS, SAEParams(hidden_layers=[6, 3], n_members=2)),
        RBMEnsemble(N_ITEMS, RBMParams(n_hidden=8, n_members=2)),
        SAENet(N_ITEMS, SAEParams(hidden_layers=[6], watch_hidden=5)),
    )
    for net in nets:
        served = serving_module(net, quantize=False)
        assert all(t.grad_fn is None and not t.requires_grad for t in served.state_dict().values())


# -- the SAE with "will watch", the RBM ensemble -------------------------------------------------

WATCH_VARIANTS = {
    "watch, three members": SAEParams(hidden_layers=[12], n_members=3, watch_hidden=7),
    "watch, deep implicit, relu watch": SAEParams(
        hidden_layers=[6, 3],
        n_members=2,
        implicit_input=True,
        activation="tanh",
        watch_hidden=5,
        watch_activation="relu",
    ),
}


def _watch_sae(params: SAEParams, rank_weight: float = 0.8) -> SAENet:
    net = _randomised(SAENet(N_ITEMS, params))
    net.rank_weight.fill_(rank_weight)  # a 0-d buffer: _randomised leaves it at 0
    return net


@QUANTIZE
@SPARSE
@pytest.mark.parametrize("params", WATCH_VARIANTS.values(), ids=WATCH_VARIANTS.keys())
def test_serving_sae_with_watch_matches_both_outputs(params, sparse_input, quantize, atol):
    net = _watch_sae(params)
    served = serving_module(net, sparse_input, quantize)
    assert served.has_watch
    assert float(served.rank_weight) == pytest.approx(0.8)
    ratings = _ratings()
    with torch.no_grad():
        expected_scores, expected_ranking = net(ratings)
        scores, ranking = served(ratings)
        scripted = torch.jit.script(served)(ratings)
        single = served(ratings[:1])
    # The ranking is not the scores (the watch network is in it) ...
    assert not torch.allclose(expected_ranking, expected_scores)
    for outputs in ((scores, ranking), scripted, single):
        rows = len(outputs[0])
        assert torch.allclose(outputs[0], expected_scores[:rows], atol=atol)
        assert torch.allclose(outputs[1], expected_ranking[:rows], atol=atol)
    # ... and a distribution, served too.
    assert torch.allclose(ranking.sum(dim=1), torch.ones(len(ratings)), atol=1e-5)
    if not quantize:
        # Probabilities of ~1/40 each: the absolute tolerance alone would hide a wrong one.
        assert torch.allclose(ranking, expected_ranking, rtol=1e-4, atol=1e-8)
    else:
        assert isinstance(served.watch_decoder.layer, DynamicLinear)


def test_scripted_serving_sae_with_watch_saves_and_loads(tmp_path):
    net = _watch_sae(WATCH_VARIANTS["watch, three members"])
    scripted = torch.jit.script(serving_module(net))
    scripted.save(tmp_path / "sae.ts")
    loaded = torch.jit.load(tmp_path / "sae.ts")
    ratings = _ratings(seed=3)
    with torch.no_grad():
        expected = net(ratings)
        assert _close(loaded(ratings), expected, INT8_ATOL)
        assert _close(loaded(ratings), scripted(ratings), 0.0)


def test_serving_sae_without_watch_ranks_by_the_predicted_ratings():
    net = _randomised(SAENet(N_ITEMS, SAEParams(hidden_layers=[6])))
    served = serving_module(net, quantize=False)
    assert not served.has_watch
    with torch.no_grad():
        scores, ranking = served(_ratings())
    assert torch.equal(scores, ranking)


@QUANTIZE
@SPARSE
@pytest.mark.parametrize("encoding", ["implicit", "liked"])
def test_serving_rbm_of_a_two_member_ensemble_matches_it(encoding, sparse_input, quantize, atol):
    net = _randomised(RBMEnsemble(N_ITEMS, RBMParams(n_hidden=6, encoding=encoding, n_members=2)))
    first, second = net.members
    assert not torch.allclose(first.weight, second.weight)
    served = serving_module(net, sparse_input, quantize)
    assert served.weight_by_item.shape == (N_ITEMS, 2 * 6)
    assert torch.equal(served.weight_by_item[:, :6], first.weight.t())
    assert torch.equal(served.weight_by_item[:, 6:], second.weight.t())
    ratings = _ratings()
    with torch.no_grad():
        expected, _ = net(ratings)
        members = torch.stack([m(ratings)[0] for m in net.members])
        scores, ranking = served(ratings)
        scripted = torch.jit.script(served)(ratings)
    assert torch.allclose(expected, members.mean(dim=0), atol=1e-7)
    # Not just one member's answer: the two differ by more than the tolerance.
    assert (members[0] - members[1]).abs().max() > 2 * atol
    assert torch.allclose(scores, expected, atol=atol)
    assert torch.equal(ranking, scores)
    assert _close(scripted, (expected, expected), atol)
