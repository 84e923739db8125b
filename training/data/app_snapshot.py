"""The web app's ratings as a new dataset version: ``data/preprocessed/<dataset>-app``.

The snapshot is the prepared MovieLens dataset (``data/preprocessed/<dataset>``) with every app
user who rated something appended as a new user of train; the test split (u1's) is MovieLens'
own, unchanged, so figures computed on a snapshot compare with every earlier one. It is rebuilt
whole from the base and the database each time, so a rating shows up once however often it runs.

The database is read through SQLAlchemy reflection of the web app's ``users`` and ``ratings``
tables (web/tables.py documents them): the import-linter contracts forbid ``training`` from
importing ``web``, so the training side depends on the stored schema, not on the app's code.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
import typer

from handlers import contract
from training.config import Paths, get_logger
from training.data import encoding
from training.data.ingest import DataUnavailableError
from training.data.parsers import DataValidationError
from training.data.preprocess import (
    IMPLICIT_FILE,
    METADATA_FILE,
    MOVIES_FILE,
    RBM_LIKED_FILE,
    TEST_FILE,
    TRAIN_FILE,
    load_prepared,
)

log = get_logger("data")

SNAPSHOT_SUFFIX = "-app"
USERS_TABLE = "users"
RATINGS_TABLE = "ratings"
# The stars the app accepts (and MovieLens holds): whole numbers in the contract's range.
MIN_STARS, MAX_STARS = int(contract.MIN_RATING), int(contract.MAX_RATING)
SNAPSHOT_KEY = "app_snapshot"  # the metadata section a snapshot adds


class AppDataError(DataValidationError):
    """A stored rating the snapshot cannot take; the message names the table row."""

    def __init__(self, source: str, row_id: int, message: str) -> None:
        super().__init__(source, row_id, message)
        self.args = (f"{source}: {RATINGS_TABLE} row id {row_id}: {message}",)


@dataclass(frozen=True)
class AppRating:
    row_id: int
    app_user_id: int
    movie_id: int
    stars: int


@dataclass(frozen=True)
class SnapshotSummary:
    folder: Path
    n_users_added: int
    n_ratings_added: int
    fingerprint: str
    changed: bool  # differs from the snapshot the folder held before
    dvc_file: Path | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "folder": str(self.folder),
            "users_added": self.n_users_added,
            "ratings_added": self.n_ratings_added,
            "fingerprint": self.fingerprint,
            "changed": self.changed,
            "dvc_file": str(self.dvc_file) if self.dvc_file else None,
        }


def snapshot_folder(paths: Paths, dataset: str) -> Path:
    return paths.prepared(dataset + SNAPSHOT_SUFFIX)


def sqlalchemy_url(url: str) -> str:
    """psycopg 3 is the installed driver; a plain postgresql:// URL would ask for psycopg2
    (web/config.py rewrites DATABASE_URL the same way)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _source_label(url: str) -> str:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return str(parsed.database)
    return parsed.render_as_string(hide_password=True)


def read_app_ratings(url: str) -> list[AppRating]:
    """Every stored rating, ordered by app user then movie; raises DataUnavailableError when the
    database or its tables cannot be read."""
    from sqlalchemy import MetaData, create_engine, select
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    url = sqlalchemy_url(url)
    label = _source_label(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and not Path(str(parsed.database)).is_file():
        # SQLite would create an empty file and report no tables: say what is missing instead.
        raise DataUnavailableError(f"{label}: no web app database (set DATABASE_URL)")
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            tables = MetaData()
            tables.reflect(connection, only=(USERS_TABLE, RATINGS_TABLE))
            users, ratings = tables.tables[USERS_TABLE], tables.tables[RATINGS_TABLE]
            query = (
                select(
                    ratings.c.id,
                    ratings.c.user_id,
                    users.c.id,
                    ratings.c.movie_id,
                    ratings.c.rating,
                )
                .select_from(ratings.outerjoin(users, ratings.c.user_id == users.c.id))
                .order_by(ratings.c.user_id, ratings.c.movie_id, ratings.c.id)
            )
            rows = connection.execute(query).all()
    except SQLAlchemyError as exc:
        message = str(exc).splitlines()[0]
        raise DataUnavailableError(
            f"{label}: cannot read the web app's {USERS_TABLE}/{RATINGS_TABLE} tables "
            f"(has the app run its migrations?): {message}"
        ) from exc
    finally:
        engine.dispose()
    found = []
    for row_id, user_id, known_user, movie_id, stars in rows:
        if known_user is None:
            raise AppDataError(label, row_id, f"user_id {user_id} has no {USERS_TABLE} row")
        found.append(AppRating(int(row_id), int(user_id), movie_id, stars))
    return found


def validate(ratings: list[AppRating], item_ids: list[int], label: str) -> None:
    """The MovieLens checks (parsers.read_ratings, check_against_catalogue) for stored rows."""
    catalogue = set(item_ids)
    seen: dict[tuple[int, int], int] = {}
    for rating in ratings:
        if not isinstance(rating.stars, int) or not MIN_STARS <= rating.stars <= MAX_STARS:
            raise AppDataError(
                label, rating.row_id, f"rating {rating.stars!r} is outside {MIN_STARS}-{MAX_STARS}"
            )
        if not isinstance(rating.movie_id, int) or rating.movie_id not in catalogue:
            raise AppDataError(
                label, rating.row_id, f"movie {rating.movie_id!r} is not in the catalogue"
            )
        key = (rating.app_user_id, rating.movie_id)
        if key in seen:
            raise AppDataError(
                label,
                rating.row_id,
                f"duplicate rating of movie {key[1]} by app user {key[0]} (first: row {seen[key]})",
            )
        seen[key] = rating.row_id


def fingerprint(ratings: list[AppRating], base: dict[str, Any]) -> str:
    """What the snapshot's content depends on: the base dataset and the stored ratings."""
    digest = hashlib.sha256(f"{base['source_sha256']}|{base['split']}".encode())
    for rating in ratings:
        digest.update(f"{rating.app_user_id},{rating.movie_id},{rating.stars};".encode())
    return digest.hexdigest()


def _previous_fingerprint(folder: Path) -> str | None:
    path = folder / METADATA_FILE
    if not path.is_file():
        return None
    section = json.loads(path.read_text(encoding="utf-8")).get(SNAPSHOT_KEY) or {}
    return section.get("fingerprint")


def _write(folder: Path, train: torch.Tensor, test: torch.Tensor, movies: list, meta: dict) -> None:
    """The prepared dataset's files (training.data.preprocess), written beside the target and
    swapped in whole, so a failed write leaves the previous snapshot as it was."""
    staging = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    torch.save(encoding.to_sparse(train), staging / TRAIN_FILE)
    torch.save(encoding.to_sparse(test), staging / TEST_FILE)
    liked = encoding.prepare_rbm_data(train, meta["rbm_threshold"]).to(torch.int8)
    torch.save(liked, staging / RBM_LIKED_FILE)
    torch.save(encoding.to_sparse(encoding.prepare_implicit_data(train)), staging / IMPLICIT_FILE)
    (staging / MOVIES_FILE).write_text(json.dumps(movies, ensure_ascii=False) + "\n", "utf-8")
    (staging / METADATA_FILE).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    previous = folder.with_name(folder.name + ".old")
    shutil.rmtree(previous, ignore_errors=True)
    if folder.exists():
        folder.rename(previous)
    staging.rename(folder)
    shutil.rmtree(previous, ignore_errors=True)


def track_with_dvc(root: Path, folder: Path) -> Path | None:
    """``dvc add`` the snapshot when the root is a DVC project: the ``.dvc`` file git commits
    is the dataset version. None when there is no DVC project."""
    if not (root / ".dvc").is_dir():
        return None
    relative = folder.relative_to(root)
    done = subprocess.run(
        [sys.executable, "-m", "dvc", "add", "--quiet", str(relative)],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"dvc add {relative} failed: {done.stderr.strip() or done.stdout}")
    return folder.with_name(folder.name + ".dvc")


def snapshot_app(
    database_url: str, paths: Paths, dataset: str, track: bool = True
) -> SnapshotSummary:
    """Write ``data/preprocessed/<dataset>-app``: the prepared dataset plus the app's users."""
    base = load_prepared(paths.prepared(dataset))
    item_ids = [int(i) for i in base.metadata["item_ids"]]
    label = _source_label(sqlalchemy_url(database_url))
    ratings = read_app_ratings(database_url)
    validate(ratings, item_ids, label)

    app_users = sorted({rating.app_user_id for rating in ratings})
    first_id = max(int(u) for u in base.metadata["user_ids"]) + 1
    row_of = {app_user: row for row, app_user in enumerate(app_users)}
    column_of = {movie: column for column, movie in enumerate(item_ids)}
    triples = np.array(
        [[row_of[r.app_user_id], column_of[r.movie_id], r.stars] for r in ratings], dtype=np.int64
    ).reshape(-1, 3)
    added = encoding.convert_to_matrix(triples, len(app_users), len(item_ids))
    train = torch.cat([base.train, added])
    test = torch.cat([base.test, torch.zeros_like(added)])  # the test split stays MovieLens'
    n_users = train.shape[0]

    folder = snapshot_folder(paths, dataset)
    content = fingerprint(ratings, base.metadata)
    stars = np.array([r.stars for r in ratings], dtype=np.int64)
    histogram = {
        star: count + int((stars == int(star)).sum())
        for star, count in base.metadata["rating_histogram"].items()
    }
    n_all = base.metadata["n_train"] + base.metadata["n_test"] + len(ratings)
    metadata = {
        **base.metadata,
        "n_users": n_users,
        "n_train": base.metadata["n_train"] + len(ratings),
        "density": n_all / float(n_users * len(item_ids)),
        "rating_histogram": histogram,
        "rating_mean": sum(int(s) * c for s, c in histogram.items()) / n_all,
        "user_ids": [*base.metadata["user_ids"], *range(first_id, first_id + len(app_users))],
        SNAPSHOT_KEY: {
            "source": label,
            "base": str(paths.prepared(dataset).relative_to(paths.root)),
            "taken_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "users_added": len(app_users),
            "ratings_added": len(ratings),
            "first_user_id": first_id,
            # snapshot user id -> the app's users.id, in row order
            "app_user_ids": app_users,
            "fingerprint": content,
        },
    }
    changed = _previous_fingerprint(folder) != content
    _write(folder, train, test, base.movies, metadata)
    dvc_file = track_with_dvc(paths.root, folder) if track else None
    log.info(
        "app snapshot %s: %d users, %d ratings added to %s%s",
        folder,
        len(app_users),
        len(ratings),
        dataset,
        "" if changed else " (unchanged)",
    )
    return SnapshotSummary(folder, len(app_users), len(ratings), content, changed, dvc_file)


def snapshot_app_command(
    params: Annotated[Path, typer.Option("--params", help="params.yaml to read.")] = Path(
        "params.yaml"
    ),
    database_url: Annotated[
        str | None,
        typer.Option(help="The web app's database; default DATABASE_URL, else its SQLite file."),
    ] = None,
    dvc: Annotated[bool, typer.Option(help="Record the snapshot with `dvc add`.")] = True,
) -> None:
    """Export the ratings given in the web app as data/preprocessed/<dataset>-app: MovieLens'
    train plus the app's users, MovieLens' test split unchanged."""
    from training.config import app_database_url, load_params

    paths = Paths()
    summary = snapshot_app(
        database_url or app_database_url(paths), paths, load_params(params).data.dataset, dvc
    )
    typer.echo(json.dumps(summary.to_dict()))
