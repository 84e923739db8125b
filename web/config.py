"""The web app's settings: read from the environment once, validated in one place.

``WebSettings.from_env()`` is the only code that looks at environment variables; everything else
receives a settings object (tests build one directly). SECRET_KEY and JWT_SECRET left unset are
generated once and kept under .run/web-secrets/ (``web/secret_store.py``).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from handlers import contract
from training.config import ConfigError, Paths, get_logger
from training.serving.release.state import state_dir as release_state_dir
from web import secret_store

log = get_logger("web")

MODEL_NAMES = contract.SERVED_MODELS
# SQLite's PRAGMA synchronous levels (web/db.py says why NORMAL is the default).
SqliteSynchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]
DEFAULT_SQLITE_SYNCHRONOUS: SqliteSynchronous = "NORMAL"
DEFAULT_DATASET = "ml-100k"
# Generated secrets are fine for a dev server; production sets SECRET_KEY and JWT_SECRET.
# from_env keeps generated ones in .run/web-secrets/ (web/secret_store.py says why).
GENERATED_SECRET_BYTES = 32
# PyJWT warns below 32 bytes for HS256 (RFC 7518 section 3.2).
MIN_SECRET_LENGTH = 32

# Environment variable -> settings field. One table, so docs/configuration.md (generated from it)
# and the code agree.
ENV_VARS = {
    "DATABASE_URL": "database_url",
    "REDIS_URL": "redis_url",
    "MODEL_BACKEND": "model_backend",
    "TORCHSERVE_URL": "torchserve_url",
    "TORCHSERVE_TOKEN": "torchserve_token",
    "TORCHSERVE_KEY_FILE": "torchserve_key_file",
    "TORCHSERVE_MANAGEMENT_URL": "torchserve_management_url",
    "TRITON_GRPC_URL": "triton_grpc_url",
    "MODEL_TIMEOUT_S": "model_timeout_s",
    "MODEL_CHECKPOINTS": "checkpoints_dir",
    "MODEL_STORE": "model_store",
    "TRITON_REPO": "triton_repo",
    "SECRET_KEY": "secret_key",
    "SECRET_KEY_FALLBACKS": "secret_key_fallbacks",
    "JWT_SECRET": "jwt_secret",
    "JWT_SECRET_FALLBACKS": "jwt_secret_fallbacks",
    "JWT_TTL_S": "jwt_ttl_s",
    "API_KEYS": "api_keys",
    "MOVIES_PATH": "movies_path",
    "EVALUATION_REPORT": "evaluation_report",
    "RATE_LIMIT": "rate_limit",
    "MAX_BODY_BYTES": "max_body_bytes",
    "CACHE_SIZE": "cache_size",
    "CACHE_TTL_S": "cache_ttl_s",
    "CACHE_PREFIX": "cache_prefix",
    "AB_EXPERIMENT": "ab_experiment",
    "AB_ARMS": "ab_arms",
    "DB_POOL_SIZE": "db_pool_size",
    "DB_AUTO_MIGRATE": "auto_migrate",
    "SQLITE_SYNCHRONOUS": "sqlite_synchronous",
    "HYBRID_WEIGHT_SAE": "hybrid_weight_sae",
    "RELEASE_DIR": "release_dir",
}
# The secrets from_env generates and keeps when the environment leaves them unset.
STORED_SECRETS = ("SECRET_KEY", "JWT_SECRET")


class WebSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    database_url: str = Field(
        default_factory=lambda: f"sqlite:///{Paths().app_database}",
        description="SQLAlchemy URL; PostgreSQL as postgresql+psycopg://user@host/db",
    )
    redis_url: str | None = None
    model_backend: Literal["torchserve", "triton", "inprocess"] = "torchserve"
    torchserve_url: str = "http://127.0.0.1:8080"
    torchserve_token: str | None = None
    # TorchServe's key_file.json: keys expire, so the app reads the current inference key from it
    # (and, given the management URL, renews an expired one with the file's API key).
    torchserve_key_file: Path | None = None
    torchserve_management_url: str | None = None
    triton_grpc_url: str = "127.0.0.1:8001"
    model_timeout_s: float = Field(2.0, gt=0, le=60)
    # Where the drift reference lives (data/checkpoints/drift_reference.json).
    checkpoints_dir: Path = Field(default_factory=lambda: Paths().checkpoints)
    # The TorchServe archives the in-process backend serves, and the Triton repository whose
    # serving artifacts (catalogue, item vectors) the Triton backend reads.
    model_store: Path = Field(default_factory=lambda: Paths().model_store)
    triton_repo: Path = Field(default_factory=lambda: Paths().triton_repo)
    # Random per object for settings built directly (tests); from_env reads the stored ones.
    secret_key: str = Field(default_factory=lambda: secrets.token_hex(GENERATED_SECRET_BYTES))
    # Old keys that still verify cookies (Flask 3.1's SECRET_KEY_FALLBACKS), for rotation.
    secret_key_fallbacks: tuple[str, ...] = ()
    jwt_secret: str = Field(default_factory=lambda: secrets.token_hex(GENERATED_SECRET_BYTES))
    # Old secrets that still verify API tokens, kept for one JWT_TTL_S after a rotation.
    jwt_secret_fallbacks: tuple[str, ...] = ()
    jwt_ttl_s: int = Field(3600, ge=60, le=30 * 24 * 3600)
    api_keys: tuple[str, ...] = ()
    movies_path: Path = Field(
        default_factory=lambda: Paths().prepared(DEFAULT_DATASET) / "movies.json"
    )
    evaluation_report: Path = Field(default_factory=lambda: Paths().reports / "evaluation.json")
    rate_limit: str = "120 per minute"
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    cache_size: int = Field(4096, ge=0)
    cache_ttl_s: int = Field(600, ge=1)
    cache_prefix: str = "movierec:"
    ab_experiment: str = "model-arm-v1"
    ab_arms: tuple[str, ...] = ("sae", "rbm")
    db_pool_size: int = Field(5, ge=1, le=100)
    auto_migrate: bool = True
    # SQLite only; FULL for commits that must survive a power cut, not just an app crash.
    sqlite_synchronous: SqliteSynchronous = DEFAULT_SQLITE_SYNCHRONOUS
    hybrid_weight_sae: float = Field(0.5, ge=0.0, le=1.0)
    # Where `movierec release` keeps its file per model server: a canary's share and versions.
    release_dir: Path = Field(default_factory=release_state_dir)
    testing: bool = False

    @field_validator(
        "api_keys", "ab_arms", "secret_key_fallbacks", "jwt_secret_fallbacks", mode="before"
    )
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("ab_arms")
    @classmethod
    def _known_arms(cls, arms: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [arm for arm in arms if arm not in MODEL_NAMES]
        if unknown or len(arms) < 2 or len(set(arms)) != len(arms):
            raise ValueError(f"AB_ARMS must name two or more distinct models of {MODEL_NAMES}")
        return arms

    @field_validator("secret_key", "jwt_secret", "secret_key_fallbacks", "jwt_secret_fallbacks")
    @classmethod
    def _long_enough(cls, value: str | tuple[str, ...]) -> str | tuple[str, ...]:
        for secret in (value,) if isinstance(value, str) else value:
            if len(secret) < MIN_SECRET_LENGTH:
                raise ValueError(f"must be at least {MIN_SECRET_LENGTH} characters")
        return value

    @field_validator("database_url")
    @classmethod
    def _psycopg3_driver(cls, url: str) -> str:
        # psycopg 3 is the installed driver; plain postgresql:// would ask for psycopg2.
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix) :]
        return url

    @field_validator("torchserve_url")
    @classmethod
    def _no_trailing_slash(cls, url: str) -> str:
        return url.rstrip("/")

    @property
    def hybrid_weights(self) -> dict[str, float]:
        return {"sae": self.hybrid_weight_sae, "rbm": 1.0 - self.hybrid_weight_sae}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> WebSettings:
        """Settings from environment variables (``ENV_VARS``), then ``overrides``."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {
            field: environ[var] for var, field in ENV_VARS.items() if environ.get(var)
        }
        values.update(overrides)
        for var in STORED_SECRETS:
            if ENV_VARS[var] not in values:
                values[ENV_VARS[var]] = _stored_secret(var)
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            fields_to_vars = {field: var for var, field in ENV_VARS.items()}
            lines = []
            for error in exc.errors():
                field = str(error["loc"][0]) if error["loc"] else "?"
                lines.append(f"{fields_to_vars.get(field, field)}: {error['msg']}")
            raise ConfigError("invalid web settings:\n  " + "\n  ".join(lines)) from exc


def _stored_secret(var: str) -> str:
    """The generated secret every worker and every later start shares (web/secret_store.py)."""
    path = secret_store.secrets_dir() / var
    value, created = secret_store.load_or_create(path, GENERATED_SECRET_BYTES, MIN_SECRET_LENGTH)
    kept = "generated it now" if created else "kept from an earlier start"
    log.info("%s is not set: using the secret in %s (%s; set it in production)", var, path, kept)
    return value
