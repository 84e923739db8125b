"""Small synthetic MovieLens files in GroupLens' own layouts, written by the tests themselves.

No real MovieLens file is copied here (their license forbids redistribution); these few lines only
mimic the formats, including the latin-1 titles and the quirks the parsers must handle.
"""

from __future__ import annotations

import json
from pathlib import Path

from training.data.ingest import SOURCE_FILE

# The 19 genre names of ML-100K's u.genre, in index order (a format fact, not data).
GENRES_100K = tuple(
    "unknown|Action|Adventure|Animation|Children's|Comedy|Crime|Documentary|Drama|Fantasy|"
    "Film-Noir|Horror|Musical|Mystery|Romance|Sci-Fi|Thriller|War|Western".split("|")
)
TIMESTAMP = 881250949

# (movie id, title, release date, genres), deliberately not in id order: columns must be sorted.
MOVIES = (
    (7, "Untitled Festival Cut", "01-Jan-1996", ("Drama",)),
    (1, "Toy Story (1995)", "01-Jan-1995", ("Animation", "Children's", "Comedy")),
    (3, "Misérables, Les (1995)", "01-Jan-1995", ("Drama", "Musical")),
    (2, "GoldenEye (1995)", "01-Jan-1995", ("Action", "Adventure", "Thriller")),
)
USERS = (10, 20, 30)  # user 30 rates nothing, so it gets no row
# (user, item, rating): the u1 split of the synthetic ML-100K.
BASE = ((10, 1, 5), (10, 2, 3), (20, 3, 1), (20, 7, 4))
TEST = ((10, 3, 2), (20, 1, 4))


def write_lines(path: Path, lines, encoding: str = "ascii") -> Path:
    """Write ``lines`` (str, or bytes kept as they are) with LF endings."""
    data = b"".join(
        (line if isinstance(line, bytes) else line.encode(encoding)) + b"\n" for line in lines
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def rating_lines(triples, sep: str) -> list[str]:
    return [
        sep.join(str(v) for v in (u, i, r, TIMESTAMP + n)) for n, (u, i, r) in enumerate(triples)
    ]


def item_line_100k(movie_id: int, title: str, release: str, genres) -> str:
    flags = ["1" if name in genres else "0" for name in GENRES_100K]
    return "|".join([str(movie_id), title, release, "", "http://example.invalid/", *flags])


def user_line(user_id: int, sep: str) -> str:
    return sep.join([str(user_id), "24", "M", "technician", "85711"])


def write_source(folder: Path, ratings_file: str, subset: str | None = None) -> None:
    """What ``fetch`` would have recorded, so ``prepare`` accepts the folder."""
    source = {
        "origin": "mirror",
        "location": "synthetic",
        "ratings": ratings_file,
        "subset": subset,
        "sha256": {},
    }
    (folder / SOURCE_FILE).write_text(json.dumps(source), encoding="utf-8")


def write_raw_100k(folder: Path, base=BASE, test=TEST, movies=MOVIES, users=USERS) -> Path:
    """A raw ML-100K folder with the u1 split only (what ``prepare`` reads)."""
    write_lines(folder / "u.genre", [f"{name}|{i}" for i, name in enumerate(GENRES_100K)])
    write_lines(folder / "u.item", [item_line_100k(*m) for m in movies], encoding="latin-1")
    write_lines(folder / "u.user", [user_line(u, "|") for u in users])
    write_lines(folder / "u1.base", rating_lines(base, "\t"))
    write_lines(folder / "u1.test", rating_lines(test, "\t"))
    write_source(folder, "u.data")
    return folder


def write_raw_1m(folder: Path, ratings, movies=MOVIES, users=USERS) -> Path:
    """A raw ML-1M folder: movies.dat, users.dat and ratings.dat, all ``::``-separated."""
    write_lines(
        folder / "movies.dat",
        [f"{mid}::{title}::{'|'.join(genres)}" for mid, title, _, genres in movies],
        encoding="latin-1",
    )
    write_lines(folder / "users.dat", [user_line(u, "::") for u in users])
    write_lines(folder / "ratings.dat", rating_lines(ratings, "::"))
    write_source(folder, "ratings.dat")
    return folder
