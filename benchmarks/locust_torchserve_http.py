"""TorchServe inference over HTTP: users sampled from the test split, mixed k, some hybrid calls.

    locust -f benchmarks/locust_torchserve_http.py --host http://127.0.0.1:8080 \\
        --profiles /tmp/profiles.json --headless -u 8 -r 8 -t 20s

Each simulated client posts back to back (``--think-ms`` adds a pause): the figure is what the
server sustains. The mix: SAE most, then the RBM and the hybrid (random per-request weights),
and a few batch calls of several users in one body.
"""

from __future__ import annotations

import random

import locust_common as common
from locust import FastHttpUser, task

JSON_HEADERS = {"Content-Type": "application/json"}
EXPECTED_KEY = b'"recommendations"'  # every single-user answer carries its list


class TorchServeHttpUser(FastHttpUser):
    wait_time = common.think_time

    def on_start(self) -> None:
        self.rng = random.Random()
        self.bodies = common.payloads(self.environment)

    def _predict(self, model: str, body: bytes, name: str, expected: bytes = EXPECTED_KEY) -> None:
        with self.client.post(
            f"/predictions/{model}", data=body, headers=JSON_HEADERS, name=name,
            catch_response=True,
        ) as response:  # fmt: skip
            if response.status_code != 200:
                response.failure(common.describe_failure(response))
            elif expected not in (response.content or b""):
                response.failure(f"answer without {expected.decode()}")

    @task(6)
    def sae(self) -> None:
        self._predict("sae", self.rng.choice(self.bodies.single), "sae")

    @task(2)
    def rbm(self) -> None:
        self._predict("rbm", self.rng.choice(self.bodies.single), "rbm")

    @task(2)
    def hybrid(self) -> None:
        self._predict("hybrid", self.rng.choice(self.bodies.hybrid), "hybrid")

    @task(1)
    def sae_batch(self) -> None:
        self._predict("sae", self.rng.choice(self.bodies.batch), "sae batch", b'"users"')
