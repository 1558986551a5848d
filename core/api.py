"""The API's base view and its flood limits: what every API view of every app shares.

Authentication comes from ``REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"]`` (the settings
compose the agents' bearer tokens, people's personal tokens and the session), so this bottom
layer names no app."""

from __future__ import annotations

import logging
import time
from typing import Any

from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle
from rest_framework.views import APIView

from core.api_errors import ApiError
from core.cache import redis_client
from core.people import is_agent

logger = logging.getLogger(__name__)


class ResilientThrottle(SimpleRateThrottle):
    """HTTP flood limits live in the cache (Redis in production). When the cache is
    unreachable the request is let through: the gate's own rate limit (read from the
    database) and every decision rule still apply, so availability wins here."""

    def allow_request(self, request: Request, view: Any) -> bool:
        try:
            return super().allow_request(request, view)
        except Exception:
            logger.warning("throttle cache unavailable; not throttling", exc_info=True)
            return True


class _CachedAgentRateThrottle(ResilientThrottle):
    """DRF's sliding window in Django's cache: the agent throttle without Redis."""

    scope = "agent"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        return f"throttle_agent_{request.user.agent.pk}"


_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}  # as DRF's rate strings


class AgentRateThrottle(BaseThrottle):
    """HTTP-level flood protection per agent token (the gate's own per-agent rate limit is
    a policy rule answered with ``denied/rate_limited``).

    With Redis, a fixed window counted by one pipelined ``INCR`` + ``EXPIRE`` on the
    process's Redis client: one round trip per call, where DRF's ``SimpleRateThrottle``
    reads and rewrites a pickled list of every request in the window, through a client
    object Django's cache builds per command. A fixed window may let up to twice the rate
    through around a window boundary, which is fine for flood protection. Without Redis,
    DRF's throttle on the local cache. When Redis is unreachable the request is let through,
    as ``ResilientThrottle`` does."""

    scope = "agent"

    def __init__(self) -> None:
        self._wait: float | None = None
        self._fallback: _CachedAgentRateThrottle | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        if not is_agent(request.user):
            return True
        client = redis_client()
        if client is None:
            self._fallback = _CachedAgentRateThrottle()
            return self._fallback.allow_request(request, view)
        count, period = api_settings.DEFAULT_THROTTLE_RATES[self.scope].split("/")
        duration = _PERIODS[period[0]]
        now = time.time()
        window = int(now // duration)
        key = f"throttle_agent_{request.user.agent.pk}_{window}"
        try:
            pipe = client.pipeline(transaction=False)
            pipe.incr(key)
            pipe.expire(key, duration + 1)
            calls, _ = pipe.execute()
        except Exception:
            logger.warning("throttle cache unavailable; not throttling", exc_info=True)
            return True
        self._wait = (window + 1) * duration - now
        return calls <= int(count)

    def wait(self) -> float | None:
        if self._fallback is not None:
            return self._fallback.wait()
        return self._wait


class PersonRateThrottle(ResilientThrottle):
    scope = "person"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        user = request.user
        if user and user.is_authenticated and not is_agent(user):
            return f"throttle_person_{user.pk}"
        return None


class AirlockAPIView(APIView):
    """Every API view's base: the settings' authenticators (agents' ``alk_`` bearer tokens
    first, so DRF answers 401 rather than 403 to a bad bearer; people's ``alp_`` personal
    tokens; the session) and both flood limits."""

    throttle_classes = [AgentRateThrottle, PersonRateThrottle]


def valid_body(serializer_class: type, request: Request) -> dict:
    """The request's JSON object body validated by ``serializer_class``: ``400 invalid`` for
    a body that is not an object, the serializer's field errors otherwise."""
    if not isinstance(request.data, dict):
        raise ApiError(400, "invalid", "The body must be a JSON object.")
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data
