"""The recommendation cache: in-process LRU, and real Redis under a unique key prefix."""

from __future__ import annotations

import uuid

import pytest
import redis

from web.cache import LRUCache, RedisCache, cache_key

REDIS_URL = "redis://127.0.0.1:6379/0"
ANSWER = {"model": "sae", "version": "v1", "recommendations": []}


def test_key_depends_on_model_version_and_ratings_not_their_order():
    key = cache_key("sae", "v1", {50: 5, 1: 4}, 10, None)
    assert key == cache_key("sae", "v1", {1: 4, 50: 5}, 10, None)
    assert key != cache_key("rbm", "v1", {50: 5, 1: 4}, 10, None)
    assert key != cache_key("sae", "v2", {50: 5, 1: 4}, 10, None)
    assert key != cache_key("sae", "v1", {50: 4, 1: 4}, 10, None)
    assert key != cache_key("sae", "v1", {50: 5, 1: 4}, 20, None)
    assert cache_key("hybrid", "v", {}, 10, {"sae": 1.0}) != cache_key("hybrid", "v", {}, 10, None)


def test_lru_evicts_the_least_recent_and_invalidates_a_user():
    cache = LRUCache(capacity=2, ttl_s=60)
    cache.put("alice", "a", ANSWER)
    cache.put("bob", "b", ANSWER)
    assert cache.get("alice", "a") == ANSWER  # alice's entry is now the most recent
    cache.put("carol", "c", ANSWER)
    assert cache.get("bob", "b") is None and len(cache) == 2
    assert cache.invalidate_user("alice") == 1
    assert cache.get("alice", "a") is None and cache.get("carol", "c") == ANSWER


def test_lru_entries_expire():
    cache = LRUCache(capacity=10, ttl_s=60)
    cache.ttl_s = -1  # already expired when stored
    cache.put("alice", "a", ANSWER)
    assert cache.get("alice", "a") is None


@pytest.fixture
def redis_cache():
    prefix = f"movierec-test-{uuid.uuid4().hex[:8]}:"
    cache = RedisCache(REDIS_URL, prefix, ttl_s=60)
    yield cache
    keys = list(cache.client.scan_iter(f"{prefix}*"))
    if keys:
        cache.client.delete(*keys)
    cache.close()


def test_redis_round_trip_and_user_invalidation(redis_cache):
    redis_cache.put("alice", "k1", ANSWER)
    redis_cache.put("alice", "k2", ANSWER)
    redis_cache.put("bob", "k1", ANSWER)
    assert redis_cache.get("alice", "k1") == ANSWER
    assert 0 < redis_cache.client.ttl(f"{redis_cache.prefix}rec:alice:k1") <= 60
    assert redis_cache.invalidate_user("alice") == 2
    assert redis_cache.get("alice", "k2") is None and redis_cache.get("bob", "k1") == ANSWER


def test_redis_outage_falls_back_to_the_in_process_cache(caplog):
    cache = RedisCache("redis://127.0.0.1:1/0", "x:", ttl_s=60)
    cache.put("alice", "k", ANSWER)
    assert cache.is_down
    assert cache.get("alice", "k") == ANSWER  # from the in-process fallback, no error
    assert cache.invalidate_user("alice") == 1
    warnings = [r for r in caplog.records if "Redis cache unreachable" in r.getMessage()]
    assert len(warnings) == 1  # one per outage, not one per request


def test_the_app_caches_in_redis_and_a_rating_invalidates(web_app_factory, redis_cache):
    app = web_app_factory(redis_url=REDIS_URL, cache_prefix=redis_cache.prefix)
    client = app.test_client()
    htmx = {"HX-Request": "true"}
    client.post("/ratings", data={"movie_id": 50, "rating": 5}, headers=htmx)
    client.get("/recommendations?model=sae", headers=htmx)
    assert "cached" in client.get("/recommendations?model=sae", headers=htmx).text
    entries = list(redis_cache.client.scan_iter(f"{redis_cache.prefix}rec:*"))
    assert len(entries) == 1
    client.post("/ratings", data={"movie_id": 1, "rating": 4}, headers=htmx)
    assert not list(redis_cache.client.scan_iter(f"{redis_cache.prefix}rec:*"))
    # Flask-Limiter shares the Redis too (its keys under the same prefix).
    assert isinstance(redis_cache.client, redis.Redis)


def test_lru_user_index_follows_evictions_and_expiry():
    cache = LRUCache(capacity=3, ttl_s=60)
    for key in ("a1", "a2", "a3"):
        cache.put("alice", key, ANSWER)
    cache.put("bob", "b1", ANSWER)  # evicts alice's oldest entry
    assert cache.get("alice", "a1") is None
    cache.ttl_s = -1
    cache.put("bob", "b2", ANSWER)  # evicts a2; b2 is stored already expired
    assert cache.get("bob", "b2") is None  # dropped on read
    assert cache.invalidate_user("alice") == 1  # only a3 was still there
    assert cache.invalidate_user("bob") == 1  # b1
    assert len(cache) == 0 and cache.invalidate_user("carol") == 0
