"""Shared fixtures: the MovieLens mirror, prepared ML-100K and small trained checkpoints.

Everything is built once per session under a temporary MOVIEREC_HOME, so tests never depend on
(or disturb) the developer's own data/ folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
# Tests never write log files into the checkout's logs/.
os.environ.setdefault("MOVIEREC_LOG_FILES", "0")
# Every module in tests/fixtures/ is a plugin: fixtures for real servers shared by test folders.
pytest_plugins = sorted(
    f"tests.fixtures.{path.stem}"
    for path in (Path(__file__).parent / "fixtures").glob("*.py")
    if path.stem != "__init__"
)
# Epochs for the session checkpoints: enough for real recommendations, fast on 2 cores.
FIXTURE_EPOCHS = 15


def _mirror() -> Path:
    value = os.environ.get("MOVIELENS_MIRROR")
    candidates = [Path(value)] if value else [REPO_ROOT.parent / "shared" / "data"]
    for candidate in candidates:
        if (candidate / "ml-100k" / "u.data").is_file():
            return candidate.resolve()
    raise pytest.UsageError(
        "MovieLens mirror not found: set MOVIELENS_MIRROR to a folder holding ml-100k/ "
        "(CI uses ../shared/data)"
    )


@pytest.fixture(scope="session")
def mirror() -> Path:
    return _mirror()


@pytest.fixture(scope="session")
def project_home(tmp_path_factory, mirror) -> Path:
    """A MOVIEREC_HOME with ML-100K fetched from the mirror and prepared (u1 split)."""
    from training.config import Paths, load_params
    from training.data.ingest import fetch
    from training.data.preprocess import prepare

    home = tmp_path_factory.mktemp("movierec-home")
    paths = Paths(home)
    params = load_params(REPO_ROOT / "params.yaml")
    os.environ["MOVIELENS_MIRROR"] = str(mirror)
    fetch("ml-100k", paths.raw)
    prepare(paths.raw_dataset("ml-100k"), paths.prepared("ml-100k"), params.data)
    return home


@pytest.fixture(scope="session")
def prepared(project_home):
    from training.config import Paths
    from training.data.preprocess import load_prepared

    return load_prepared(Paths(project_home).prepared("ml-100k"))


@pytest.fixture(scope="session")
def checkpoints(project_home) -> dict[str, Path]:
    """SAE and RBM checkpoints trained briefly (no MLflow) on the prepared ML-100K."""
    from training.config import Paths, load_params
    from training.train import MODEL_NAMES, train_model

    params = load_params(REPO_ROOT / "params.yaml")
    paths = Paths(project_home)
    return {
        name: train_model(
            name, params, paths, track=False, progress=False, epochs=FIXTURE_EPOCHS
        ).checkpoint
        for name in MODEL_NAMES
    }


@pytest.fixture
def private_home(project_home, tmp_path, monkeypatch) -> Path:
    """A MOVIEREC_HOME of the test's own whose prepared data is the session's (read-only), so
    checkpoints, reports, optuna.db written by the test never touch the shared fixtures."""
    from training.config import Paths

    home = tmp_path / "home"
    paths = Paths(home)
    paths.preprocessed.mkdir(parents=True)
    (paths.preprocessed / "ml-100k").symlink_to(Paths(project_home).prepared("ml-100k"))
    monkeypatch.setenv("MOVIEREC_HOME", str(home))
    return home
