"""Recommendation cache keyed by model, model version and the user's ratings.

Redis when ``REDIS_URL`` is set (shared by every worker; an in-process LRU while it is down), an
in-process LRU otherwise. Each user's keys are indexed so that a new rating drops them all at once.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Mapping

import redis

from training.config import get_logger

log = get_logger("web")

REDIS_TIMEOUT_S = 1.0
# While Redis is unreachable it is tried again this often, not on every request.
REDIS_RETRY_S = 5.0
FALLBACK_CAPACITY = 4096


def cache_key(
    model: str, version: str, ratings: Mapping[int, int], k: int, weights: Mapping | None
) -> str:
    """Same model, version, ratings and query -> same key, whatever order the ratings came in."""
    canonical = json.dumps(
        {"r": sorted(ratings.items()), "k": k, "w": sorted((weights or {}).items())},
        separators=(",", ":"),
    )
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:32]
    return f"{model}:{version}:{digest}"


class RecommendationCache(ABC):
    @abstractmethod
    def get(self, user: str, key: str) -> dict | None: ...

    @abstractmethod
    def put(self, user: str, key: str, value: dict) -> None: ...

    @abstractmethod
    def invalidate_user(self, user: str) -> int:
        """Drop every entry of ``user``; returns how many were dropped."""

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


class LRUCache(RecommendationCache):
    def __init__(self, capacity: int, ttl_s: float) -> None:
        self.capacity = capacity
        self.ttl_s = ttl_s
        self._entries: OrderedDict[tuple[str, str], tuple[float, dict]] = OrderedDict()
        # user -> their keys, so a rating drops that user's entries without scanning them all.
        self._keys_of: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def _drop(self, user: str, key: str) -> None:
        del self._entries[(user, key)]
        keys = self._keys_of.get(user)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._keys_of[user]

    def get(self, user: str, key: str) -> dict | None:
        with self._lock:
            entry = self._entries.get((user, key))
            if entry is None:
                return None
            expires, value = entry
            if expires < time.monotonic():
                self._drop(user, key)
                return None
            self._entries.move_to_end((user, key))
            return value

    def put(self, user: str, key: str, value: dict) -> None:
        if self.capacity == 0:
            return
        with self._lock:
            self._entries[(user, key)] = (time.monotonic() + self.ttl_s, value)
            self._entries.move_to_end((user, key))
            self._keys_of.setdefault(user, set()).add(key)
            while len(self._entries) > self.capacity:
                oldest_user, oldest_key = next(iter(self._entries))
                self._drop(oldest_user, oldest_key)

    def invalidate_user(self, user: str) -> int:
        with self._lock:
            keys = self._keys_of.pop(user, set())
            for key in keys:
                del self._entries[(user, key)]
            return len(keys)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._keys_of.clear()

    def __len__(self) -> int:
        return len(self._entries)


class RedisCache(RecommendationCache):
    """Redis, shared by every worker; while it is unreachable, the in-process ``fallback``.

    The first failure logs one warning and switches to the fallback; Redis is tried again every
    ``REDIS_RETRY_S`` (not on every request, which would add a connect attempt to each), and
    its answer switches back (and empties the fallback).
    """

    def __init__(self, url: str, prefix: str, ttl_s: int, fallback: LRUCache | None = None) -> None:
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.client = redis.Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
        )
        self.fallback = fallback if fallback is not None else LRUCache(FALLBACK_CAPACITY, ttl_s)
        self._retry_at = 0.0
        self._down = False
        self._lock = threading.Lock()

    @property
    def is_down(self) -> bool:
        return self._down

    def _redis_due(self) -> bool:
        return not self._down or time.monotonic() >= self._retry_at

    def _failed(self, exc: redis.RedisError) -> None:
        with self._lock:
            self._retry_at = time.monotonic() + REDIS_RETRY_S
            if self._down:
                return
            self._down = True
        log.warning(
            "Redis cache unreachable (%s): using the in-process cache, retrying every %gs",
            type(exc).__name__,
            REDIS_RETRY_S,
        )

    def _answered(self) -> None:
        if self._down:
            with self._lock:
                self._down = False
            # The outage's entries are right (keys hold the ratings) but would outlive it.
            self.fallback.clear()
            log.info("Redis cache reachable again: back to the shared cache")

    def _entry(self, user: str, key: str) -> str:
        return f"{self.prefix}rec:{user}:{key}"

    def _index(self, user: str) -> str:
        return f"{self.prefix}user:{user}"

    def get(self, user: str, key: str) -> dict | None:
        if self._redis_due():
            try:
                raw = self.client.get(self._entry(user, key))
            except redis.RedisError as exc:
                self._failed(exc)
            else:
                self._answered()
                return json.loads(raw) if raw is not None else None
        return self.fallback.get(user, key)

    def put(self, user: str, key: str, value: dict) -> None:
        if self._redis_due():
            entry = self._entry(user, key)
            try:
                with self.client.pipeline() as pipe:
                    pipe.set(entry, json.dumps(value), ex=self.ttl_s)
                    pipe.sadd(self._index(user), entry)
                    pipe.expire(self._index(user), self.ttl_s)
                    pipe.execute()
            except redis.RedisError as exc:
                self._failed(exc)
            else:
                self._answered()
                return
        self.fallback.put(user, key, value)

    def invalidate_user(self, user: str) -> int:
        # Both sides: the fallback may hold entries from an outage.
        dropped = self.fallback.invalidate_user(user)
        if not self._redis_due():
            return dropped
        index = self._index(user)
        try:
            keys = self.client.smembers(index)
            with self.client.pipeline() as pipe:
                if keys:
                    pipe.delete(*keys)
                pipe.delete(index)
                pipe.execute()
        except redis.RedisError as exc:
            self._failed(exc)
            return dropped
        self._answered()
        return dropped + len(keys)

    def close(self) -> None:
        self.client.close()


def make_cache(
    redis_url: str | None, prefix: str, capacity: int, ttl_s: int
) -> RecommendationCache:
    if redis_url:
        return RedisCache(redis_url, prefix, ttl_s, fallback=LRUCache(capacity, ttl_s))
    return LRUCache(capacity, ttl_s)
