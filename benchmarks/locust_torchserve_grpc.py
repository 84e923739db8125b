"""TorchServe inference over gRPC: the same request mix as the HTTP file, on one channel per user.

    locust -f benchmarks/locust_torchserve_grpc.py --host 127.0.0.1:7070 \\
        --profiles /tmp/profiles.json --headless -u 8 -r 8 -t 20s

``--host`` is TorchServe's gRPC inference address (host:port). The stubs come from
``training.serving.torchserve_grpc`` (compiled from the protos in TorchServe's jar); grpcio is
made gevent-cooperative first, as Locust's users are greenlets.
"""

from __future__ import annotations

import json
import random

import grpc
import grpc.experimental.gevent as grpc_gevent
from locust import User

from benchmarks import locust_common as common
from training.serving.torchserve_client import GRPC_BODY_KEY
from training.serving.torchserve_grpc import load_stubs

grpc_gevent.init_gevent()  # before any channel exists
STUBS = load_stubs()
REQUEST_TYPE = "grpc"
TIMEOUT_S = 10.0


class HandlerError(RuntimeError):
    """The handler answered with its error body (gRPC replies carry no HTTP status)."""


def check_reply(prediction: bytes) -> None:
    """Same rule as TorchServeGrpcClient: an error body is {"code": int, "type", "message"}."""
    if b'"recommendations"' in prediction or b'"users"' in prediction:
        return
    answer = json.loads(prediction)
    if isinstance(answer, dict) and isinstance(answer.get("code"), int) and "type" in answer:
        raise HandlerError(f"{answer['code']} {answer['type']}: {answer.get('message')}")
    raise HandlerError(f"unexpected answer: {prediction[:200]!r}")


class TorchServeGrpcUser(User):
    wait_time = common.think_time
    tasks = common.TORCHSERVE_MIX

    def on_start(self) -> None:
        self.rng = random.Random()
        self.bodies = common.payloads(self.environment)
        self.channel = grpc.insecure_channel(self.host)
        self.stub = STUBS.inference_pb2_grpc.InferenceAPIsServiceStub(self.channel)

    def on_stop(self) -> None:
        self.channel.close()

    def predict(self, model: str, body: bytes, name: str, batch: bool = False) -> None:
        """``batch`` needs no check of its own: ``check_reply`` accepts either answer."""
        request = STUBS.inference_pb2.PredictionsRequest(
            model_name=model, input={GRPC_BODY_KEY: body}
        )
        with common.timed_request(self.environment, REQUEST_TYPE, name) as meta:
            reply = self.stub.Predictions(request, timeout=TIMEOUT_S)
            meta["response_length"] = len(reply.prediction)
            check_reply(reply.prediction)
