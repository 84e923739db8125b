"""Serving a recommendation: cache, model backend, impressions and events, timed and counted."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from web import instrumentation
from web.backends import ModelBackend, RecommendationResult, RecommendRequest
from web.cache import RecommendationCache, cache_key
from web.journal import Journal
from web.tables import Event, Impression

MS_PER_S = 1000.0


@dataclass(frozen=True)
class Served:
    result: RecommendationResult
    cache_hit: bool
    latency_ms: float


class Recommender:
    """Answers from the cache when the same model version has seen the same ratings."""

    def __init__(self, backend: ModelBackend, cache: RecommendationCache) -> None:
        self.backend = backend
        self.cache = cache
        # The version each model last answered with: part of the cache key, learnt on first call.
        self._versions: dict[str, str] = {}
        self._lock = threading.Lock()

    def recommend(
        self,
        user: str,
        model: str,
        query: RecommendRequest,
        request_id: str,
        endpoint: str,
        version: str | None = None,
    ) -> Served:
        """Raises BackendError when the model server cannot answer (and nothing is cached).
        ``version``: that model version answers (a canary's arm), not the server's default."""
        started = time.perf_counter()
        pinned = version
        version = pinned or self._versions.get(model)
        key = None
        if version is not None:
            key = cache_key(model, version, query.ratings, query.k, query.weights)
            cached = self.cache.get(user, key)
            if cached is not None:
                instrumentation.record_cache(True)
                result = RecommendationResult.from_dict(cached)
                return Served(result, True, (time.perf_counter() - started) * MS_PER_S)
        instrumentation.record_cache(False)
        predict_started = time.perf_counter()
        if pinned is None:
            result = self.backend.recommend(model, query, request_id)
        else:
            result = self.backend.recommend(model, query, request_id, version=pinned)
        instrumentation.observe_prediction(model, endpoint, time.perf_counter() - predict_started)
        instrumentation.record_request_for_drift(
            query.ratings, [item.score for item in result.recommendations], model
        )
        if pinned is None:  # a canary's versions alternate; the default is what others get
            with self._lock:
                self._versions[model] = result.version
        key = cache_key(model, result.version, query.ratings, query.k, query.weights)
        self.cache.put(user, key, result.to_dict())
        return Served(result, False, (time.perf_counter() - started) * MS_PER_S)

    def forget_user(self, user: str) -> int:
        """A rating changed: that user's cached answers are stale."""
        return self.cache.invalidate_user(user)


def record_impressions(
    journal: Journal, user_id: int, arm: str, result: RecommendationResult, request_id: str
) -> None:
    """Staged: written with the request's other rows as it ends (before the answer is sent)."""
    rows = [
        {
            "user_id": user_id,
            "model": result.model,
            "arm": arm,
            "movie_id": item.movie_id,
            "position": position,
            "request_id": request_id,
        }
        for position, item in enumerate(result.recommendations)
    ]
    journal.add(Impression, rows, essential=True)
    journal.on_commit(lambda: instrumentation.record_impressions(result.model, arm, len(rows)))


def record_event(
    journal: Journal,
    kind: str,
    endpoint: str,
    status: int,
    latency_ms: float,
    model: str | None = None,
    cache_hit: bool | None = None,
) -> None:
    """Staged like impressions; every event row carries every column (one executemany)."""
    journal.add(
        Event,
        [
            {
                "kind": kind,
                "endpoint": endpoint,
                "model": model,
                "status": status,
                "latency_ms": latency_ms,
                "cache_hit": cache_hit,
            }
        ],
    )


def ratings_for_backend(ratings: Mapping[int, int]) -> dict[int, int]:
    return {int(movie): int(rating) for movie, rating in ratings.items()}
