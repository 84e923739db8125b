"""A throw-away MLflow store (SQLite, real MLflow) and MOVIEREC_HOME for the lifecycle tests,
with a web app database holding a few ratings; module-scoped, since registering is slow."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from training.config import REPO_ROOT, Params, Paths, load_params

EXPERIMENT = "movierec"  # params.yaml's mlflow.experiment_name
APP_RATINGS = {"web:lifecycle-a": {50: 5, 1: 4}, "web:lifecycle-b": {50: 3}}


@dataclass(frozen=True)
class LifecycleStore:
    home: Path
    database_url: str
    params: Params

    @property
    def paths(self) -> Paths:
        return Paths(self.home)


def write_app_ratings(url: str) -> None:
    """The web app's schema (its own migrations) and a few ratings, through its own functions."""
    from sqlalchemy.orm import Session

    from web import db
    from web.profiles import get_or_create_user, set_rating

    engine = db.make_engine(url, pool_size=1)
    db.upgrade(engine)
    with Session(engine) as session:
        for visitor, ratings in APP_RATINGS.items():
            user = get_or_create_user(session, visitor)
            for movie, stars in ratings.items():
                set_rating(session, user.id, movie, stars)
        session.commit()
    engine.dispose()


@contextmanager
def lifecycle_store(project_home: Path, root: Path) -> Iterator[LifecycleStore]:
    """MOVIEREC_HOME and MLFLOW_TRACKING_URI pointed under ``root``, restored afterwards."""
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    home = root / "home"
    paths = Paths(home)
    paths.preprocessed.mkdir(parents=True)
    (paths.preprocessed / "ml-100k").symlink_to(Paths(project_home).prepared("ml-100k"))
    database_url = f"sqlite:///{root / 'web.sqlite3'}"
    write_app_ratings(database_url)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        for name in ("MLFLOW_REGISTRY_URI", "DAGSHUB_REPO_OWNER", "DAGSHUB_REPO_NAME"):
            patch.delenv(name, raising=False)
        patch.setenv("MOVIEREC_HOME", str(home))
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.setattr(tracking_utils, "_tracking_uri", None)
        patch.setattr(registry_utils, "_registry_uri", None)
        patch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)
        mlflow.set_tracking_uri(uri)
        mlflow.create_experiment(EXPERIMENT, artifact_location=(root / "artifacts").as_uri())
        try:
            yield LifecycleStore(home, database_url, load_params(REPO_ROOT / "params.yaml"))
        finally:
            while mlflow.active_run() is not None:
                mlflow.end_run()
