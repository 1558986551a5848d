"""Where a page may send a person next: one check for every ``next`` in the project."""

from __future__ import annotations

from django.http import HttpRequest
from django.utils.http import url_has_allowed_host_and_scheme


def safe_redirect_target(request: HttpRequest, target: str | None, fallback: str) -> str:
    """``target`` when it stays on this site, else ``fallback`` (a path or URL Airlock built).

    Refused: another host (``https://evil.example/``), scheme-relative (``//evil.example``),
    backslash tricks browsers read as a host (``/\\evil.example``), any scheme but http(s)
    (``javascript:``), and plain http from a secure request. Django's
    ``url_has_allowed_host_and_scheme`` decides; this keeps the call the same everywhere."""
    target = (target or "").strip()
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return fallback


def next_target(request: HttpRequest, fallback: str) -> str:
    """The request's ``next`` (POST, then the query string), if safe; else ``fallback``."""
    return safe_redirect_target(
        request, request.POST.get("next") or request.GET.get("next"), fallback
    )
