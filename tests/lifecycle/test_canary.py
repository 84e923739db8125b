"""A canary on a real TorchServe, seen through the web app: its share of visitors gets the new
version (their stored arm), the others the old one, the experiment page compares the two, and
`promote` or `rollback` ends it for everyone."""

from __future__ import annotations

import re

import pytest

from tests.fixtures.release import NEW_VERSION
from tests.fixtures.web import TEST_API_KEY

pytestmark = pytest.mark.slow

OLD_VERSION = "1.0"
PERCENT = 30
VISITORS = 200
# The share of VISITORS hashed into the canary stays within 4 binomial standard deviations.
SIGMAS = 4
# Browsers on the pages (random ids): the chance that none lands in an arm is below 1e-6.
PAGE_VISITORS = 40
RATINGS = {"50": 5, "181": 5, "172": 4}
HTMX = {"HX-Request": "true"}


@pytest.fixture
def canary(release_torchserve, management, sae_new_archive, tmp_path):
    """A canary of version 2.0 for PERCENT % of visitors; yields (release, store, state dir)."""
    from training.serving.release import torchserve as ts_release

    store = ts_release.ModelStore(release_torchserve.model_store)
    state_dir = tmp_path / "release"
    release = ts_release.release(management, store, "sae", sae_new_archive, state_dir, PERCENT)
    assert sorted(v.version for v in management.versions("sae")) == [OLD_VERSION, NEW_VERSION]
    assert management.default_version("sae").version == OLD_VERSION
    return release, store, state_dir


@pytest.fixture
def app(web_app_factory, release_torchserve, canary):
    _, _, state_dir = canary
    return web_app_factory(
        model_backend="torchserve",
        torchserve_url=release_torchserve.inference_url,
        release_dir=state_dir,
        rate_limit="100000 per minute",
    )


def api_versions(client, users: range) -> dict[str, tuple[str, str]]:
    """user id -> (the version that answered, the user's canary arm as the app stored it)."""
    token = client.post("/api/v1/token", json={"api_key": TEST_API_KEY}).json["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    seen = {}
    for index in users:
        body = {"user_id": f"visitor-{index}", "ratings": RATINGS, "k": 5}
        response = client.post("/api/v1/recommend/sae", json=body, headers=headers)
        assert response.status_code == 200, response.json
        seen[f"visitor-{index}"] = response.json["version"]
    return seen


def stored_arms(app, experiment: str) -> dict[str, str]:
    from sqlalchemy import select

    from web.services import services
    from web.tables import Assignment, User

    with services(app).engine.connect() as connection:
        rows = connection.execute(
            select(User.external_id, Assignment.arm)
            .join(Assignment, Assignment.user_id == User.id)
            .where(Assignment.experiment == experiment)
        ).all()
    return {external.rsplit(":", 1)[1]: arm for external, arm in rows}


def test_canary_splits_visitors_and_rollback_ends_it(app, canary, management):
    from training.serving.release import torchserve as ts_release

    release, store, state_dir = canary
    client = app.test_client()
    answered = api_versions(client, range(VISITORS))
    arms = stored_arms(app, release.experiment)
    assert arms == answered  # every answer came from the visitor's own arm
    share = sum(version == NEW_VERSION for version in answered.values()) / VISITORS
    spread = SIGMAS * (PERCENT / 100 * (1 - PERCENT / 100) / VISITORS) ** 0.5
    assert abs(share - PERCENT / 100) <= spread, share
    assert api_versions(client, range(VISITORS)) == answered  # and stays there

    ts_release.rollback(management, store, release, state_dir)
    assert [v.version for v in management.versions("sae")] == [OLD_VERSION]
    assert set(api_versions(client, range(VISITORS)).values()) == {OLD_VERSION}


def test_experiment_page_compares_versions_and_promote_ends_the_canary(app, canary, management):
    from training.serving.release import torchserve as ts_release

    release, store, state_dir = canary
    visitors = [app.test_client() for _ in range(PAGE_VISITORS)]
    served = {}
    for index, visitor in enumerate(visitors):
        page = visitor.get("/recommendations?model=sae")
        assert page.status_code == 200
        served[index] = re.search(r"version ([\w.]+)", page.text).group(1)
    assert set(served.values()) == {OLD_VERSION, NEW_VERSION}  # both arms got visitors
    clicker = next(i for i, version in served.items() if version == NEW_VERSION)
    page = visitors[clicker].get("/recommendations?model=sae").text
    movie = re.search(r'name="movie_id" value="(\d+)"', page).group(1)
    feedback = {"movie_id": movie, "model": "sae", "kind": "up"}
    assert visitors[clicker].post("/feedback", data=feedback, headers=HTMX).status_code == 200

    table = visitors[0].get("/experiment", headers=HTMX).text
    canary_rows = table.split('id="canary"')[1]
    for version in (OLD_VERSION, NEW_VERSION):
        row = canary_rows.split(f'data-version="{version}"')[1].split("</tr>")[0]
        shown = int(re.search(r'<td class="impressions">(\d+)</td>', row).group(1))
        clicks = int(re.search(r'<td class="clicks">(\d+)</td>', row).group(1))
        assert shown > 0
        assert clicks == (1 if version == NEW_VERSION else 0)

    ts_release.promote(management, store, release, state_dir)
    assert [v.version for v in management.versions("sae")] == [NEW_VERSION]
    for visitor in visitors:
        page = visitor.get("/recommendations?model=sae&k=11")  # k=11: not a cached answer
        assert re.search(r"version ([\w.]+)", page.text).group(1) == NEW_VERSION
    assert 'data-phase="released"' in visitors[0].get("/experiment", headers=HTMX).text


def test_a_request_for_a_version_that_went_gets_the_default(release_torchserve, management):
    """A page pinned to a canary's version just unregistered is answered, by the default."""
    from web.backends.base import RecommendRequest
    from web.backends.torchserve import TorchServeBackend

    backend = TorchServeBackend(release_torchserve.inference_url, timeout_s=10)
    query = RecommendRequest(ratings={50: 5, 181: 5}, k=3)
    default = management.default_version("sae").version
    assert backend.recommend("sae", query, "gone", version="9.9").version == default
    backend.close()
