"""TorchServe inference over HTTP: users sampled from the test split, mixed k, some hybrid calls.

    locust -f benchmarks/locust_torchserve_http.py --host http://127.0.0.1:8080 \\
        --profiles /tmp/profiles.json --headless -u 8 -r 8 -t 20s

Each simulated client posts back to back (``--think-ms`` adds a pause): the figure is what the
server sustains. The mix: SAE most, then the RBM and the hybrid (random per-request weights),
and a few batch calls of several users in one body.
"""

from __future__ import annotations

import random

from locust import FastHttpUser

from benchmarks import locust_common as common

JSON_HEADERS = {"Content-Type": "application/json"}
EXPECTED_KEY = b'"recommendations"'  # every single-user answer carries its list
BATCH_KEY = b'"users"'  # a batch answer lists one answer per user


class TorchServeHttpUser(FastHttpUser):
    wait_time = common.think_time
    tasks = common.TORCHSERVE_MIX

    def on_start(self) -> None:
        self.rng = random.Random()
        self.bodies = common.payloads(self.environment)

    def predict(self, model: str, body: bytes, name: str, batch: bool = False) -> None:
        expected = BATCH_KEY if batch else EXPECTED_KEY
        with self.client.post(
            f"/predictions/{model}", data=body, headers=JSON_HEADERS, name=name,
            catch_response=True,
        ) as response:  # fmt: skip
            if response.status_code != 200:
                response.failure(common.describe_failure(response))
            elif expected not in (response.content or b""):
                response.failure(f"answer without {expected.decode()}")
