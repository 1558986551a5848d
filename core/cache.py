"""One Redis connection pool per process for the cache, and one Redis client per process
for code that talks to Redis directly (the agent throttle).

Django keeps cache objects per async context, so under ASGI each request would build a new
``RedisCache`` with a new pool and a new TCP connection for every cache call.
``SharedConnectionPool`` hands every cache object of the process the same pool."""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings
from redis import ConnectionPool, Redis

_pools: dict[tuple, ConnectionPool] = {}
_lock = threading.Lock()


class SharedConnectionPool(ConnectionPool):
    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> ConnectionPool:  # type: ignore[override]
        key = (url, tuple(sorted((k, repr(v)) for k, v in kwargs.items())))
        with _lock:
            pool = _pools.get(key)
            if pool is None:
                pool = _pools[key] = super().from_url(url, **kwargs)
        return pool


_clients: dict[str, Redis] = {}


def redis_client() -> Redis | None:
    """The process's client for ``REDIS_URL`` (None without Redis). Thread-safe; its pool
    notices a fork and reconnects in the child."""
    url = settings.REDIS_URL
    if not url:
        return None
    with _lock:
        client = _clients.get(url)
        if client is None:
            client = _clients[url] = Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    return client
