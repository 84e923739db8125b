"""A visitor's identity, ratings, A/B arm and API tokens survive a restart of `movierec serve web`
on its default configuration (no SECRET_KEY, no JWT_SECRET): the generated secrets are kept."""

from __future__ import annotations

import re

import pytest
import requests
from sqlalchemy import create_engine, func, select

from tests.fixtures.web import TEST_API_KEY
from training.config import Paths
from training.serving import processes
from web import secret_store
from web.config import STORED_SECRETS
from web.server import SERVICE, serve_web_command
from web.tables import User

pytestmark = pytest.mark.slow

HTMX = {"HX-Request": "true"}
# Star Wars, Return of the Jedi, Empire Strikes Back, Toy Story, Twister (ML-100K ids).
PROFILE = {50: 5, 181: 5, 172: 4, 1: 4, 118: 2}
TITLES = ("Star Wars", "Return of the Jedi", "Empire Strikes Back", "Toy Story", "Twister")
ARM = re.compile(r"You are in the <strong>(\w+)</strong> arm")
RECOMMENDED = re.compile(r'<li class="rec" data-movie-id="(\d+)"')
TIMEOUT_S = 10


@pytest.fixture
def home(tmp_path, project_home, checkpoints, torchserve_model_store, monkeypatch):
    """`movierec serve web`'s defaults, but a fresh MOVIEREC_HOME (its .run/ holds no secret)
    and the session's catalogue and in-process models."""
    paths = Paths(project_home)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("MOVIEREC_HOME", str(home))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'web.sqlite3'}")
    monkeypatch.setenv("MODEL_BACKEND", "inprocess")
    monkeypatch.setenv("MODEL_CHECKPOINTS", str(checkpoints["sae"].parent))
    monkeypatch.setenv("MODEL_STORE", str(torchserve_model_store))
    monkeypatch.setenv("MOVIES_PATH", str(paths.prepared("ml-100k") / "movies.json"))
    monkeypatch.setenv("API_KEYS", TEST_API_KEY)
    for var in (*STORED_SECRETS, "SECRET_KEY_FALLBACKS", "JWT_SECRET_FALLBACKS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    return home


def visit(browser: requests.Session, base: str) -> dict:
    """What the visitor sees: their profile, their arm, their recommendations."""
    profile = browser.get(f"{base}/profile", timeout=TIMEOUT_S)
    recommendations = browser.get(f"{base}/recommendations", timeout=TIMEOUT_S)
    assert profile.ok and recommendations.ok
    return {
        "profile": profile.text,
        "arm": ARM.search(recommendations.text).group(1),
        "recommended": RECOMMENDED.findall(recommendations.text),
        "recommendations": recommendations.text,
    }


def browser_users(tmp_path) -> int:
    engine = create_engine(f"sqlite:///{tmp_path / 'web.sqlite3'}")
    try:
        with engine.connect() as connection:
            query = select(func.count()).select_from(User).where(User.external_id.like("web:%"))
            return connection.scalar(query)
    finally:
        engine.dispose()


def test_visitor_and_token_survive_a_restart(home, tmp_path):
    port = processes.free_port()
    base = f"http://{processes.LOOPBACK}:{port}"

    def start() -> None:  # two workers (the default): either may answer any request
        serve_web_command(host=processes.LOOPBACK, port=port, workers=2, dev=False, timeout=60)

    browser = requests.Session()  # the visitor's cookie jar
    start()
    try:
        for movie, stars in PROFILE.items():
            rated = browser.post(
                f"{base}/ratings", data={"movie_id": movie, "rating": stars}, headers=HTMX
            )
            assert rated.status_code == 200, rated.text
        before = visit(browser, base)
        issued = requests.post(
            f"{base}/api/v1/token", json={"api_key": TEST_API_KEY}, timeout=TIMEOUT_S
        )
        token = issued.json()["access_token"]
    finally:
        assert processes.stop_service(SERVICE, home) is True

    start()
    try:
        after = visit(browser, base)
        answer = requests.post(
            f"{base}/api/v1/recommend/sae",
            json={"ratings": {"50": 5}, "k": 3},
            headers={"Authorization": f"Bearer {token}"},
            timeout=TIMEOUT_S,
        )
    finally:
        assert processes.stop_service(SERVICE, home) is True

    assert all(title in after["profile"] for title in TITLES)
    assert "No ratings yet" not in after["profile"]
    assert browser_users(tmp_path) == 1  # the same visitor, not a new anonymous one
    assert after["arm"] == before["arm"]
    # Recommendations from the kept ratings: personalised, explained by them, the same list.
    assert "Not personalised yet" not in after["recommendations"]
    assert "because you rated" in after["recommendations"]
    assert after["recommended"] == before["recommended"] and len(after["recommended"]) > 0
    assert not set(after["recommended"]) & {str(movie) for movie in PROFILE}
    assert answer.status_code == 200, answer.text

    folder = secret_store.secrets_dir(home)
    for var in STORED_SECRETS:
        assert oct((folder / var).stat().st_mode & 0o777) == oct(0o600)
    log = (Paths(home).logs / "web.log").read_text()
    assert f"SECRET_KEY is not set: using the secret in {folder / 'SECRET_KEY'}" in log
    assert "kept from an earlier start" in log
