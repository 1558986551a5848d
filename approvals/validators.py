"""Checks on agent-supplied values."""

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings


def callback_url_problem(url: str) -> str | None:
    """Why ``url`` may not receive webhooks, or None. Only http/https to public addresses,
    unless the host is in ``WEBHOOK_ALLOWED_HOSTS`` (SSRF)."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"}:
        return "Only http and https callback URLs are accepted."
    host = parts.hostname or ""
    if not host:
        return "The callback URL has no host."
    if host in settings.WEBHOOK_ALLOWED_HOSTS:
        return None
    try:
        addresses = {
            info[4][0]
            for info in socket.getaddrinfo(host, parts.port or 443, proto=socket.IPPROTO_TCP)
        }
    except (socket.gaierror, UnicodeError):
        return "The callback URL's host does not resolve."
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if not ip.is_global:
            return "Callback URLs to private, loopback or link-local addresses are refused."
    return None
