"""One Redis connection pool per process for the cache.

Django keeps cache objects per async context, so under ASGI each request would build a new
``RedisCache`` with a new pool and a new TCP connection for the throttle's two commands.
This pool class hands every cache object of the process the same pool."""

from __future__ import annotations

import threading
from typing import Any

from redis import ConnectionPool

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
