"""What a TorchServe worker reports about itself through the custom metrics API
(``context.metrics``, the BaseHandler metrics object): how many requests shared each forward
pass, and how much memory the worker holding the model uses.

TorchServe's frontend turns each report into a Prometheus series on its metrics port, labelled
``ModelName`` (and ``Level``, ``Hostname``); the configs set ``model_metrics_auto_detect`` so these
need no entry in TorchServe's metrics config. Shipped in every .mar beside the handlers.
"""

from __future__ import annotations

import time
from typing import Any

import psutil  # a TorchServe dependency: its frontend measures workers with it
from ts.metrics.metric_type_enum import MetricTypes

# Requests per forward pass (a histogram: TorchServe's default buckets hold 1, 2.5, 5, 7.5, 10).
BATCH_SIZE_METRIC = "model_batch_size"
# Resident memory of the worker process serving the model (the model, its catalogue, torch).
MEMORY_METRIC = "model_memory_usage_bytes"
COUNT_UNIT = "count"
BYTES_UNIT = "Bytes"
# RSS changes slowly; reading it for every batch would cost a system call and a log line each.
MEMORY_REPORT_INTERVAL_S = 5.0


class WorkerMetrics:
    """Reports one batch at a time; the memory at most every ``MEMORY_REPORT_INTERVAL_S``."""

    def __init__(self, memory_interval_s: float = MEMORY_REPORT_INTERVAL_S) -> None:
        self.process = psutil.Process()
        self.memory_interval_s = memory_interval_s
        self._memory_reported_at = -float("inf")

    def batch(self, metrics: Any, size: int) -> None:
        """``metrics`` is the request context's ``metrics`` (None outside TorchServe)."""
        if metrics is None:
            return
        metrics.add_metric(
            BATCH_SIZE_METRIC, size, COUNT_UNIT, dimensions=[], metric_type=MetricTypes.HISTOGRAM
        )
        now = time.monotonic()
        if now - self._memory_reported_at >= self.memory_interval_s:
            self._memory_reported_at = now
            rss = self.process.memory_info().rss
            metrics.add_metric(
                MEMORY_METRIC, rss, BYTES_UNIT, dimensions=[], metric_type=MetricTypes.GAUGE
            )
