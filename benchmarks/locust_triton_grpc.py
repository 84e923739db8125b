"""Triton over gRPC: a custom Locust User on tritonclient's gRPC protocol, reporting to
``events.request``.

    locust -f benchmarks/locust_triton_grpc.py --host 127.0.0.1:8001 \\
        --profiles /tmp/profiles.json --headless -u 8 -r 8 -t 20s

``--host`` is Triton's gRPC address (host:port). Users ask for the in-graph top-k only, as the
web app does; the mix mirrors the TorchServe files: SAE most, then the RBM, the hybrid ensemble
with per-request weights, and a few batches of several users.

Like the TorchServe files' pre-encoded JSON bodies, each request is built once per process as
tritonclient's own protobuf message (``ModelInferRequest``) and sent as bytes over one gRPC
channel per user, so Locust spends its CPU on sending: ``TritonClient``'s per-call marshalling
cost 0.43 ms of CPU per request here against 0.27 ms, on the same two cores as the server.
Answers are parsed and checked (top-k shape) on every call.
"""

from __future__ import annotations

import random
from functools import cache

import grpc
import grpc.experimental.gevent as grpc_gevent
import numpy as np
from locust import User, task
from tritonclient.grpc import service_pb2

from benchmarks import locust_common as common
from benchmarks.profiles import dense_ratings
from training.serving import triton_names as tn

grpc_gevent.init_gevent()  # grpcio under gevent: make it cooperative first
REQUEST_TYPE = "grpc"
ROWS = common.BODIES_PER_KIND
INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"
SEED = 0


def infer_request(model: str, tensors: dict[tn.TensorSpec, np.ndarray]) -> bytes:
    """A serialized ModelInferRequest for the top-k outputs."""
    request = service_pb2.ModelInferRequest(model_name=model)
    for spec, array in tensors.items():
        tensor = request.inputs.add(name=spec.name, datatype=spec.triton_dtype)
        tensor.shape.extend(array.shape)
        request.raw_input_contents.append(np.ascontiguousarray(array).tobytes())
    for name in (tn.TOP_IDS.name, tn.TOP_SCORES.name):
        request.outputs.add(name=name)
    return request.SerializeToString()


@cache
def requests_for(profiles_path: str) -> dict[str, list[bytes]]:
    """Task name -> pre-serialized requests, built once per Locust process."""
    rng = random.Random(SEED)
    data = common.profiles_from(profiles_path)
    users = [rng.choice(data.users) for _ in range(ROWS)]
    rows = dense_ratings(data.item_ids, users).astype(tn.RATINGS.numpy_dtype, copy=False)
    ratings = tn.RATINGS

    def hybrid(row: np.ndarray) -> bytes:
        sae = rng.choice(common.HYBRID_SAE_WEIGHTS)
        weights = np.array([[sae, 1.0 - sae]], dtype=tn.WEIGHTS.numpy_dtype)
        return infer_request(tn.HYBRID, {ratings: row[None], tn.WEIGHTS: weights})

    return {
        "sae": [infer_request(tn.SAE, {ratings: row[None]}) for row in rows],
        "rbm": [infer_request(tn.RBM, {ratings: row[None]}) for row in rows],
        "hybrid": [hybrid(row) for row in rows],
        "sae batch": [
            infer_request(tn.SAE, {ratings: rows[start : start + common.BATCH_USERS]})
            for start in range(0, ROWS - common.BATCH_USERS + 1, common.BATCH_USERS)
        ],
    }


class TritonGrpcUser(User):
    wait_time = common.think_time

    def on_start(self) -> None:
        self.rng = random.Random()
        self.requests = requests_for(self.environment.parsed_options.profiles)
        self.channel = grpc.insecure_channel(self.host)
        self.infer = self.channel.unary_unary(INFER_METHOD)  # bytes in, bytes out

    def on_stop(self) -> None:
        self.channel.close()

    def _top_k(self, name: str, batch: int = 1) -> None:
        body = self.rng.choice(self.requests[name])
        with common.timed_request(self.environment, REQUEST_TYPE, name) as meta:
            answer = self.infer(body)
            meta["response_length"] = len(answer)
            response = service_pb2.ModelInferResponse.FromString(answer)
            names = [output.name for output in response.outputs]
            raw_ids = response.raw_output_contents[names.index(tn.TOP_IDS.name)]
            ids = np.frombuffer(raw_ids, dtype=tn.TOP_IDS.numpy_dtype)
            if ids.size != batch * tn.TOP_K:
                raise ValueError(f"{ids.size} top_ids, expected {batch * tn.TOP_K}")

    @task(6)
    def sae(self) -> None:
        self._top_k("sae")

    @task(2)
    def rbm(self) -> None:
        self._top_k("rbm")

    @task(2)
    def hybrid(self) -> None:
        self._top_k("hybrid")

    @task(1)
    def sae_batch(self) -> None:
        self._top_k("sae batch", common.BATCH_USERS)
