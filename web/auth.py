"""JWT bearer tokens for the JSON API.

Get one with ``flask --app web token create --subject NAME`` (signs with JWT_SECRET) or
``POST /api/v1/token {"api_key": "..."}`` with a key listed in API_KEYS.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Sequence
from functools import wraps
from typing import ParamSpec, TypeVar

import jwt
from flask import current_app, g, request

P = ParamSpec("P")
R = TypeVar("R")
ALGORITHM = "HS256"
ISSUER = "movierec-web"
AUDIENCE = "movierec-api"


class AuthError(Exception):
    """Missing, malformed, expired or forged credentials (HTTP 401)."""


def issue_token(secret: str, subject: str, ttl_s: int, now: float | None = None) -> str:
    issued = int(now if now is not None else time.time())
    claims = {"sub": subject, "iat": issued, "exp": issued + ttl_s, "iss": ISSUER, "aud": AUDIENCE}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: str, fallbacks: Sequence[str] = ()) -> dict:
    """The token's claims if ``secret`` or one of the ``fallbacks`` (old secrets, kept for one
    TTL after a rotation) signed it."""
    *others, last = (secret, *fallbacks)
    try:
        for candidate in others:
            try:
                return _decode(candidate, token)
            except jwt.InvalidSignatureError:
                continue  # signed with another secret; try the next
        return _decode(last, token)
    except jwt.ExpiredSignatureError as exc:
        raise AuthError("token expired; get a new one") from exc
    except jwt.InvalidSignatureError as exc:
        raise AuthError("token signature is invalid") from exc
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"invalid token: {exc}") from exc


def _decode(secret: str, token: str) -> dict:
    return jwt.decode(
        token,
        secret,
        algorithms=[ALGORITHM],
        audience=AUDIENCE,
        issuer=ISSUER,
        options={"require": ["sub", "exp", "iat"]},
    )


def api_key_is_valid(candidate: str, keys: tuple[str, ...]) -> bool:
    # Constant-time comparison, so response timing does not leak a key's prefix.
    return any(hmac.compare_digest(candidate.encode(), key.encode()) for key in keys)


def bearer_token() -> str:
    header = request.headers.get("Authorization", "")
    if not header:
        raise AuthError("missing Authorization header; send 'Authorization: Bearer <token>'")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("Authorization header must be 'Bearer <token>'")
    return token.strip()


def require_token(view: Callable[P, R]) -> Callable[P, R]:
    """Reject the request with 401 unless it carries a valid token; ``g.api_subject`` is set."""

    @wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        settings = current_app.config["SETTINGS"]
        claims = verify_token(settings.jwt_secret, bearer_token(), settings.jwt_secret_fallbacks)
        g.api_subject = claims["sub"]
        return view(*args, **kwargs)

    return wrapper
