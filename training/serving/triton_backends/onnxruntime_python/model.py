"""A Python-based Triton backend that runs a model's ``model.onnx`` with onnxruntime on CPU.

Why: the only tritonserver that runs here (bundled with nvidia-pytriton) has the Python backend
but no onnxruntime backend. The CPU configs (``triton_repo/<model>/configs/cpu.pbtxt``) name this
backend; Triton loads this file from ``<backend-directory>/onnxruntime_python/model.py`` and the
version folder holds only the same ``model.onnx`` the production configs serve. Like Triton's own
onnxruntime backend, each call runs the whole dynamic batch in one ``session.run``.

This module runs inside Triton's Python stub, never imported by the ``training`` package.
"""

from __future__ import annotations

import gc
import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

DEFAULT_MODEL_FILENAME = "model.onnx"
# The same parameter names Triton's onnxruntime backend reads, so configs stay interchangeable.
INTRA_OP_THREADS = "intra_op_thread_count"
INTER_OP_THREADS = "inter_op_thread_count"
DEFAULT_THREADS = 1
# The stub's numpy conversions return wrong tensors silently under numpy 2 (its DLPack path
# breaks on numpy's capsules instead), so the project pins numpy 1.x and this backend checks.
SUPPORTED_NUMPY_MAJOR = 1


def _parameter(config: dict, key: str, default: int) -> int:
    value = config.get("parameters", {}).get(key, {}).get("string_value")
    return int(value) if value else default


def _invalid(message: str) -> pb_utils.InferenceResponse:
    error = pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG)
    return pb_utils.InferenceResponse(output_tensors=[], error=error)


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        if int(np.__version__.split(".")[0]) != SUPPORTED_NUMPY_MAJOR:
            raise pb_utils.TritonModelException(
                f"numpy {np.__version__} in the Python stub: numpy<2 is required"
            )
        config = json.loads(args["model_config"])
        self.model_name = config["name"]
        filename = config.get("default_model_filename") or DEFAULT_MODEL_FILENAME
        path = os.path.join(args["model_repository"], args["model_version"], filename)
        options = ort.SessionOptions()
        options.intra_op_num_threads = _parameter(config, INTRA_OP_THREADS, DEFAULT_THREADS)
        options.inter_op_num_threads = _parameter(config, INTER_OP_THREADS, DEFAULT_THREADS)
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        graph_inputs = {tensor.name: tensor for tensor in self.session.get_inputs()}
        graph_outputs = {tensor.name for tensor in self.session.get_outputs()}
        # A config that disagrees with the graph must fail at load time, not on the first request.
        self.input_names = [tensor["name"] for tensor in config["input"]]
        self.output_names = [tensor["name"] for tensor in config["output"]]
        missing = [n for n in self.input_names if n not in graph_inputs] + [
            n for n in self.output_names if n not in graph_outputs
        ]
        if missing:
            raise pb_utils.TritonModelException(
                f"{path}: tensors {missing} of the config are not in the graph"
            )
        # Per-request dims after the batch axis; the graph fixes them (e.g. the catalogue size).
        self.item_dims = {name: tuple(graph_inputs[name].shape[1:]) for name in self.input_names}
        # The stub's start-up objects live as long as it does; a full cyclic-GC pass over them
        # would stall a batch mid-request, so the collector skips them from here on.
        gc.freeze()

    def _shape_error(self, name: str, array: np.ndarray) -> str | None:
        expected = self.item_dims[name]
        if array.ndim != len(expected) + 1 or tuple(array.shape[1:]) != expected:
            return (
                f"model '{self.model_name}', input '{name}': expected shape "
                f"[batch, {', '.join(map(str, expected))}], got {list(array.shape)}"
            )
        return None

    def execute(self, requests: list) -> list:
        responses: list = [None] * len(requests)
        batches: dict[str, list[np.ndarray]] = {name: [] for name in self.input_names}
        accepted: list[tuple[int, int, list[str]]] = []  # (request index, rows, outputs wanted)
        wanted: set[str] = set()
        for index, request in enumerate(requests):
            arrays = {
                name: pb_utils.get_input_tensor_by_name(request, name).as_numpy()
                for name in self.input_names
            }
            errors = [self._shape_error(name, array) for name, array in arrays.items()]
            batch_sizes = {array.shape[0] for array in arrays.values()}
            if any(errors) or len(batch_sizes) != 1:
                message = next((e for e in errors if e), "inputs differ in batch size")
                responses[index] = _invalid(message)
                continue
            outputs = list(request.requested_output_names()) or self.output_names
            accepted.append((index, batch_sizes.pop(), outputs))
            wanted.update(outputs)
            for name, array in arrays.items():
                batches[name].append(array)
        if accepted:
            feeds = {name: np.concatenate(parts) for name, parts in batches.items()}
            names = [name for name in self.output_names if name in wanted]
            results = dict(zip(names, self.session.run(names, feeds), strict=True))
            start = 0
            for index, rows, outputs in accepted:
                tensors = [
                    pb_utils.Tensor(name, np.ascontiguousarray(results[name][start : start + rows]))
                    for name in outputs
                ]
                responses[index] = pb_utils.InferenceResponse(output_tensors=tensors)
                start += rows
        return responses
