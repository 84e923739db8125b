"""The exported graphs: valid ONNX, the agreed signature, and equal to PyTorch on real users."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from tests.triton.checks import assert_valid_top_k
from training.export.onnx import HybridBlend, float_nodes, onnx_path, run_onnx
from training.models import load_checkpoint
from training.models.serving import SERVED_TOLERANCE
from training.serving import triton_names as tn

PARITY_ATOL = 1e-5
REAL_USERS = 64


def _dims(value_info: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


@pytest.fixture(scope="module")
def real_ratings(prepared) -> np.ndarray:
    return prepared.train[:REAL_USERS].numpy()


@pytest.mark.parametrize("model", tn.ONNX_MODELS)
def test_graph_passes_checker_for_triton_24_10(onnx_repo, model):
    graph = onnx.load(onnx_path(onnx_repo, model))
    onnx.checker.check_model(graph, full_check=True)
    assert graph.ir_version <= tn.MAX_ONNX_IR_VERSION
    assert {o.domain: o.version for o in graph.opset_import}[""] == tn.ONNX_OPSET
    assert not any(
        init.data_location == onnx.TensorProto.EXTERNAL for init in graph.graph.initializer
    )


@pytest.mark.parametrize("model", tn.ONNX_MODELS)
def test_graph_signature_is_the_agreed_one(onnx_repo, prepared, model):
    graph = onnx.load(onnx_path(onnx_repo, model)).graph
    n_items = prepared.metadata["n_items"]
    sizes = {tn.VARIABLE: n_items}
    specs_and_tensors = (
        (tn.MODEL_INPUTS[model], graph.input),
        (tn.MODEL_OUTPUTS[model], graph.output),
    )
    for specs, tensors in specs_and_tensors:
        assert [t.name for t in tensors] == [spec.name for spec in specs]
        for spec, tensor in zip(specs, tensors, strict=True):
            dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.type.tensor_type.elem_type)
            assert dtype == spec.numpy_dtype
            batch, *item_dims = _dims(tensor)
            assert isinstance(batch, str), f"{tensor.name}: the batch axis must be dynamic"
            assert item_dims == [sizes.get(d, d) for d in spec.dims]


def trained_outputs(checkpoint, ratings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The trained PyTorch module's (scores, ranking) for ``ratings``."""
    recommender = load_checkpoint(checkpoint)
    with torch.no_grad():
        scores, ranking = recommender.model(torch.from_numpy(ratings))
    return scores.numpy(), ranking.numpy()


def assert_graph_top_k(scores, ratings, item_ids, out: dict[str, np.ndarray]) -> None:
    """The graph's top_ids/top_scores are the best unrated items by ``scores``."""
    assert_valid_top_k(scores, ratings, item_ids, out[tn.TOP_IDS.name], out[tn.TOP_SCORES.name])


@pytest.mark.parametrize("model", tn.QUANTIZED_MODELS)
def test_int8_twin_is_a_quarter_of_the_size_and_scores_alike(
    onnx_repo, checkpoints, prepared, real_ratings, model
):
    path = onnx_path(onnx_repo, model)
    int8 = path.with_name(tn.ONNX_INT8_FILENAME)
    assert int8.stat().st_size < path.stat().st_size / 3
    graph = onnx.load(int8).graph
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= {node.op_type for node in graph.node}
    expected, ranking = trained_outputs(checkpoints[model], real_ratings)
    out = run_onnx(int8, {tn.RATINGS.name: real_ratings})
    assert np.abs(out[tn.SCORES.name] - expected).max() <= SERVED_TOLERANCE
    assert np.abs(out[tn.RANKING.name] - ranking).max() <= SERVED_TOLERANCE
    assert_graph_top_k(out[tn.RANKING.name], real_ratings, prepared.metadata["item_ids"], out)


def test_the_sae_int8_twin_keeps_the_item_codes_float32(onnx_repo, checkpoints, prepared):
    """The ridge fit's conjugate-gradient steps read the item codes in float32: int8 codes
    would throw the solve off (the twin's scores are checked against PyTorch above)."""
    params = load_checkpoint(checkpoints[tn.SAE]).params
    assert params.item_hidden > 0  # params.yaml's SAE has item codes
    graph = onnx.load(onnx_path(onnx_repo, tn.SAE).with_name(tn.ONNX_INT8_FILENAME)).graph
    (codes,) = [init for init in graph.initializer if init.name.endswith("item_codes")]
    assert codes.data_type == onnx.TensorProto.FLOAT
    assert list(codes.dims) == [prepared.metadata["n_items"], params.item_hidden]
    readers = set(float_nodes(onnx.ModelProto(graph=graph)))
    ops = [node.op_type for node in graph.node if node.name in readers]
    # Two products with the codes per conjugate-gradient step, all plain float MatMuls.
    assert ops.count("MatMul") >= 2 * params.item_cg_steps
    assert set(ops) <= {"MatMul", "Transpose"}


@pytest.mark.parametrize("model", tn.SCORING_MODELS)
def test_onnxruntime_equals_pytorch_on_real_users(
    onnx_repo, checkpoints, prepared, real_ratings, model
):
    expected, ranking = trained_outputs(checkpoints[model], real_ratings)
    out = run_onnx(onnx_path(onnx_repo, model), {tn.RATINGS.name: real_ratings})
    assert out[tn.SCORES.name].shape == (REAL_USERS, prepared.metadata["n_items"])
    np.testing.assert_allclose(out[tn.SCORES.name], expected, rtol=0, atol=PARITY_ATOL)
    np.testing.assert_allclose(out[tn.RANKING.name], ranking, rtol=0, atol=PARITY_ATOL)
    # The served list is taken from the ranking, not from the scores.
    assert_graph_top_k(ranking, real_ratings, prepared.metadata["item_ids"], out)


@pytest.mark.parametrize("batch", [1, 3, tn.MAX_BATCH_SIZE + 1])
def test_batch_axis_is_dynamic(onnx_repo, prepared, batch):
    ratings = prepared.train[:batch].numpy()
    out = run_onnx(onnx_path(onnx_repo, tn.RBM), {tn.RATINGS.name: ratings})
    assert out[tn.SCORES.name].shape[0] == len(ratings)
    assert out[tn.TOP_IDS.name].shape == (len(ratings), tn.TOP_K)


def test_hybrid_blend_mixes_the_two_models_like_torchserve(onnx_repo, prepared, real_ratings):
    from handlers.recommendation import hybrid_scores

    feeds = {tn.RATINGS.name: real_ratings}
    sae = run_onnx(onnx_path(onnx_repo, tn.SAE), feeds)[tn.RANKING.name]
    rbm = run_onnx(onnx_path(onnx_repo, tn.RBM), feeds)[tn.RANKING.name]
    rows = len(real_ratings)
    patterns = np.array([[1.0, 0.0], [0.0, 1.0], [3.0, 1.0]], np.float32)  # sae, rbm, 3:1
    weights = np.tile(patterns, (rows // 3 + 1, 1))[:rows]
    blend_feeds = {
        tn.RATINGS.name: real_ratings,
        tn.SAE_RANKING.name: sae,
        tn.RBM_RANKING.name: rbm,
        tn.WEIGHTS.name: weights,
    }
    out = run_onnx(onnx_path(onnx_repo, tn.HYBRID_BLEND), blend_feeds)
    # TorchServe's hybrid: weights summing to 1, rankings min-max scaled over unrated items.
    normalised = weights / weights.sum(axis=1, keepdims=True)
    expected = hybrid_scores(
        {tn.SAE: torch.from_numpy(sae), tn.RBM: torch.from_numpy(rbm)},
        torch.from_numpy(real_ratings == 0),
        [{tn.SAE: float(w[0]), tn.RBM: float(w[1])} for w in normalised],
    ).numpy()
    np.testing.assert_allclose(out[tn.SCORES.name], expected, atol=PARITY_ATOL)
    unrated = real_ratings == 0
    only_sae = out[tn.SCORES.name][0::3]
    assert np.allclose(only_sae[unrated[0::3]].max(), 1.0) and only_sae.min() >= 0.0
    assert_graph_top_k(out[tn.SCORES.name], real_ratings, prepared.metadata["item_ids"], out)
    with torch.no_grad():
        torch_out = HybridBlend(prepared.metadata["item_ids"])(
            *map(torch.from_numpy, blend_feeds.values())
        )[0]
    np.testing.assert_allclose(out[tn.SCORES.name], torch_out.numpy(), atol=PARITY_ATOL)


def test_export_command_writes_the_repository(checkpoints, project_home, tmp_path):
    from handlers.serving_artifact import ARTIFACT_FILE, ServingArtifact
    from training.cli import app
    from training.config import Paths

    folder = next(iter(checkpoints.values())).parent
    prepared = Paths(project_home).prepared("ml-100k")
    result = CliRunner().invoke(
        app,
        ["export", "onnx", "--checkpoints", str(folder), "--repo", str(tmp_path)]
        + ["--prepared", str(prepared)],
    )
    assert result.exit_code == 0, result.output
    for model in tn.ONNX_MODELS:
        assert onnx_path(tmp_path, model).is_file()
    # Every served model's artifact sits in its version folder (the ensemble's has only that).
    for model in tn.SERVED_MODELS:
        artifact = ServingArtifact.load(tmp_path / model / tn.MODEL_VERSION / ARTIFACT_FILE)
        assert artifact.model == model and len(artifact.item_ids) == artifact.vectors.shape[0]


def test_export_command_names_a_missing_checkpoint(tmp_path):
    from training.cli import app

    result = CliRunner().invoke(
        app, ["export", "onnx", "--checkpoints", str(tmp_path), "--repo", str(tmp_path / "repo")]
    )
    assert result.exit_code == 4
    assert "sae.pt" in result.output and "not found" in result.output
