"""The public half of the grant keys, for tool services that verify grants offline."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_safe

from grants.keys import SIGNING_KEY_CACHE_SECONDS, key_set


@require_safe
def grant_key_set(request: HttpRequest) -> JsonResponse:
    """``GET /.well-known/airlock-grant-keys.json``: the JWK set (public keys only; no login —
    a tool service has no Airlock session). Cacheable briefly: a rotated-in key appears
    within the cache time, and the retired key stays published longer than that."""
    response = JsonResponse(key_set())
    response["Cache-Control"] = f"public, max-age={int(SIGNING_KEY_CACHE_SECONDS)}"
    return response
