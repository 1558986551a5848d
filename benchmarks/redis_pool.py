"""Prototype of the proposed fix for Redis connections under ASGI: Django keeps cache
objects per async context, so each request builds a new ``RedisCache``, a new connection
pool and a new TCP connection (plus redis-py's CLIENT SETINFO round trips) for the
throttle's two commands. This pool class hands every cache object of the process the same
pool. Used only with ``AIRLOCK_BENCH_SHARED_REDIS=1`` (benchmarks/settings.py), through
``CACHES["default"]["OPTIONS"]["pool_class"]``."""

from __future__ import annotations

import threading

from redis import ConnectionPool

_pools: dict[tuple, ConnectionPool] = {}
_lock = threading.Lock()


class SharedConnectionPool(ConnectionPool):
    @classmethod
    def from_url(cls, url: str, **kwargs):  # type: ignore[override]
        key = (url, tuple(sorted((k, repr(v)) for k, v in kwargs.items())))
        with _lock:
            pool = _pools.get(key)
            if pool is None:
                pool = _pools[key] = super().from_url(url, **kwargs)
        return pool
