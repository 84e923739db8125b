"""Strict parsers for MovieLens files: every problem is reported with the file and line."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.data.datasets import DatasetSpec

# Damaged copies of MovieLens carry UTF-8 replacement characters where latin-1 letters were.
_REPLACEMENT_BYTES = "\ufffd".encode()
_YEAR_SUFFIX = re.compile(r"\s*\((\d{4})\)\s*$")
ML_100K_GENRE_COUNT = 19


class DataValidationError(ValueError):
    """A data file is malformed; ``str()`` reads ``path:line: message``."""

    def __init__(self, path: Path | str, line: int | None, message: str) -> None:
        self.path = Path(path)
        self.line = line
        self.message = message
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Ratings:
    """Parallel arrays of one ratings file, in file order."""

    users: np.ndarray  # int64 raw MovieLens user ids
    items: np.ndarray  # int64 raw MovieLens movie ids
    ratings: np.ndarray  # float32 in 1..5
    timestamps: np.ndarray  # int64
    lines: np.ndarray  # int64 1-based line numbers, so later checks can name a line

    def __len__(self) -> int:
        return int(self.users.shape[0])


@dataclass(frozen=True)
class Movie:
    movie_id: int
    title: str
    year: int | None
    genres: tuple[str, ...]

    @property
    def label(self) -> str:
        """The title as people write it: "Toy Story (1995)"."""
        return f"{self.title} ({self.year})" if self.year else self.title

    def to_dict(self) -> dict:
        return {
            "movie_id": self.movie_id,
            "title": self.title,
            "year": self.year,
            "genres": list(self.genres),
        }


def _lines(path: Path, encoding: str) -> Iterator[tuple[int, str]]:
    """Yield (line number, decoded text) for non-empty lines, rejecting damaged text."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            raw = raw.rstrip(b"\r\n")
            if not raw.strip():
                continue
            if _REPLACEMENT_BYTES in raw:
                raise DataValidationError(
                    path, number, "text is damaged (contains U+FFFD replacement characters)"
                )
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError as exc:
                raise DataValidationError(
                    path, number, f"cannot decode as {encoding}: {exc.reason} at byte {exc.start}"
                ) from None
            if any(ord(ch) < 32 and ch != "\t" for ch in text):
                raise DataValidationError(path, number, "text contains control characters")
            yield number, text


def _int(path: Path, number: int, value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise DataValidationError(path, number, f"{what} {value!r} is not an integer") from None


def read_ratings(path: Path | str, sep: str, encoding: str = "ascii") -> Ratings:
    """Parse ``user<sep>item<sep>rating<sep>timestamp`` lines with full validation."""
    path = Path(path)
    if not path.is_file():
        raise DataValidationError(path, None, "file not found")
    users, items, ratings, stamps, line_numbers = [], [], [], [], []
    first_seen: dict[tuple[int, int], int] = {}
    for number, text in _lines(path, encoding):
        fields = text.split(sep)
        if len(fields) != 4:
            raise DataValidationError(
                path,
                number,
                f"expected 4 columns (user, item, rating, timestamp), got {len(fields)}",
            )
        user = _int(path, number, fields[0], "user id")
        item = _int(path, number, fields[1], "item id")
        rating = _int(path, number, fields[2], "rating")
        stamp = _int(path, number, fields[3], "timestamp")
        if user < 1 or item < 1:
            raise DataValidationError(path, number, "ids must be positive")
        if not 1 <= rating <= 5:
            raise DataValidationError(path, number, f"rating {rating} is outside 1-5")
        key = (user, item)
        if key in first_seen:
            raise DataValidationError(
                path,
                number,
                f"duplicate rating of item {item} by user {user} (first at line {first_seen[key]})",
            )
        first_seen[key] = number
        users.append(user)
        items.append(item)
        ratings.append(rating)
        stamps.append(stamp)
        line_numbers.append(number)
    if not users:
        raise DataValidationError(path, None, "no ratings in file")
    return Ratings(
        users=np.asarray(users, dtype=np.int64),
        items=np.asarray(items, dtype=np.int64),
        ratings=np.asarray(ratings, dtype=np.float32),
        timestamps=np.asarray(stamps, dtype=np.int64),
        lines=np.asarray(line_numbers, dtype=np.int64),
    )


def _split_title(title: str) -> tuple[str, int | None]:
    match = _YEAR_SUFFIX.search(title)
    if not match:
        return title.strip(), None
    return title[: match.start()].strip(), int(match.group(1))


def _check_unique(path: Path, number: int, movie_id: int, seen: set[int]) -> None:
    if movie_id in seen:
        raise DataValidationError(path, number, f"movie id {movie_id} appears twice")
    seen.add(movie_id)


def read_genres_100k(path: Path | str) -> list[str]:
    """``u.genre``: ``name|index`` lines; returns names in index order."""
    path = Path(path)
    pairs = []
    for number, text in _lines(path, "latin-1"):
        fields = text.split("|")
        if len(fields) != 2:
            raise DataValidationError(path, number, f"expected 2 columns, got {len(fields)}")
        pairs.append((_int(path, number, fields[1], "genre index"), fields[0]))
    names = [name for _, name in sorted(pairs)]
    if len(names) != ML_100K_GENRE_COUNT:
        raise DataValidationError(
            path, None, f"expected {ML_100K_GENRE_COUNT} genres, got {len(names)}"
        )
    return names


def read_movies_100k(path: Path | str, genre_names: list[str]) -> list[Movie]:
    """``u.item``: id|title|release|video release|url|19 genre flags (latin-1)."""
    path = Path(path)
    expected = 5 + len(genre_names)
    movies: list[Movie] = []
    seen: set[int] = set()
    for number, text in _lines(path, "latin-1"):
        fields = text.split("|")
        if len(fields) != expected:
            raise DataValidationError(
                path, number, f"expected {expected} columns, got {len(fields)}"
            )
        movie_id = _int(path, number, fields[0], "movie id")
        _check_unique(path, number, movie_id, seen)
        flags = fields[5:]
        if any(flag not in ("0", "1") for flag in flags):
            raise DataValidationError(path, number, "genre flags must be 0 or 1")
        genres = tuple(name for name, flag in zip(genre_names, flags, strict=True) if flag == "1")
        title, year = _split_title(fields[1])
        if year is None and len(fields[2]) >= 4 and fields[2][-4:].isdigit():
            year = int(fields[2][-4:])
        movies.append(Movie(movie_id, title, year, genres))
    if not movies:
        raise DataValidationError(path, None, "no movies in file")
    return movies


def read_movies_1m(path: Path | str) -> list[Movie]:
    """``movies.dat``: id::title (year)::Genre|Genre (latin-1)."""
    path = Path(path)
    movies: list[Movie] = []
    seen: set[int] = set()
    for number, text in _lines(path, "latin-1"):
        fields = text.split("::")
        if len(fields) != 3:
            raise DataValidationError(path, number, f"expected 3 columns, got {len(fields)}")
        movie_id = _int(path, number, fields[0], "movie id")
        _check_unique(path, number, movie_id, seen)
        title, year = _split_title(fields[1])
        genres = tuple(g for g in fields[2].split("|") if g)
        movies.append(Movie(movie_id, title, year, genres))
    if not movies:
        raise DataValidationError(path, None, "no movies in file")
    return movies


def read_user_ids(path: Path | str, sep: str) -> list[int]:
    """The user ids of ``u.user`` / ``users.dat`` (5 columns each), validated."""
    path = Path(path)
    ids, seen = [], set()
    for number, text in _lines(path, "ascii"):
        fields = text.split(sep)
        if len(fields) != 5:
            raise DataValidationError(path, number, f"expected 5 columns, got {len(fields)}")
        user_id = _int(path, number, fields[0], "user id")
        if user_id in seen:
            raise DataValidationError(path, number, f"user id {user_id} appears twice")
        seen.add(user_id)
        ids.append(user_id)
    return ids


def read_movies(spec: DatasetSpec, folder: Path) -> list[Movie]:
    if spec.name == "ml-100k":
        return read_movies_100k(folder / "u.item", read_genres_100k(folder / "u.genre"))
    return read_movies_1m(folder / "movies.dat")


def check_against_catalogue(
    path: Path, ratings: Ratings, movie_ids: set[int], user_ids: set[int] | None = None
) -> None:
    """Every rated item (and user, when known) must exist; the error names the first bad line."""
    unknown_items = ~np.isin(ratings.items, list(movie_ids))
    if unknown_items.any():
        row = int(np.argmax(unknown_items))
        raise DataValidationError(
            path, int(ratings.lines[row]), f"item {int(ratings.items[row])} is not in the catalogue"
        )
    if user_ids is not None:
        unknown_users = ~np.isin(ratings.users, list(user_ids))
        if unknown_users.any():
            row = int(np.argmax(unknown_users))
            raise DataValidationError(
                path,
                int(ratings.lines[row]),
                f"user {int(ratings.users[row])} is not in the user list",
            )
