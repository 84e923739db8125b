"""What every model-server fault row checks (TorchServe's and Triton's): pages degrade to the
"recommendations unavailable" panel, the API answers 503 JSON, writes are stored, and answers
come back on their own."""

from __future__ import annotations

import requests

from benchmarks.fault_traffic import UNAVAILABLE_PANEL
from tests.fixtures.polling import poll

PROFILE = {50: 5, 181: 5, 172: 4, 1: 4}
# Issue 19: recommendations answer again within 10 s of the model server being back.
RECOVERY_S = 10.0
POLL_S = 0.2


def recovered(visitor, model: str = "sae") -> requests.Response:
    """The first successful API answer after a repair, or the last failure after RECOVERY_S."""
    return poll(
        lambda: visitor.recommend(model, {50: 5, 98: 4}),
        lambda answer: answer.status_code == 200,
        RECOVERY_S,
        POLL_S,
    )


def assert_degraded(visitor, fault_stack, expected_error: str) -> None:
    """Pages show the panel, the API answers 503 JSON, ratings and feedback are stored."""
    page = visitor.page("/recommendations?k=7")  # a k never asked: no cached answer
    assert page.status_code == 200
    assert UNAVAILABLE_PANEL in page.text and expected_error in page.text
    compare = visitor.page("/compare?k=7")
    assert compare.status_code == 200 and compare.text.count(UNAVAILABLE_PANEL) == 3
    api = visitor.recommend("sae", {50: 5, 172: 3})
    assert api.status_code == 503
    assert api.headers["Content-Type"] == "application/json"
    assert api.json()["error"].startswith("model server unavailable") and expected_error in api.text
    assert visitor.rate(98, 4).status_code == 200
    assert visitor.feedback(98, "up").status_code == 201
    health = requests.get(f"{visitor.base_url}/api/v1/health", timeout=10)
    assert health.status_code == 200  # the app itself is healthy; its models are not
