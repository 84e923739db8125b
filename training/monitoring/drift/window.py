"""The online window: the web app's last requests, compared with the reference on demand (the
drift gauges of ``/metrics``)."""

from __future__ import annotations

import threading
from collections import deque

from training.monitoring.drift.reference import Reference
from training.monitoring.drift.report import DriftReport, compare_requests
from training.monitoring.drift.request_log import LoggedRequest

# The online window: the last N logged requests; fewer than the minimum says nothing reliable.
WINDOW_REQUESTS = 500
MIN_WINDOW_REQUESTS = 20


class DriftMonitor:
    """The sliding window of the last ``window`` requests, compared on demand (thread-safe)."""

    def __init__(
        self,
        reference: Reference,
        window: int = WINDOW_REQUESTS,
        min_requests: int = MIN_WINDOW_REQUESTS,
    ) -> None:
        self.reference = reference
        self.min_requests = min_requests
        self._requests: deque[LoggedRequest] = deque(maxlen=window)
        self._lock = threading.Lock()

    def add(self, request: LoggedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def __len__(self) -> int:
        return len(self._requests)

    def report(self) -> DriftReport | None:
        """None until the window holds ``min_requests`` requests."""
        with self._lock:
            requests = list(self._requests)
        if len(requests) < self.min_requests:
            return None
        return compare_requests(
            self.reference,
            requests,
            requests[0].timestamp,
            requests[-1].timestamp,
            self.min_requests,
        )
