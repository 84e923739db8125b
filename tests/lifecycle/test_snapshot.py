"""``movierec data snapshot-app``: ratings entered through the web app's own routes become new
users of a new dataset version, once, on SQLite and PostgreSQL; bad rows are named."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from training.cli import app as movierec_app
from training.config import REPO_ROOT, Paths
from training.data.app_snapshot import SNAPSHOT_KEY, snapshot_app
from training.data.preprocess import METADATA_FILE, load_prepared

POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PARAMS = REPO_ROOT / "params.yaml"
HTMX = {"HX-Request": "true"}
EXIT_INVALID, EXIT_UNAVAILABLE = 3, 4  # training/cli.py's documented exit codes
SECRET = "lifecycle-test-secret-0123456789abcdef"
DVC_TIMEOUT_S = 120


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A uniquely named database on the local server for one test, dropped afterwards."""
    name = f"movierec_snapshot_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"  # as DATABASE_URL is written
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path / 'web.sqlite3'}"


@pytest.fixture
def web_app(project_home, tmp_path, database_url):
    """The web app over ``database_url``; rating routes need no model server."""
    from web import create_app
    from web.config import WebSettings
    from web.services import services

    settings = WebSettings.from_env(
        environ={},
        database_url=database_url,
        model_backend="torchserve",
        movies_path=Paths(project_home).prepared("ml-100k") / "movies.json",
        model_store=tmp_path / "no-store",
        triton_repo=tmp_path / "no-repo",
        checkpoints_dir=tmp_path / "no-checkpoints",
        evaluation_report=tmp_path / "no-report.json",
        secret_key=SECRET,
        jwt_secret=SECRET,
        testing=True,
    )
    flask_app = create_app(settings)
    yield flask_app
    services(flask_app).engine.dispose()


def rate(client, movie: int, stars: int) -> None:
    response = client.post("/ratings", data={"movie_id": movie, "rating": stars}, headers=HTMX)
    assert response.status_code == 200, response.get_data(as_text=True)


def invoke(*args: str):
    return CliRunner().invoke(movierec_app, list(args), prog_name="movierec")


def column(item_ids: list[int], movie: int) -> int:
    return item_ids.index(movie)


def test_app_ratings_become_new_users_once(web_app, database_url, private_home, prepared):
    alice, bob = web_app.test_client(), web_app.test_client()
    rate(alice, 50, 5)
    rate(alice, 1, 4)
    rate(alice, 181, 2)
    assert alice.delete("/ratings/181", headers=HTMX).status_code == 200  # removed: not exported
    rate(bob, 50, 2)
    rate(bob, 50, 3)  # changed: the last value counts, once

    first = snapshot_app(database_url, Paths(private_home), "ml-100k", track=False)
    again = snapshot_app(database_url, Paths(private_home), "ml-100k", track=False)

    assert (first.n_users_added, first.n_ratings_added) == (2, 3)
    assert (again.n_users_added, again.n_ratings_added) == (2, 3)
    assert first.changed and not again.changed and first.fingerprint == again.fingerprint
    snapshot = load_prepared(again.folder)
    n_base = prepared.train.shape[0]
    assert snapshot.train.shape == (n_base + 2, prepared.n_items)
    assert torch.equal(snapshot.train[:n_base], prepared.train)  # MovieLens' train as it was
    assert torch.equal(snapshot.test[:n_base], prepared.test)  # the u1 test split unchanged
    assert not snapshot.test[n_base:].any()
    ids = [int(i) for i in prepared.metadata["item_ids"]]
    added = snapshot.train[n_base:]
    assert int((added > 0).sum()) == 3
    assert added[0, column(ids, 50)] == 5 and added[0, column(ids, 1)] == 4
    assert added[1, column(ids, 50)] == 3
    recorded = snapshot.metadata[SNAPSHOT_KEY]
    assert (recorded["users_added"], recorded["ratings_added"]) == (2, 3)
    assert snapshot.metadata["n_users"] == n_base + 2
    assert snapshot.metadata["n_train"] == prepared.metadata["n_train"] + 3
    assert snapshot.metadata["n_test"] == prepared.metadata["n_test"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # one backend shows it
def test_each_snapshot_is_a_dvc_version(web_app, database_url, private_home):
    subprocess.run(
        [sys.executable, "-m", "dvc", "init", "--no-scm", "--quiet"],
        cwd=private_home,
        check=True,
        timeout=DVC_TIMEOUT_S,
    )
    visitor = web_app.test_client()
    rate(visitor, 50, 5)
    args = ("data", "snapshot-app", "--params", str(PARAMS), "--database-url", database_url)
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    assert (summary["users_added"], summary["ratings_added"]) == (1, 1)
    dvc_file = Path(summary["dvc_file"])
    version_one = dvc_file.read_text()

    rate(visitor, 1, 4)
    second = invoke(*args)
    assert second.exit_code == 0, second.output
    assert json.loads(second.stdout.strip().splitlines()[-1])["ratings_added"] == 2
    assert dvc_file.read_text() != version_one  # a new version of the dataset


def test_a_bad_row_is_named_and_the_last_snapshot_kept(web_app, database_url, private_home):
    rate(web_app.test_client(), 50, 5)
    args = ("data", "snapshot-app", "--params", str(PARAMS), "--database-url", database_url)
    assert invoke(*args, "--no-dvc").exit_code == 0
    folder = Paths(private_home).prepared("ml-100k-app")
    before = (folder / METADATA_FILE).read_text()
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as connection:
        user = connection.execute(text("SELECT id FROM users")).scalar_one()
        connection.execute(
            text(
                "INSERT INTO ratings (user_id, movie_id, rating, updated_at) "
                "VALUES (:user, 99999, 4, CURRENT_TIMESTAMP)"
            ),
            {"user": user},
        )
        row = connection.execute(text("SELECT id FROM ratings WHERE movie_id = 99999")).scalar()
    engine.dispose()

    result = invoke(*args, "--no-dvc")

    assert result.exit_code == EXIT_INVALID, result.output
    assert f"ratings row id {row}: movie 99999 is not in the catalogue" in result.stderr
    assert "Traceback" not in result.output
    assert (folder / METADATA_FILE).read_text() == before


def test_no_database_is_unavailable(private_home, tmp_path):
    missing = tmp_path / "nowhere.sqlite3"
    result = invoke(
        "data", "snapshot-app", "--params", str(PARAMS), "--database-url", f"sqlite:///{missing}"
    )
    assert result.exit_code == EXIT_UNAVAILABLE, result.output
    assert str(missing) in result.stderr and not missing.exists()
