"""The in-process baseline of a load run: the same model, in this process, on the same profiles.

The TorchScript file inside the served ``.mar`` (so exactly the model under load), one thread
(as a TorchServe worker), batch 1, forward pass and top-k: what a request costs without any
server, transport or serialisation. Without the archive, the checkpoint's serving form is
scripted instead. The report divides the servers' figures by these, so it shows overheads as ratios.
"""

from __future__ import annotations

import io
import statistics
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from benchmarks.profiles import dense_ratings
from handlers import contract

BASELINE_MODELS = ("sae", "rbm")
WARMUP_CALLS = 200
TOP_K = contract.DEFAULT_K
EXAMPLE_BATCH = 4  # rows a checkpoint's serving form is checked on
PERCENTILES = (50, 95, 99)


@dataclass(frozen=True)
class Baseline:
    model: str
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float

    @property
    def rps(self) -> float:
        """Sequential calls per second on one thread."""
        return 1000.0 / self.mean_ms


def percentiles_ms(samples: list[float]) -> dict[int, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {p: cuts[p - 1] for p in PERCENTILES}


def scripted_model(name: str, model_store: Path, checkpoints: Path, example):
    """``<name>.pt`` from ``<model_store>/<name>.mar``, else the checkpoint's serving form."""
    import torch

    archive = model_store / f"{name}.mar"
    if archive.is_file():
        with zipfile.ZipFile(archive) as mar:
            return torch.jit.load(io.BytesIO(mar.read(f"{name}.pt")))
    checkpoint = checkpoints / f"{name}.pt"
    if not checkpoint.is_file():
        raise FileNotFoundError(
            f"neither {archive} nor {checkpoint}: run `movierec train` and `movierec export`"
        )
    from training.export.torchserve import script_for_serving
    from training.models import load_checkpoint

    return script_for_serving(load_checkpoint(checkpoint).model, example)


def measure(name: str, model_store: Path, checkpoints: Path, profiles: dict, calls: int):
    import torch

    torch.set_num_threads(1)
    rows = torch.from_numpy(dense_ratings(profiles["item_ids"], profiles["profiles"]))
    model = scripted_model(name, model_store, checkpoints, rows[:EXAMPLE_BATCH])
    samples = []
    with torch.inference_mode():
        for i in range(WARMUP_CALLS + calls):
            row = rows[i % len(rows)].unsqueeze(0)
            started = time.perf_counter()
            _, ranking = model(row)
            ranking.masked_fill(row > 0, float("-inf")).topk(TOP_K, dim=1)
            if i >= WARMUP_CALLS:
                samples.append((time.perf_counter() - started) * 1000.0)
    cuts = percentiles_ms(samples)
    return Baseline(name, cuts[50], cuts[95], cuts[99], statistics.fmean(samples))


def measure_all(
    model_store: Path, checkpoints: Path, profiles: dict, calls: int
) -> dict[str, Baseline]:
    return {m: measure(m, model_store, checkpoints, profiles, calls) for m in BASELINE_MODELS}
