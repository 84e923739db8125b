"""The model backend interface: what the web app needs from a model server, whichever it is."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field


class BackendError(Exception):
    """The model backend could not answer."""


class BackendUnavailable(BackendError):
    """The model server is down, timed out or answered 5xx: the page says so, the rest works."""


class BackendRejected(BackendError):
    """The model server refused this input (4xx); ``message`` is its explanation."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Recommendation:
    movie_id: int
    title: str
    score: float
    predicted_rating: float | None = None
    # Movie ids from the user's own ratings that explain this one ("because you rated ...").
    because: tuple[int, ...] = ()

    def to_dict(self) -> dict:
        return {
            "movie_id": self.movie_id,
            "title": self.title,
            "score": self.score,
            "predicted_rating": self.predicted_rating,
            "because": list(self.because),
        }


@dataclass(frozen=True)
class RecommendationResult:
    model: str
    version: str
    recommendations: tuple[Recommendation, ...]
    # Set when the server could not personalise (no ratings): e.g. "popularity".
    fallback: str | None = None
    extra: Mapping[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "version": self.version,
            "fallback": self.fallback,
            "recommendations": [item.to_dict() for item in self.recommendations],
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> RecommendationResult:
        """Parse the TorchServe response contract (issue 4); also reads this class's own dict."""
        items = tuple(
            Recommendation(
                movie_id=int(item["movie_id"]),
                title=str(item.get("title", "")),
                score=float(item["score"]),
                predicted_rating=(
                    float(item["predicted_rating"])
                    if item.get("predicted_rating") is not None
                    else None
                ),
                because=tuple(int(movie) for movie in item.get("because") or ()),
            )
            for item in data.get("recommendations", ())
        )
        # The handlers label a new user's answer with "strategy": "popularity".
        fallback = data.get("fallback")
        if fallback is None and data.get("strategy") not in (None, "model"):
            fallback = str(data["strategy"])
        return cls(
            model=str(data.get("model", "")),
            version=str(data.get("version", "")),
            recommendations=items,
            fallback=fallback if fallback is None else str(fallback),
        )


@dataclass(frozen=True)
class RecommendRequest:
    """One user's query, in the shape of the TorchServe request contract."""

    ratings: Mapping[int, int]
    k: int = 10
    exclude_rated: bool = True
    explain: bool = True
    weights: Mapping[str, float] | None = None

    def to_json(self) -> dict:
        body: dict = {
            "ratings": {str(movie): rating for movie, rating in self.ratings.items()},
            "k": self.k,
            "exclude_rated": self.exclude_rated,
            "explain": self.explain,
        }
        if self.weights is not None:
            body["weights"] = dict(self.weights)
        return body


class ModelBackend(ABC):
    """A model server (or in-process models) that recommends for sae, rbm and hybrid."""

    name: str

    @abstractmethod
    def recommend(
        self, model: str, query: RecommendRequest, request_id: str, version: str | None = None
    ) -> RecommendationResult:
        """``version``: that version of the model answers (a canary's arm), where the server
        keeps several; None: the server's default."""

    def recommend_batch(
        self, model: str, queries: list[RecommendRequest], request_id: str
    ) -> list[RecommendationResult]:
        return [self.recommend(model, query, request_id) for query in queries]

    @abstractmethod
    def health(self) -> dict[str, str]:
        """Per model: "ready" or why not. Never raises."""

    def close(self) -> None:  # noqa: B027 - optional hook
        pass
