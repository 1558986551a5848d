"""Checks on agent-supplied values, and where outgoing webhooks may connect (SSRF)."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

REFUSED_ADDRESS = (
    "Callback URLs to private, loopback, link-local, multicast or other non-public "
    "addresses are refused."
)

# Never a webhook's destination, whatever ``is_global`` says on this Python: private,
# loopback, link-local, CGNAT, documentation, benchmarking, IETF protocol assignments
# (192.0.0.0/24), the 6to4 relay anycast, multicast, reserved and broadcast; in IPv6 the
# IPv4-compatible block (``::a.b.c.d``, deprecated, and ``::``/``::1``), local-use NAT64,
# discard-only, IETF protocol assignments (Teredo ``2001::/32`` among them), documentation,
# unique-local, link-local, site-local and multicast.
REFUSED_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/96",
        "64:ff9b:1::/48",
        "100::/64",
        "2001::/23",
        "2001:db8::/32",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    )
)
NAT64 = ipaddress.ip_network("64:ff9b::/96")
IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # RFC 2765


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, where connecting to it reaches that
    IPv4 host: IPv4-mapped ``::ffff:a.b.c.d``, IPv4-translated ``::ffff:0:a.b.c.d``, NAT64
    ``64:ff9b::a.b.c.d`` and 6to4 ``2002:aabb:ccdd::``. (Teredo and IPv4-compatible are
    refused outright by ``REFUSED_NETWORKS``.)"""
    if ip.version != 6:
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in IPV4_TRANSLATED or ip in NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def address_problem(ip: IPAddress | str) -> str | None:
    """Why a webhook may not connect to ``ip``, or None for a public unicast address.

    An IPv6 address wrapping an IPv4 one (``embedded_ipv4``) is judged by the IPv4 address
    it reaches; every other address must be global and outside ``REFUSED_NETWORKS``. Pure:
    no resolution, no connection."""
    if isinstance(ip, str):
        try:
            ip = ipaddress.ip_address(ip.split("%")[0])
        except ValueError:
            return "The callback address is not an IP address."
    inner = embedded_ipv4(ip)
    if inner is not None:
        return address_problem(inner)
    if any(ip in network for network in REFUSED_NETWORKS if network.version == ip.version):
        return REFUSED_ADDRESS
    if (
        not ip.is_global
        or ip.is_private
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_unspecified
        or getattr(ip, "is_site_local", False)
    ):
        return REFUSED_ADDRESS
    return None


def resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to (one look-up; tests patch this function)."""
    return sorted({info[4][0] for info in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)})


def default_port(parts) -> int:
    return parts.port or (443 if parts.scheme == "https" else 80)


def callback_url_problem(url: str) -> str | None:
    """Why ``url`` may not receive webhooks, or None. Only http/https whose host resolves
    to public addresses only (``address_problem``), unless the host is in
    ``WEBHOOK_ALLOWED_HOSTS``. Delivery checks again (``approvals.webhooks.post_webhook``):
    a name may resolve elsewhere by then."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"}:
        return "Only http and https callback URLs are accepted."
    try:
        host = parts.hostname or ""
        port = default_port(parts)
    except ValueError:
        return "The callback URL's port is not valid."
    if not host:
        return "The callback URL has no host."
    if host in settings.WEBHOOK_ALLOWED_HOSTS:
        return None
    try:
        addresses = resolve(host, port)
    except (OSError, UnicodeError):
        return "The callback URL's host does not resolve."
    if not addresses:
        return "The callback URL's host does not resolve."
    for address in addresses:
        problem = address_problem(address)
        if problem:
            return problem
    return None
