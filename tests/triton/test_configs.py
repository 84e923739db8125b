"""The committed Triton configs (no server): production and CPU agree with each other, with
``triton_names`` and with the exported ONNX graphs."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from training.export.onnx import onnx_path
from training.serving import triton_names as tn
from training.serving.triton_server import COMMITTED_BACKENDS

REPO = Path(__file__).resolve().parents[2] / "triton_repo"
KIND_GPU = mc.ModelInstanceGroup.Kind.KIND_GPU
KIND_CPU = mc.ModelInstanceGroup.Kind.KIND_CPU


def load_config(path: Path) -> mc.ModelConfig:
    return text_format.Parse(path.read_text(encoding="utf-8"), mc.ModelConfig())


def production(model: str) -> mc.ModelConfig:
    return load_config(REPO / model / tn.PRODUCTION_CONFIG)


def cpu(model: str) -> mc.ModelConfig:
    return load_config(REPO / model / "configs" / f"{tn.CPU_CONFIG_NAME}.pbtxt")


def signature(tensors) -> list[tuple[str, str, list[int]]]:
    return [(t.name, mc.DataType.Name(t.data_type), list(t.dims)) for t in tensors]


def expected_signature(specs) -> list[tuple[str, str, list[int]]]:
    return [(s.name, s.config_dtype, list(s.dims)) for s in specs]


def test_every_model_has_a_config_and_nothing_else_is_in_the_repository():
    folders = {p.name for p in REPO.iterdir() if p.is_dir()}
    assert folders == set(tn.ALL_MODELS)


@pytest.mark.parametrize("model", tn.ONNX_MODELS)
def test_production_config(model):
    config = production(model)
    assert config.name == model
    assert config.platform == tn.PRODUCTION_PLATFORM and not config.backend
    assert config.max_batch_size == tn.MAX_BATCH_SIZE >= 64
    assert [g.kind for g in config.instance_group] == [KIND_GPU]
    assert config.default_model_filename == tn.ONNX_FILENAME


@pytest.mark.parametrize("model", tn.ONNX_MODELS)
def test_cpu_config_serves_the_same_model_as_production(model):
    prod, test = production(model), cpu(model)
    assert test.name == prod.name
    assert test.backend == tn.CPU_BACKEND and not test.platform
    assert [g.kind for g in test.instance_group] == [KIND_CPU]
    assert test.max_batch_size == prod.max_batch_size
    assert test.default_model_filename == tn.cpu_onnx_filename(model)
    assert signature(test.input) == signature(prod.input)
    assert signature(test.output) == signature(prod.output)
    # The same batcher but for the queue delay (see tn.CPU_MAX_QUEUE_DELAY_US).
    batcher = type(prod.dynamic_batching)()
    batcher.CopyFrom(prod.dynamic_batching)
    batcher.max_queue_delay_microseconds = tn.CPU_MAX_QUEUE_DELAY_US
    assert test.dynamic_batching == batcher


@pytest.mark.parametrize("model", tn.ONNX_MODELS)
def test_tensors_and_batcher_match_triton_names(model):
    config = production(model)
    assert signature(config.input) == expected_signature(tn.MODEL_INPUTS[model])
    assert signature(config.output) == expected_signature(tn.MODEL_OUTPUTS[model])
    batching = config.dynamic_batching
    assert list(batching.preferred_batch_size) == list(tn.PREFERRED_BATCH_SIZES)
    assert max(batching.preferred_batch_size) <= config.max_batch_size
    assert 0 < batching.max_queue_delay_microseconds == tn.MAX_QUEUE_DELAY_US


def test_the_cpu_backend_exists():
    assert (COMMITTED_BACKENDS / tn.CPU_BACKEND / "model.py").is_file()


def test_hybrid_ensemble_wires_the_models_together():
    assert not (REPO / tn.HYBRID / "configs").exists()  # one config for production and CPU
    config = production(tn.HYBRID)
    assert config.platform == "ensemble"
    assert signature(config.input) == expected_signature(tn.MODEL_INPUTS[tn.HYBRID])
    assert signature(config.output) == expected_signature(tn.MODEL_OUTPUTS[tn.HYBRID])
    steps = list(config.ensemble_scheduling.step)
    assert [s.model_name for s in steps] == [tn.SAE, tn.RBM, tn.HYBRID_BLEND]
    available = {t.name for t in config.input}
    for step in steps:
        step_config = production(step.model_name)
        assert config.max_batch_size <= step_config.max_batch_size
        assert set(step.input_map) == {t.name for t in step_config.input}
        assert set(step.input_map.values()) <= available, f"{step.model_name} reads unknown tensors"
        assert set(step.output_map) <= {t.name for t in step_config.output}
        available |= set(step.output_map.values())
    assert {t.name for t in config.output} <= available


@pytest.mark.parametrize("model", tn.ONNX_MODELS)
def test_configs_agree_with_the_onnx_graph(onnx_repo, model):
    graph = onnx.load(onnx_path(onnx_repo, model)).graph
    config = production(model)
    for tensors, graph_tensors in ((config.input, graph.input), (config.output, graph.output)):
        assert [t.name for t in tensors] == [t.name for t in graph_tensors]
        for tensor, graph_tensor in zip(tensors, graph_tensors, strict=True):
            graph_type = graph_tensor.type.tensor_type
            dtype = onnx.helper.tensor_dtype_to_np_dtype(graph_type.elem_type)
            assert (
                tn.TRITON_TO_NUMPY[mc.DataType.Name(tensor.data_type).removeprefix("TYPE_")]
                == dtype
            )
            batch, *dims = graph_type.shape.dim
            assert batch.dim_param, "max_batch_size > 0 needs a dynamic first axis"
            assert len(dims) == len(tensor.dims)
            for config_dim, graph_dim in zip(tensor.dims, dims, strict=True):
                assert config_dim == tn.VARIABLE or config_dim == graph_dim.dim_value
