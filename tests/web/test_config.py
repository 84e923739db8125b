"""Settings come from the environment, validated in one place, errors naming the variable."""

from __future__ import annotations

import pytest

from training.config import ConfigError
from web.config import WebSettings

SECRET = "x" * 40


def test_environment_is_read_and_converted():
    settings = WebSettings.from_env({
        "DATABASE_URL": "postgresql://u@db:5432/movierec",
        "MODEL_BACKEND": "triton",
        "TORCHSERVE_URL": "http://ts:8080/",
        "API_KEYS": "k1, k2",
        "AB_ARMS": "sae,hybrid",
        "MODEL_TIMEOUT_S": "0.5",
        "SECRET_KEY": SECRET,
    })  # fmt: skip
    assert settings.database_url == "postgresql+psycopg://u@db:5432/movierec"
    assert settings.model_backend == "triton" and settings.torchserve_url == "http://ts:8080"
    assert settings.api_keys == ("k1", "k2") and settings.ab_arms == ("sae", "hybrid")
    assert settings.model_timeout_s == 0.5


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MODEL_BACKEND": "tfserving"}, "MODEL_BACKEND"),
        ({"MODEL_TIMEOUT_S": "-1"}, "MODEL_TIMEOUT_S"),
        ({"AB_ARMS": "sae"}, "AB_ARMS"),
        ({"AB_ARMS": "sae,knn"}, "AB_ARMS"),
        ({"SECRET_KEY": "short"}, "SECRET_KEY"),
        ({"JWT_TTL_S": "abc"}, "JWT_TTL_S"),
        ({"MAX_BODY_BYTES": "10"}, "MAX_BODY_BYTES"),
        ({"SQLITE_SYNCHRONOUS": "sometimes"}, "SQLITE_SYNCHRONOUS"),
    ],
)
def test_bad_environment_names_the_variable(env, message):
    with pytest.raises(ConfigError, match=message):
        WebSettings.from_env(env)


def test_missing_catalogue_is_a_clear_error(web_settings_factory, tmp_path):
    from web import create_app

    with pytest.raises(ConfigError, match="movie catalogue not found"):
        create_app(web_settings_factory(movies_path=tmp_path / "nope.json"))


# PRAGMA synchronous answers with a number: OFF 0, NORMAL 1, FULL 2, EXTRA 3.
SYNCHRONOUS_CODES = {"NORMAL": 1, "FULL": 2}


@pytest.mark.parametrize("level", ["NORMAL", "FULL"])
def test_sqlite_synchronous_reaches_every_connection(tmp_path, level):
    from sqlalchemy import text

    from web import db

    settings = WebSettings.from_env({"SQLITE_SYNCHRONOUS": level, "SECRET_KEY": SECRET})
    engine = db.make_engine(
        f"sqlite:///{tmp_path / 'sync.sqlite3'}", 2, settings.sqlite_synchronous
    )
    try:
        with engine.connect() as connection:
            assert (
                connection.execute(text("PRAGMA synchronous")).scalar()
                == (SYNCHRONOUS_CODES[level])
            )
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    finally:
        engine.dispose()


def test_sqlite_synchronous_defaults_to_normal():
    assert WebSettings.from_env({}).sqlite_synchronous == "NORMAL"
