"""Generated secrets are kept (mode 0600) and shared; rotation keeps old cookies and tokens."""

from __future__ import annotations

import multiprocessing
import stat

import pytest

from training.config import ConfigError
from web import secret_store
from web.auth import AuthError, issue_token, verify_token
from web.config import MIN_SECRET_LENGTH, WebSettings

OLD_KEY = "old-secret-key-0123456789-0123456789"
NEW_KEY = "new-secret-key-0123456789-0123456789"
OLD_JWT = "old-jwt-secret-0123456789-0123456789"
NEW_JWT = "new-jwt-secret-0123456789-0123456789"
HTMX = {"HX-Request": "true"}
STAR_WARS = 50
RACERS = 8


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A MOVIEREC_HOME of its own, so generated secrets land under this test's .run/."""
    monkeypatch.setenv("MOVIEREC_HOME", str(tmp_path))
    return tmp_path


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_unset_secrets_are_generated_once_and_kept_owner_only(home):
    first = WebSettings.from_env({})
    folder = secret_store.secrets_dir(home)
    assert sorted(path.name for path in folder.iterdir()) == ["JWT_SECRET", "SECRET_KEY"]
    assert mode(folder) == 0o700
    assert all(mode(path) == 0o600 for path in folder.iterdir())
    again = WebSettings.from_env({})
    assert (again.secret_key, again.jwt_secret) == (first.secret_key, first.jwt_secret)
    assert first.secret_key != first.jwt_secret
    assert len(first.secret_key) >= MIN_SECRET_LENGTH


def test_secrets_from_the_environment_write_nothing(home):
    settings = WebSettings.from_env({"SECRET_KEY": NEW_KEY, "JWT_SECRET": NEW_JWT})
    assert (settings.secret_key, settings.jwt_secret) == (NEW_KEY, NEW_JWT)
    assert not secret_store.secrets_dir(home).exists()


def _race(path, barrier, results) -> None:
    barrier.wait()  # every process tries to create the file at the same moment
    results.put(secret_store.load_or_create(path, 32, MIN_SECRET_LENGTH))


def test_processes_starting_together_share_one_secret(tmp_path):
    context = multiprocessing.get_context("fork")
    path = tmp_path / "secrets" / "SECRET_KEY"
    barrier, results = context.Barrier(RACERS), context.Queue()
    racers = [context.Process(target=_race, args=(path, barrier, results)) for _ in range(RACERS)]
    for racer in racers:
        racer.start()
    answers = [results.get(timeout=60) for _ in racers]
    for racer in racers:
        racer.join(timeout=60)
    assert len({secret for secret, _ in answers}) == 1
    assert sum(created for _, created in answers) == 1
    assert [child.name for child in path.parent.iterdir()] == ["SECRET_KEY"]  # no temp files left


def test_a_secret_file_others_can_read_is_refused(tmp_path):
    path = tmp_path / "SECRET_KEY"
    secret_store.load_or_create(path, 32, MIN_SECRET_LENGTH)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        secret_store.load_or_create(path, 32, MIN_SECRET_LENGTH)


def test_a_truncated_secret_file_is_refused(tmp_path):
    path = tmp_path / "SECRET_KEY"
    path.write_text("short\n")
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="shorter than"):
        secret_store.load_or_create(path, 32, MIN_SECRET_LENGTH)


def test_fallbacks_are_read_as_lists_and_checked(home):
    settings = WebSettings.from_env({
        "SECRET_KEY": NEW_KEY, "SECRET_KEY_FALLBACKS": f"{OLD_KEY}, {NEW_JWT}",
        "JWT_SECRET": NEW_JWT, "JWT_SECRET_FALLBACKS": OLD_JWT,
    })  # fmt: skip
    assert settings.secret_key_fallbacks == (OLD_KEY, NEW_JWT)
    assert settings.jwt_secret_fallbacks == (OLD_JWT,)
    for var in ("SECRET_KEY_FALLBACKS", "JWT_SECRET_FALLBACKS"):
        with pytest.raises(ConfigError, match=var):
            WebSettings.from_env({"SECRET_KEY": NEW_KEY, "JWT_SECRET": NEW_JWT, var: "short"})


def test_jwt_fallbacks_verify_old_tokens_only_while_listed():
    old = issue_token(OLD_JWT, "svc", 600)
    assert verify_token(NEW_JWT, old, fallbacks=(OLD_JWT,))["sub"] == "svc"
    assert verify_token(NEW_JWT, issue_token(NEW_JWT, "svc", 600), (OLD_JWT,))["sub"] == "svc"
    with pytest.raises(AuthError, match="signature"):
        verify_token(NEW_JWT, old)
    expired = issue_token(OLD_JWT, "svc", 60, now=0)
    with pytest.raises(AuthError, match="expired"):
        verify_token(NEW_JWT, expired, fallbacks=(OLD_JWT,))


def test_rotated_secret_key_keeps_old_cookies_through_its_fallback(web_app_factory):
    old_app = web_app_factory(secret_key=OLD_KEY, jwt_secret=OLD_JWT)
    browser = old_app.test_client()
    rated = browser.post("/ratings", data={"movie_id": STAR_WARS, "rating": 5}, headers=HTMX)
    assert rated.status_code == 200
    old_cookie = browser.get_cookie("session").value
    old_token = issue_token(OLD_JWT, "svc", 600)
    body = {"ratings": {str(STAR_WARS): 5}, "k": 3}

    rotated = web_app_factory(
        secret_key=NEW_KEY,
        secret_key_fallbacks=(OLD_KEY,),
        jwt_secret=NEW_JWT,
        jwt_secret_fallbacks=(OLD_JWT,),
    ).test_client()
    rotated.set_cookie("session", old_cookie)
    assert "Star Wars" in rotated.get("/profile").text
    auth = {"Authorization": f"Bearer {old_token}"}
    assert rotated.post("/api/v1/recommend/sae", json=body, headers=auth).status_code == 200
    # The answer re-signed the cookie with the new key: once visitors are back, the fallback
    # can go.
    resigned = rotated.get_cookie("session").value
    assert resigned != old_cookie

    without_fallback = web_app_factory(secret_key=NEW_KEY, jwt_secret=NEW_JWT)
    fresh = without_fallback.test_client()
    fresh.set_cookie("session", resigned)
    assert "Star Wars" in fresh.get("/profile").text
    stale = without_fallback.test_client()
    stale.set_cookie("session", old_cookie)
    assert "No ratings yet" in stale.get("/profile").text
    assert stale.post("/api/v1/recommend/sae", json=body, headers=auth).status_code == 401
