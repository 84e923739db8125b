"""Recommendation cache keyed by model, model version and the user's ratings.

Redis when ``REDIS_URL`` is set (shared by every worker), an in-process LRU otherwise. Each user's
keys are indexed so that a new rating drops them all at once.
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

    def __len__(self) -> int:
        return len(self._entries)


class RedisCache(RecommendationCache):
    def __init__(self, url: str, prefix: str, ttl_s: int) -> None:
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)

    def _entry(self, user: str, key: str) -> str:
        return f"{self.prefix}rec:{user}:{key}"

    def _index(self, user: str) -> str:
        return f"{self.prefix}user:{user}"

    def get(self, user: str, key: str) -> dict | None:
        try:
            raw = self.client.get(self._entry(user, key))
        except redis.RedisError:
            return None  # a cache outage costs latency, never an answer
        return json.loads(raw) if raw is not None else None

    def put(self, user: str, key: str, value: dict) -> None:
        entry = self._entry(user, key)
        try:
            with self.client.pipeline() as pipe:
                pipe.set(entry, json.dumps(value), ex=self.ttl_s)
                pipe.sadd(self._index(user), entry)
                pipe.expire(self._index(user), self.ttl_s)
                pipe.execute()
        except redis.RedisError:
            pass

    def invalidate_user(self, user: str) -> int:
        index = self._index(user)
        try:
            keys = self.client.smembers(index)
            with self.client.pipeline() as pipe:
                if keys:
                    pipe.delete(*keys)
                pipe.delete(index)
                pipe.execute()
        except redis.RedisError:
            return 0
        return len(keys)

    def close(self) -> None:
        self.client.close()


def make_cache(
    redis_url: str | None, prefix: str, capacity: int, ttl_s: int
) -> RecommendationCache:
    if redis_url:
        return RedisCache(redis_url, prefix, ttl_s)
    return LRUCache(capacity, ttl_s)
