"""The real web app prepared for monitoring tests: a drift reference beside its checkpoints and
a training textfile under its MOVIEREC_HOME, plus one real recommendation through the API."""

from __future__ import annotations

from pathlib import Path

from tests.fixtures.web import TEST_API_KEY

RATINGS = {"1": 5, "50": 4, "181": 5, "100": 3, "258": 4}
# Long enough for any secret-length rule the web settings apply; tests need no real secret.
TEST_SECRET = "monitoring-test-secret-0123456789abcdef"


def monitored_web_app(web_app_factory, checkpoints, prepared, home: Path, monkeypatch):
    """``create_app`` with what monitoring reads in place; returns the app."""
    from training.models import load_checkpoint
    from training.monitoring import drift
    from training.monitoring.training_metrics import TEXTFILE_NAME, write_training_textfile

    folder = home / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    scores = {}
    for name, path in checkpoints.items():
        (folder / Path(path).name).symlink_to(path)
        recommender = load_checkpoint(path)
        write_training_textfile(
            home / "data" / "metrics" / TEXTFILE_NAME,
            name,
            recommender.history,
            monitor=recommender.monitor,
        )
        scores[name] = drift.served_scores(recommender, prepared.train)
    drift.save_reference(drift.build_reference(prepared, scores), folder / drift.REFERENCE_FILE)
    monkeypatch.setenv("MOVIEREC_HOME", str(home))
    return web_app_factory(checkpoints_dir=folder, secret_key=TEST_SECRET, jwt_secret=TEST_SECRET)


def recommend_once(client, model: str = "sae") -> dict:
    token = client.post("/api/v1/token", json={"api_key": TEST_API_KEY})
    assert token.status_code == 200, token.get_data(as_text=True)
    headers = {"Authorization": f"Bearer {token.json['access_token']}"}
    answer = client.post(
        f"/api/v1/recommend/{model}", json={"ratings": RATINGS, "k": 5}, headers=headers
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.json
