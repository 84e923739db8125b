"""One recommendation panel's worth of work, shared by the pages and the JSON API."""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy.orm import Session

from web import instrumentation, journal
from web.analytics import RECOMMEND_EVENT
from web.backends import BackendError, BackendRejected, RecommendationResult, RecommendRequest
from web.recommending import Served, record_event, record_impressions
from web.services import Services
from web.tables import Feedback

UNAVAILABLE = 503
REJECTED = 422


@dataclass
class Panel:
    """What a model panel shows: its answer, or why there is none."""

    model: str
    k: int
    result: RecommendationResult | None = None
    cache_hit: bool = False
    latency_ms: float = 0.0
    error: str | None = None
    status: int = 200


def query_for(
    services: Services, model: str, ratings: dict[int, int], k: int, weights: dict | None = None
) -> RecommendRequest:
    if model == "hybrid" and weights is None:
        weights = services.settings.hybrid_weights
    return RecommendRequest(ratings=ratings, k=k, weights=weights if model == "hybrid" else None)


def fetch_panels(
    services: Services,
    user_key: str,
    models: list[str],
    ratings: dict[int, int],
    k: int,
    request_id: str,
    endpoint: str,
    weights: dict | None = None,
    versions: Mapping[str, str] | None = None,
) -> list[Panel]:
    """Ask the backend for each model at once (threads: the calls are I/O), never raising.
    ``versions``: the model versions this user is pinned to (a canary's arm)."""

    def one(model: str) -> Panel:
        query = query_for(services, model, ratings, k, weights)
        try:
            served: Served = services.recommender.recommend(
                user_key, model, query, request_id, endpoint, (versions or {}).get(model)
            )
        except BackendRejected as exc:
            return Panel(model, k, error=str(exc), status=REJECTED)
        except BackendError as exc:
            return Panel(model, k, error=str(exc), status=UNAVAILABLE)
        return Panel(model, k, served.result, served.cache_hit, served.latency_ms)

    if len(models) == 1:
        return [one(models[0])]
    with ThreadPoolExecutor(max_workers=len(models)) as pool:
        return list(pool.map(one, models))


def record_panels(
    user_id: int | None,
    arm: str | None,
    panels: list[Panel],
    request_id: str,
    endpoint: str,
) -> None:
    """Impressions (when a user is known) and one event per panel, staged in the request's
    journal: committed in one transaction as the request ends, before the answer is sent."""
    staged = journal.current()
    for panel in panels:
        if panel.result is not None and user_id is not None and arm is not None:
            record_impressions(staged, user_id, arm, panel.result, request_id)
        record_event(
            staged,
            RECOMMEND_EVENT,
            endpoint,
            panel.status,
            panel.latency_ms,
            model=panel.model,
            cache_hit=panel.cache_hit if panel.result is not None else None,
        )


def store_feedback(
    db: Session, user_id: int, model: str, arm: str, movie_id: int, kind: str
) -> Feedback:
    """Committed before the response is sent, so an answered click is never lost."""
    row = Feedback(user_id=user_id, model=model, arm=arm, movie_id=movie_id, kind=kind)
    db.add(row)
    db.commit()
    instrumentation.record_feedback(model, arm, kind)
    return row
