"""Triton over gRPC: a custom Locust User built on tritonclient, reporting to ``events.request``.

    locust -f benchmarks/locust_triton_grpc.py --host 127.0.0.1:8001 \\
        --profiles /tmp/profiles.json --headless -u 8 -r 8 -t 20s

``--host`` is Triton's gRPC address (host:port). Each user holds one ``TritonClient``
(tritonclient.grpc underneath) and asks for the in-graph top-k only, as the web app does; the
mix mirrors the TorchServe files: SAE most, then the RBM, the hybrid ensemble with per-request
weights, and a few batches of several users.
"""

from __future__ import annotations

import random

import grpc.experimental.gevent as grpc_gevent
import locust_common as common
import numpy as np
from locust import User, task

from training.serving import triton_names as tn
from training.serving.triton_client import TritonClient

grpc_gevent.init_gevent()  # tritonclient.grpc runs on grpcio: make it cooperative first
REQUEST_TYPE = "grpc"
ROWS = common.BODIES_PER_KIND


def dense_rows(data: common.Profiles, count: int, rng: random.Random) -> np.ndarray:
    """Rating vectors FP32 [count, n_items] in catalogue order (0 = unrated)."""
    column_of = {movie: column for column, movie in enumerate(data.item_ids)}
    rows = np.zeros((count, len(data.item_ids)), dtype=tn.RATINGS.numpy_dtype)
    for row, profile in zip(rows, (rng.choice(data.users) for _ in range(count)), strict=True):
        for movie, stars in profile["ratings"].items():
            row[column_of[int(movie)]] = stars
    return rows


class TritonGrpcUser(User):
    wait_time = common.think_time

    def on_start(self) -> None:
        self.rng = random.Random()
        self.rows = dense_rows(common.profiles(self.environment), ROWS, self.rng)
        self.client = TritonClient(self.host)

    def on_stop(self) -> None:
        self.client.close()

    def _top_k(self, model: str, name: str, batch: int = 1) -> None:
        start = self.rng.randrange(len(self.rows) - batch + 1)
        ratings = self.rows[start : start + batch]
        weights = None
        if model == tn.HYBRID:
            sae = self.rng.choice(common.HYBRID_SAE_WEIGHTS)
            weights = np.tile(np.array([[sae, 1.0 - sae]], dtype=np.float32), (batch, 1))
        with common.timed_request(self.environment, REQUEST_TYPE, name) as meta:
            ids, scores = self.client.top_k(model, ratings, weights)
            meta["response_length"] = ids.nbytes + scores.nbytes
            if ids.shape != (batch, tn.TOP_K):
                raise ValueError(f"top_ids of shape {ids.shape}, expected {(batch, tn.TOP_K)}")

    @task(6)
    def sae(self) -> None:
        self._top_k(tn.SAE, "sae")

    @task(2)
    def rbm(self) -> None:
        self._top_k(tn.RBM, "rbm")

    @task(2)
    def hybrid(self) -> None:
        self._top_k(tn.HYBRID, "hybrid")

    @task(1)
    def sae_batch(self) -> None:
        self._top_k(tn.SAE, "sae batch", common.BATCH_USERS)
