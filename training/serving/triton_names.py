"""Triton's model names, tensor specs (names from ``handlers.contract``), dtypes and batch sizes.

The ONNX export, the committed ``config.pbtxt`` files, the gRPC client and the tests all read
these values; ``tests/triton/test_configs.py`` checks that the configs and the graphs agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from handlers import contract

# Models, as Triton names them (folder names under triton_repo/): the contract's, plus the
# ensemble's blending step.
SAE = contract.SAE
RBM = contract.RBM
HYBRID_BLEND = "hybrid_blend"  # the ensemble's last step: weighted mix of the two rankings
HYBRID = contract.HYBRID  # ensemble: ratings + weights -> sae, rbm -> hybrid_blend
SCORING_MODELS = contract.SCORING_MODELS
ONNX_MODELS = (SAE, RBM, HYBRID_BLEND)  # every model `movierec export onnx` writes a graph for
SERVED_MODELS = contract.SERVED_MODELS  # what clients call
ALL_MODELS = (*ONNX_MODELS, HYBRID)

MODEL_VERSION = "1"
READY = "READY"  # a model version's state in the repository index
ONNX_FILENAME = "model.onnx"
# The scoring models' graphs with int8 weights (onnxruntime dynamic quantization), which the CPU
# configs serve: the 12 MB float32 SAE graph's matrix products are the CPU path's largest cost,
# and the GPU (production) has no need of them. hybrid_blend holds no weights.
ONNX_INT8_FILENAME = "model.int8.onnx"
QUANTIZED_MODELS = SCORING_MODELS
PRODUCTION_CONFIG = "config.pbtxt"
# `tritonserver --model-config-name=cpu` reads <model>/configs/cpu.pbtxt and falls back to
# config.pbtxt for models without one (the ensemble).
CPU_CONFIG_NAME = "cpu"
# A Python-based backend (backends/<name>/model.py) that runs model.onnx with onnxruntime, for
# tritonservers without the onnxruntime backend (the one bundled with nvidia-pytriton).
CPU_BACKEND = "onnxruntime_python"
PRODUCTION_PLATFORM = "onnxruntime_onnx"

# The official image matching the bundled tritonserver 2.51; its onnxruntime (1.19) reads ONNX
# IR versions up to 10 and opsets up to 21.
TRITON_RELEASE = "24.10"
TRITON_SERVER_VERSION = "2.51.0"
TRITON_IMAGE = f"nvcr.io/nvidia/tritonserver:{TRITON_RELEASE}-py3"
ONNX_OPSET = 18
MAX_ONNX_IR_VERSION = 10

# Batching: the same in the production and the CPU configs but for the queue delay.
MAX_BATCH_SIZE = 256
PREFERRED_BATCH_SIZES = (16, 64, 256)
MAX_QUEUE_DELAY_US = 100  # GPU: wait up to 0.1 ms for batch mates, as the onnxruntime backend likes
# CPU (Python backend): batch only what already waits. A lone request no longer waits out the
# delay (and the batcher's wake-up), and under load the queue fills while the stub runs the batch
# before: Locust's SAE p50 at 1 user 0.95-1.25 -> 0.78-0.82 ms, req/s at 32 users the same
# (2,692-2,974 vs 2,653-2,919; 3-4 runs each, 2026-11-26).
CPU_MAX_QUEUE_DELAY_US = 0


def cpu_onnx_filename(model: str) -> str:
    """The graph file a CPU config serves for ``model``."""
    return ONNX_INT8_FILENAME if model in QUANTIZED_MODELS else ONNX_FILENAME


# Top-k computed inside the graphs (rated items masked out), so clients need not fetch all scores.
TOP_K = contract.GRAPH_TOP_K
# Hybrid weights per request: [w_sae, w_rbm], non-negative, not both zero.
N_HYBRID_WEIGHTS = len(contract.HYBRID_PARTS)

# Tensors. dims exclude the batch axis; -1 = the catalogue size (fixed in each graph, so one
# config serves any dataset; a request of the wrong width is rejected by the backend).
VARIABLE = -1


@dataclass(frozen=True)
class TensorSpec:
    name: str
    triton_dtype: str  # as the inference protocol spells it (FP32, INT64)
    dims: tuple[int, ...]

    @property
    def numpy_dtype(self) -> np.dtype:
        return np.dtype(TRITON_TO_NUMPY[self.triton_dtype])

    @property
    def config_dtype(self) -> str:
        """The model-config enum name (TYPE_FP32)."""
        return f"TYPE_{self.triton_dtype}"


TRITON_TO_NUMPY = {"FP32": np.float32, "INT64": np.int64}

RATINGS = TensorSpec(contract.RATINGS, "FP32", (VARIABLE,))
WEIGHTS = TensorSpec(contract.WEIGHTS, "FP32", (N_HYBRID_WEIGHTS,))
# The model's own scores: the SAE's predicted ratings (1-5), the RBM's probabilities, the
# hybrid's mix (which is also its ranking).
SCORES = TensorSpec(contract.SCORES, "FP32", (VARIABLE,))
# What top_ids are taken from (the SAE's "will watch and like", the RBM's probabilities).
RANKING = TensorSpec(contract.RANKING, "FP32", (VARIABLE,))
TOP_IDS = TensorSpec(contract.TOP_IDS, "INT64", (TOP_K,))  # MovieLens item ids, best first
TOP_SCORES = TensorSpec(contract.TOP_SCORES, "FP32", (TOP_K,))  # their ranking values
SAE_RANKING = TensorSpec(contract.SAE_RANKING, "FP32", (VARIABLE,))
RBM_RANKING = TensorSpec(contract.RBM_RANKING, "FP32", (VARIABLE,))
SAE_SCORES = TensorSpec(contract.SAE_SCORES, "FP32", (VARIABLE,))  # the hybrid's predicted ratings

OUTPUTS = (SCORES, TOP_IDS, TOP_SCORES)
SCORING_OUTPUTS = (SCORES, RANKING, TOP_IDS, TOP_SCORES)
MODEL_INPUTS: dict[str, tuple[TensorSpec, ...]] = {
    SAE: (RATINGS,),
    RBM: (RATINGS,),
    HYBRID_BLEND: (RATINGS, SAE_RANKING, RBM_RANKING, WEIGHTS),
    HYBRID: (RATINGS, WEIGHTS),
}
MODEL_OUTPUTS: dict[str, tuple[TensorSpec, ...]] = {
    SAE: SCORING_OUTPUTS,
    RBM: SCORING_OUTPUTS,
    HYBRID_BLEND: OUTPUTS,
    HYBRID: (*OUTPUTS, SAE_SCORES),
}
# Per served model: the output a client ranks by, and the one holding predicted ratings.
RANKING_OUTPUT = {SAE: RANKING.name, RBM: RANKING.name, HYBRID: SCORES.name}
PREDICTED_RATINGS_OUTPUT = {SAE: SCORES.name, HYBRID: SAE_SCORES.name}
