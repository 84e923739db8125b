"""Forged and broken API tokens: every one is a 401 with a JSON message, never a 500 or a pass.

Pins what ``web/auth.py`` decodes with: HS256 only (no ``none``, no other HMAC), our audience
and issuer, and ``sub``, ``exp`` and ``iat`` required, no leeway. The rows test_api.py already
has (no header, not Bearer, garbage, another secret, expired) are not repeated here.
"""

from __future__ import annotations

import time

import jwt
import pytest

from tests.fixtures.web import TEST_SECRET
from web import auth

RATINGS = {"1": 5, "50": 4}
PATH = "/api/v1/recommend/sae"


def claims(**changes: object) -> dict:
    """Valid claims, changed (a value of None drops the claim)."""
    now = int(time.time())
    valid = {"sub": "tests", "iat": now, "exp": now + 600, "iss": auth.ISSUER,
             "aud": auth.AUDIENCE}  # fmt: skip
    valid.update(changes)
    return {name: value for name, value in valid.items() if value is not None}


def signed(algorithm: str = auth.ALGORITHM, key: str | None = TEST_SECRET, **changes) -> str:
    return jwt.encode(claims(**changes), key, algorithm=algorithm)


def unsigned(**changes: object) -> str:
    """``alg: none``: a header and claims, no signature (what a forger without the key sends)."""
    return jwt.encode(claims(**changes), None, algorithm="none")


@pytest.mark.parametrize(
    ("case", "token", "message"),
    [
        ("alg none", unsigned(), "alg"),
        ("alg none, sub of another client", unsigned(sub="key:admin"), "alg"),
        ("another HMAC (HS512) with the right secret", signed("HS512"), "alg"),
        ("wrong audience", signed(aud="another-api"), "audience"),
        ("no audience", signed(aud=None), "aud"),
        ("wrong issuer", signed(iss="someone-else"), "issuer"),
        ("no issuer", signed(iss=None), "iss"),
        ("missing exp", signed(exp=None), "exp"),
        ("missing sub", signed(sub=None), "sub"),
        ("missing iat", signed(iat=None), "iat"),
        ("expired a second ago (no leeway)", signed(exp=int(time.time()) - 1), "expired"),
        ("exp not a number", signed(exp="tomorrow"), "exp"),
    ],
)  # fmt: skip
def test_broken_tokens_are_401_with_a_message(web_client, case, token, message):
    response = web_client.post(PATH, json={"ratings": RATINGS},
                               headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert response.status_code == 401, (case, response.text)
    assert response.is_json, case
    assert message in response.json["error"].lower(), (case, response.json)


def test_the_same_claims_signed_properly_pass(web_client):
    """The control: the helpers above make tokens the app accepts when nothing is broken."""
    response = web_client.post(PATH, json={"ratings": RATINGS},
                               headers={"Authorization": f"Bearer {signed()}"})  # fmt: skip
    assert response.status_code == 200, response.text


def test_the_decode_options_are_pinned():
    assert auth.ALGORITHM == "HS256"
    assert (auth.ISSUER, auth.AUDIENCE) == ("movierec-web", "movierec-api")
    token = auth.issue_token(TEST_SECRET, "tests", 60)
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert set(auth.verify_token(TEST_SECRET, token)) == {"sub", "iat", "exp", "iss", "aud"}
