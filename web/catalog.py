"""The movie catalogue (from the prepared ``movies.json``), held in memory for search and titles."""

from __future__ import annotations

import json
from pathlib import Path

from training.config import ConfigError
from training.data.parsers import Movie

MAX_SEARCH_RESULTS = 20


__all__ = ["Catalog", "Movie"]


class Catalog:
    def __init__(self, movies: list[Movie]) -> None:
        self._by_id = {movie.movie_id: movie for movie in movies}
        self.movies = sorted(movies, key=lambda movie: movie.title.casefold())
        # Folded once here rather than for every movie on every keystroke of the search box.
        self._folded = [(movie.title.casefold(), movie) for movie in self.movies]
        self.genres = sorted({genre for movie in movies for genre in movie.genres})

    @classmethod
    def load(cls, path: Path) -> Catalog:
        try:
            rows = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(
                f"{path}: movie catalogue not found (run `movierec data prepare` or set "
                "MOVIES_PATH)"
            ) from exc
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: line {exc.lineno}: not valid JSON: {exc.msg}") from exc
        return cls(
            [
                Movie(
                    int(row["movie_id"]),
                    row["title"],
                    row.get("year"),
                    tuple(row.get("genres", ())),
                )
                for row in rows
            ]
        )

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, movie_id: object) -> bool:
        return movie_id in self._by_id

    def get(self, movie_id: int) -> Movie | None:
        return self._by_id.get(movie_id)

    def search(
        self,
        query: str = "",
        year: int | None = None,
        genre: str | None = None,
        limit: int = MAX_SEARCH_RESULTS,
    ) -> list[Movie]:
        """Titles containing every word of ``query`` (case-insensitive), prefix matches first."""
        words = query.casefold().split()
        if not words and year is None and not genre:
            return []
        matches = [
            (folded, movie)
            for folded, movie in self._folded
            if all(word in folded for word in words)
            and (year is None or movie.year == year)
            and (not genre or genre in movie.genres)
        ]
        first = words[0] if words else ""
        matches.sort(key=lambda match: not match[0].startswith(first))
        return [movie for _, movie in matches[:limit]]
