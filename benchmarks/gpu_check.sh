#!/usr/bin/env bash
# GPU check for the Triton graphs (about 5 minutes, most of it pip): on a machine with an NVIDIA
# GPU, install onnxruntime-gpu in a throw-away venv, check that the CUDA provider gives the same
# scores and top-k as the CPU one on the exported model.onnx files, and print throughput at
# batch 1/8/64/256 on GPU vs CPU. Writes benchmarks/results/gpu_check.md.
#
#   benchmarks/gpu_check.sh                      # graphs from triton_repo/ (make export-onnx)
#   ORT_GPU_WHEELS=/path/to/wheels benchmarks/gpu_check.sh   # offline: install from a folder
#
# Without exported graphs it builds a synthetic SAE-sized graph, so the throughput figures still
# mean something (the report says which it used).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
# onnxruntime-gpu 1.31 (the project's gpu extra) is built for CUDA 13, which needs driver >= 580;
# 1.23.2 is the newest built for CUDA 12 (drivers >= 525). Chosen from the driver unless set.
ORT_GPU_CUDA13="1.31.1"
ORT_GPU_CUDA12="1.23.2"
NUMPY_VERSION="1.26.4"
ONNX_VERSION="1.23.2"
VENV="${GPU_CHECK_VENV:-${TMPDIR:-/tmp}/movierec-gpu-check}"
REPO="${TRITON_REPO:-$ROOT/triton_repo}"
REPORT="${GPU_CHECK_REPORT:-$ROOT/benchmarks/results/gpu_check.md}"

command -v nvidia-smi >/dev/null || { echo "error: nvidia-smi not found: no NVIDIA GPU here" >&2; exit 4; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
DRIVER_CUDA_MAJOR="$(nvidia-smi | sed -n 's/.*CUDA Version: *\([0-9]*\).*/\1/p' | head -n1)"
if [[ -z "${ORT_GPU_VERSION:-}" ]]; then
  if (( ${DRIVER_CUDA_MAJOR:-12} >= 13 )); then ORT_GPU_VERSION="$ORT_GPU_CUDA13"; else ORT_GPU_VERSION="$ORT_GPU_CUDA12"; fi
fi
echo "driver supports CUDA ${DRIVER_CUDA_MAJOR:-?}: onnxruntime-gpu $ORT_GPU_VERSION"

if [[ ! -x "$VENV/bin/python" ]]; then
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/pip" install --quiet --disable-pip-version-check)
if [[ -n "${ORT_GPU_WHEELS:-}" ]]; then
  PIP+=(--no-index --find-links "$ORT_GPU_WHEELS")
fi
# The [cuda,cudnn] extras bring the CUDA runtime and cuDNN 9 as wheels; preload_dlls() finds them.
"${PIP[@]}" "onnxruntime-gpu[cuda,cudnn]==$ORT_GPU_VERSION" "numpy==$NUMPY_VERSION" "onnx==$ONNX_VERSION"

mkdir -p "$(dirname "$REPORT")"
"$VENV/bin/python" - "$REPO" "$REPORT" <<'PY'
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

repo, report = Path(sys.argv[1]), Path(sys.argv[2])
BATCHES = (1, 8, 64, 256)
SECONDS_PER_POINT = 1.5
PARITY_ATOL = 1e-4  # float32 on two devices; TF32 is switched off below
DENSITY = 0.06  # share of items a user has rated, as in ML-100K
N_ITEMS = 1682

if hasattr(ort, "preload_dlls"):
    ort.preload_dlls()
if "CUDAExecutionProvider" not in ort.get_available_providers():
    sys.exit(f"error: onnxruntime {ort.__version__} has no CUDA provider here: "
             f"{ort.get_available_providers()}")


def synthetic_sae(path: Path) -> Path:
    """n_items -> 20 -> 10 -> 20 -> n_items sigmoid MLP, random weights: the SAE's shape."""
    rng = np.random.default_rng(0)
    sizes = [N_ITEMS, 20, 10, 20, N_ITEMS]
    nodes, inits, last = [], [], "ratings"
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        inits += [numpy_helper.from_array(rng.normal(0, 0.1, (a, b)).astype(np.float32), f"w{i}"),
                  numpy_helper.from_array(np.zeros(b, np.float32), f"b{i}")]
        nodes += [helper.make_node("MatMul", [last, f"w{i}"], [f"m{i}"]),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"])]
        last = f"a{i}"
        if i < len(sizes) - 2:
            nodes.append(helper.make_node("Sigmoid", [last], [f"s{i}"]))
            last = f"s{i}"
    nodes.append(helper.make_node("Identity", [last], ["scores"]))
    graph = helper.make_graph(
        nodes, "synthetic_sae",
        [helper.make_tensor_value_info("ratings", TensorProto.FLOAT, ["batch", N_ITEMS])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", N_ITEMS])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


graphs = {name: repo / name / "1" / "model.onnx" for name in ("sae", "rbm")}
graphs = {name: path for name, path in graphs.items() if path.is_file()}
source = f"exported graphs from {repo}"
if not graphs:
    graphs = {"synthetic_sae": synthetic_sae(Path("/tmp/movierec_synthetic_sae.onnx"))}
    source = "a synthetic SAE-sized graph (no exported model.onnx found)"

cuda = ("CUDAExecutionProvider", {"use_tf32": 0})
import subprocess
card = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                      capture_output=True, text=True).stdout.strip()
lines = [f"# GPU check: onnxruntime-gpu {ort.__version__} on {card}", "", f"Graphs: {source}.", ""]
for name, path in graphs.items():
    n_items = onnx.load(path).graph.input[0].type.tensor_type.shape.dim[1].dim_value
    rng = np.random.default_rng(0)
    ratings = (rng.integers(1, 6, (256, n_items)) * (rng.random((256, n_items)) < DENSITY))
    ratings = ratings.astype(np.float32)
    cpu = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    gpu = ort.InferenceSession(str(path), providers=[cuda, "CPUExecutionProvider"])
    assert gpu.get_providers()[0] == "CUDAExecutionProvider", gpu.get_providers()
    outputs = [o.name for o in cpu.get_outputs()]
    on_cpu = dict(zip(outputs, cpu.run(outputs, {"ratings": ratings})))
    on_gpu = dict(zip(outputs, gpu.run(outputs, {"ratings": ratings})))
    error = float(np.abs(on_cpu["scores"] - on_gpu["scores"]).max())
    verdict = "OK" if error <= PARITY_ATOL else "MISMATCH"
    lines += [f"## {name}", "", f"Parity CUDA vs CPU on 256 users: max |diff| = {error:.2e} "
              f"({verdict}, tolerance {PARITY_ATOL:g})."]
    if "top_ids" in on_cpu:
        same = float((on_cpu["top_ids"] == on_gpu["top_ids"]).mean())
        lines[-1] += f" Same top-k ids: {same:.1%}."
    lines += ["", "| batch | CPU rows/s | GPU rows/s | CPU ms/batch | GPU ms/batch |",
              "|---|---|---|---|---|"]
    for batch in BATCHES:
        feeds = {"ratings": ratings[:batch]}
        row = [str(batch)]
        timings = []
        for session in (cpu, gpu):
            for _ in range(20):
                session.run(["scores"], feeds)
            runs, started = 0, time.perf_counter()
            while time.perf_counter() - started < SECONDS_PER_POINT:
                session.run(["scores"], feeds)
                runs += 1
            timings.append((time.perf_counter() - started) / runs)
        row += [f"{batch / t:,.0f}" for t in timings] + [f"{t * 1000:.3f}" for t in timings]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    if verdict != "OK":
        print("\n".join(lines))
        sys.exit(f"error: {name}: CUDA and CPU scores differ by {error:.2e}")
text = "\n".join(lines)
print(text)
report.write_text(text + "\n", encoding="utf-8")
print(f"written {report}")
PY
