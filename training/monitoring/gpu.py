"""GPU memory and utilisation as Prometheus metrics, only where CUDA is really in use.

The collector never imports torch nor initialises CUDA itself: a process that does not already
use the GPU (the web app talking to model servers) exposes nothing and pays nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

GPU_MEMORY_USED = "gpu_memory_used_bytes"
GPU_MEMORY_TOTAL = "gpu_memory_total_bytes"
GPU_MEMORY_ALLOCATED = "gpu_memory_allocated_bytes"
GPU_UTILIZATION = "gpu_utilization_ratio"
# What this module can expose; only with CUDA (tests of metric names need the list).
GPU_METRICS = (GPU_MEMORY_USED, GPU_MEMORY_TOTAL, GPU_MEMORY_ALLOCATED, GPU_UTILIZATION)
PERCENT = 100.0


def _cuda_in_use() -> ModuleType | None:
    """torch, when this process has already initialised CUDA; otherwise None."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return torch


class GpuCollector(Collector):
    """Per device: memory used/total (whole device), memory this process allocated, utilisation
    (needs NVML; skipped when absent)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        torch = _cuda_in_use()
        if torch is None:
            return
        labels = ["device"]
        used = GaugeMetricFamily(GPU_MEMORY_USED, "GPU memory in use on the device", labels=labels)
        total = GaugeMetricFamily(GPU_MEMORY_TOTAL, "GPU memory of the device", labels=labels)
        allocated = GaugeMetricFamily(
            GPU_MEMORY_ALLOCATED, "GPU memory allocated by this process's tensors", labels=labels
        )
        utilization = GaugeMetricFamily(
            GPU_UTILIZATION, "Share of time the GPU was busy (0-1)", labels=labels
        )
        for index in range(torch.cuda.device_count()):
            device = str(index)
            free, capacity = torch.cuda.mem_get_info(index)
            used.add_metric([device], capacity - free)
            total.add_metric([device], capacity)
            allocated.add_metric([device], torch.cuda.memory_allocated(index))
            try:
                utilization.add_metric([device], torch.cuda.utilization(index) / PERCENT)
            except Exception:  # noqa: BLE001 - NVML (pynvml) missing or unsupported: no figure
                pass
        yield from (used, total, allocated, utilization)


def peak_memory_bytes(device: Any) -> int | None:
    """Peak memory allocated on a CUDA ``device`` since the process started; None on CPU."""
    torch = _cuda_in_use()
    if torch is None or torch.device(device).type != "cuda":
        return None
    return int(torch.cuda.max_memory_allocated(device))
