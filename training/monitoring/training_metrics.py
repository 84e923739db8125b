"""Training figures as a Prometheus textfile (``data/metrics/training.prom``), no Pushgateway.

``train`` writes the file after each model; the web app re-exposes it on ``/metrics``
(``web.metrics.TextfileCollector``, through ``read_textfile``), so Prometheus scrapes the latest
training figures with the rest. A node_exporter textfile collector pointed at ``data/metrics/``
reads the same file.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Metric, write_to_textfile
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from training.config import get_logger
from training.monitoring.gpu import peak_memory_bytes

log = get_logger("monitoring")

TEXTFILE_NAME = "training.prom"
MODEL_LABEL = "model_type"
# name -> (help, labels beyond model_type); gauges, one value per model (per epoch for curves).
TRAINING_METRICS = {
    "training_loss": ("Training loss of an epoch", ("epoch",)),
    "validation_loss": ("Validation figure that picks the best epoch, per epoch", ("epoch",)),
    "model_training_duration_seconds": ("Wall time of the training run", ()),
    "training_seconds_to_best": ("Wall time until the best epoch", ()),
    "training_best_epoch": ("Epoch whose weights were kept", ()),
    "training_epochs_run": ("Epochs run (early stopping may end a run sooner)", ()),
    "training_last_run_timestamp_seconds": ("When the training run finished (Unix time)", ()),
    "training_gpu_memory_peak_bytes": ("Peak GPU memory allocated while training", ()),
    "training_best_validation": ("Validation figure of the kept epoch (lower is better)", ()),
    "training_final_loss": ("Training loss of the run's last epoch", ()),
}
Samples = dict[str, list[tuple[dict[str, str], float]]]


def _field(history: Any, name: str, default: Any = None) -> Any:
    if isinstance(history, Mapping):
        return history.get(name, default)
    return getattr(history, name, default)


def training_samples(
    model_type: str, history: Any, monitor: str | None = None, device: Any = None
) -> Samples:
    """Samples per metric for one run; ``history`` is a ``History`` or its ``to_dict()``."""
    if monitor is None:
        from training.models import RECOMMENDERS

        monitor = getattr(RECOMMENDERS.get(model_type), "monitor", None)
    label = {MODEL_LABEL: model_type}
    losses: Sequence[float] = _field(history, "train_loss", []) or []
    validation: Sequence[Mapping[str, float]] = _field(history, "validation", []) or []
    samples: Samples = {name: [] for name in TRAINING_METRICS}
    for epoch, loss in enumerate(losses, start=1):
        samples["training_loss"].append(({**label, "epoch": str(epoch)}, float(loss)))
    for epoch, figures in enumerate(validation, start=1):
        if monitor is not None and monitor in figures:
            value = float(figures[monitor])
            samples["validation_loss"].append(({**label, "epoch": str(epoch)}, value))
    peak = peak_memory_bytes(device) if device is not None else None
    best = _field(history, "best_value")
    scalars = {
        "model_training_duration_seconds": _field(history, "seconds_total", 0),
        "training_seconds_to_best": _field(history, "seconds_to_best", 0),
        "training_best_epoch": _field(history, "best_epoch", 0),
        "training_epochs_run": len(losses),
        "training_last_run_timestamp_seconds": time.time(),
        "training_gpu_memory_peak_bytes": peak,
        "training_best_validation": best if best is not None and math.isfinite(best) else None,
        "training_final_loss": losses[-1] if losses else None,
    }
    for name, value in scalars.items():
        if value is not None:
            samples[name].append((label, float(value)))
    return samples


def read_textfile(path: Path) -> list[Metric]:
    """The metric families of a textfile; empty when the file is missing or unreadable."""
    try:
        return list(text_string_to_metric_families(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return []
    except ValueError as exc:
        log.warning("%s: not Prometheus text format (%s); ignored", path, exc)
        return []


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def write_training_textfile(
    path: Path, model_type: str, history: Any, monitor: str | None = None, device: Any = None
) -> Path:
    """Replace ``model_type``'s samples in the textfile (other models' stay); atomic write."""
    fresh = training_samples(model_type, history, monitor, device)
    helps = {name: documentation for name, (documentation, _labels) in TRAINING_METRICS.items()}
    return replace_samples(path, helps, MODEL_LABEL, model_type, fresh)


def replace_samples(
    path: Path, metrics: Mapping[str, str], label: str, value: str, fresh: Samples
) -> Path:
    """Rewrite the textfile of gauges ``metrics`` (name -> help): the samples whose ``label`` is
    ``value`` become ``fresh``, the others stay; atomic (a scrape never reads half a file)."""
    kept: Samples = {}
    for family in read_textfile(path):
        if family.name in metrics:
            kept[family.name] = [
                (dict(s.labels), s.value) for s in family.samples if s.labels.get(label) != value
            ]
    families = []
    for name, documentation in metrics.items():
        family = Metric(name, documentation, "gauge")
        for labels, number in [*kept.get(name, []), *fresh.get(name, [])]:
            family.add_sample(name, labels, number)
        if family.samples:
            families.append(family)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry)
    return path
