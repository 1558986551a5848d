"""Verify Airlock execution grants in the service that runs a tool (``airlock-sdk[grants]``).

Every ``allowed`` or ``approved`` action carries a ``grant``: a JWS compact token signed by
Airlock (EdDSA / Ed25519) that binds the action to one tool, the canonical hash of its exact
arguments, an environment and an expiry. A tool service that checks it refuses anything
Airlock did not let through — a call made without asking, another action's grant, edited
arguments, a grant for staging presented in production, a stale one::

    from airlock_sdk.grants import RemoteKeySet, verify

    keys = RemoteKeySet("https://airlock.example.com/.well-known/airlock-grant-keys.json")
    grant = verify(token, tool="send_email", arguments=body, env="production", keys=keys)

``verify`` works offline (once the key set is fetched). It cannot tell a first use from a
replay across replicas: for once-only use, rely on the execution report (Airlock refuses a
second one) or ask ``POST /api/v1/grants/verify`` with ``consume: true``.

Errors are :class:`GrantRejected` with a stable ``code``: ``malformed``, ``unknown_key``,
``bad_signature``, ``expired``, ``wrong_issuer``, ``wrong_tool``, ``wrong_arguments``,
``wrong_environment``; the middleware adds ``grant_required``.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

try:
    import jwt
except ImportError as exc:  # pragma: no cover - depends on the extra being installed
    raise ImportError(
        "airlock_sdk.grants needs PyJWT with cryptography: pip install 'airlock-sdk[grants]'"
    ) from exc

import httpx

from airlock_sdk.canonical import payload_hash
from airlock_sdk.errors import AirlockError

ALGORITHM = "EdDSA"
GRANT_HEADER = "Airlock-Grant"
_CLAIMS = ("iss", "jti", "sub", "agent", "tool", "payload_hash", "obo", "env", "pv", "iat", "exp")
# PyJWT's "require" treats a null claim as missing; ``obo``, ``env`` and ``pv`` may be null,
# so their presence is checked separately.
_NEVER_NULL = ("iss", "jti", "sub", "agent", "tool", "payload_hash", "iat", "exp")


class GrantRejected(AirlockError):
    """The grant does not allow this call; ``code`` says why (stable, for logs and answers)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Grant:
    """What a verified grant allows."""

    action_id: int
    agent: str
    tool: str
    payload_hash: str
    on_behalf_of: str | None
    environment: str | None
    policy_version: int | None
    issuer: str
    grant_id: str
    key_id: str
    issued_at: int
    expires_at: int
    token: str


class KeySet:
    """Public keys by key id, from a JWK set (``{"keys": [...]}``)."""

    def __init__(self, jwks: Mapping[str, Any]) -> None:
        self._keys: dict[str, Any] = {}
        for entry in jwks.get("keys", []):
            if entry.get("kty") == "OKP" and entry.get("crv") == "Ed25519" and entry.get("kid"):
                self._keys[entry["kid"]] = jwt.PyJWK(dict(entry), algorithm=ALGORITHM).key

    def key(self, kid: str) -> Any | None:
        return self._keys.get(kid)


class RemoteKeySet(KeySet):
    """The key set at Airlock's ``/.well-known/airlock-grant-keys.json``, fetched on first
    use, refreshed every ``refresh_seconds`` and when an unknown key id appears (a rotation),
    at most once per ``min_refetch_seconds`` so forged key ids cannot hammer Airlock."""

    def __init__(
        self,
        url: str,
        *,
        refresh_seconds: float = 300.0,
        min_refetch_seconds: float = 10.0,
        client: httpx.Client | None = None,
    ) -> None:
        super().__init__({})
        self.url = url
        self.refresh_seconds = refresh_seconds
        self.min_refetch_seconds = min_refetch_seconds
        self._client = client
        self._fetched_at: float | None = None
        self._lock = threading.Lock()

    def _fetch(self) -> None:
        client = self._client or httpx.Client(timeout=10.0)
        try:
            response = client.get(self.url)
            response.raise_for_status()
            fresh = KeySet(response.json())
        finally:
            if self._client is None:
                client.close()
        self._keys = fresh._keys
        self._fetched_at = time.monotonic()

    def key(self, kid: str) -> Any | None:
        with self._lock:
            now = time.monotonic()
            age = None if self._fetched_at is None else now - self._fetched_at
            stale = age is None or age >= self.refresh_seconds
            # An unknown key id may be a rotation: look again, but not more than this often.
            rotated = age is not None and kid not in self._keys and age >= self.min_refetch_seconds
            if stale or rotated:
                self._fetch()
            return self._keys.get(kid)


def verify(
    grant: str,
    *,
    tool: str,
    arguments: Any,
    env: str | None = None,
    keys: KeySet,
    issuer: str | None = None,
    leeway: float = 0,
) -> Grant:
    """Prove that ``grant`` lets this service run ``tool`` with exactly ``arguments`` in
    environment ``env`` now: authentic (signed by a key in ``keys``), bound (tool, the
    canonical hash of ``arguments``, the environment; the issuer when given) and unexpired.
    Raises :class:`GrantRejected`; returns what the grant allows."""
    if not isinstance(grant, str) or grant.count(".") != 2:
        raise GrantRejected("malformed", "not a grant (a JWS compact token has three parts)")
    try:
        header = jwt.get_unverified_header(grant)
    except jwt.PyJWTError as exc:
        raise GrantRejected("malformed", "not a grant (its header does not decode)") from exc
    kid = header.get("kid")
    if header.get("alg") != ALGORITHM or not isinstance(kid, str):
        raise GrantRejected("malformed", "not a grant (must be EdDSA-signed and name its key)")
    public = keys.key(kid)
    if public is None:
        raise GrantRejected("unknown_key", f"grant signed with an unknown key ({kid!r})")
    try:
        claims = jwt.decode(
            grant,
            public,
            algorithms=[ALGORITHM],
            leeway=leeway,
            options={"require": list(_NEVER_NULL), "verify_aud": False},
        )
    except jwt.ExpiredSignatureError as exc:
        raise GrantRejected("expired", "the grant has expired") from exc
    except jwt.InvalidSignatureError as exc:
        raise GrantRejected("bad_signature", "the grant's signature does not hold") from exc
    except jwt.PyJWTError as exc:
        raise GrantRejected("malformed", f"not a grant: {exc}") from exc
    missing = [name for name in _CLAIMS if name not in claims]
    if missing:
        raise GrantRejected("malformed", f"not a grant: missing {', '.join(missing)}")
    if issuer is not None and claims["iss"] != issuer:
        raise GrantRejected("wrong_issuer", f"grant issued by {claims['iss']!r}, not {issuer!r}")
    if claims["tool"] != tool:
        raise GrantRejected("wrong_tool", f"grant is for tool {claims['tool']!r}, not {tool!r}")
    if claims["payload_hash"] != payload_hash(arguments):
        raise GrantRejected(
            "wrong_arguments", "the arguments differ from the ones Airlock allowed or approved"
        )
    if claims["env"] != env:
        raise GrantRejected(
            "wrong_environment",
            f"grant is for environment {claims['env']!r}, this service runs in {env!r}",
        )
    return Grant(
        action_id=int(claims["sub"]),
        agent=claims["agent"],
        tool=claims["tool"],
        payload_hash=claims["payload_hash"],
        on_behalf_of=claims["obo"],
        environment=claims["env"],
        policy_version=claims["pv"],
        issuer=claims["iss"],
        grant_id=claims["jti"],
        key_id=kid,
        issued_at=int(claims["iat"]),
        expires_at=int(claims["exp"]),
        token=grant,
    )


def _token_from(headers: Mapping[str, str]) -> str | None:
    token = headers.get(GRANT_HEADER.lower())
    return token.strip() if token else None


class OnlineCheck:
    """Airlock's online grant check (``POST /api/v1/grants/verify`` with a service token):
    what an offline ``verify`` cannot prove — that the grant was not revoked since (a kill
    switch) and, with ``consume``, that no replica of this service used it before."""

    def __init__(
        self,
        airlock_url: str,
        service_token: str,
        *,
        timeout: float = 10.0,
        client: httpx.Client | None = None,
    ) -> None:
        self.url = airlock_url.rstrip("/") + "/api/v1/grants/verify"
        self._headers = {"Authorization": f"Bearer {service_token}"}
        self._client = client or httpx.Client(timeout=timeout)

    def check(self, grant: str, *, consume: bool = True) -> None:
        """Raise :class:`GrantRejected` unless Airlock answers ``ok`` (fails closed: an
        unreachable Airlock is ``airlock_unavailable``)."""
        try:
            response = self._client.post(
                self.url, json={"grant": grant, "consume": consume}, headers=self._headers
            )
        except httpx.HTTPError as exc:
            raise GrantRejected("airlock_unavailable", f"Airlock unreachable: {exc}") from exc
        if response.status_code != 200:
            raise GrantRejected(
                "airlock_unavailable", f"Airlock answered {response.status_code} to the check"
            )
        answer = response.json()
        if not answer.get("valid"):
            raise GrantRejected(answer.get("code", "invalid"), answer.get("detail", "refused"))


ASGIApp = Callable[
    [dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]
]


class GrantMiddleware:
    """ASGI middleware for a tool service: a POST to one of ``tools`` (path → tool name)
    runs only with an ``Airlock-Grant`` header whose grant allows that tool with exactly the
    request's JSON body as arguments (and, with ``online``, that Airlock says it is neither
    revoked nor used: each grant runs once across every replica); otherwise 403
    ``{"code": …, "detail": …}`` and the app never sees the request. The verified :class:`Grant` is in ``scope["airlock.grant"]``.
    Other paths pass through untouched."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        tools: Mapping[str, str],
        keys: KeySet,
        env: str | None = None,
        issuer: str | None = None,
        online: OnlineCheck | None = None,
        max_body_bytes: int = 1_048_576,
    ) -> None:
        self.app = app
        self.online = online
        self.tools = dict(tools)
        self.keys = keys
        self.env = env
        self.issuer = issuer
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope.get("path") not in self.tools:
            await self.app(scope, receive, send)
            return
        tool = self.tools[scope["path"]]
        if scope.get("method") != "POST":
            await _answer(send, 405, "method_not_allowed", "tools are called with POST")
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body_bytes:
                await _answer(send, 413, "body_too_large", "request body too large")
                return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            # The online check is a blocking HTTP call: off the event loop.
            grant = await asyncio.to_thread(self._verified, headers, tool, body)
        except GrantRejected as exc:
            await _answer(send, 403, exc.code, str(exc))
            return
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if replayed:
                return {"type": "http.request", "body": b"", "more_body": False}
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app({**scope, "airlock.grant": grant}, replay, send)

    def _verified(self, headers: Mapping[str, str], tool: str, body: bytes) -> Grant:
        token = _token_from(headers)
        if not token:
            raise GrantRejected("grant_required", f"calling {tool} needs an Airlock grant")
        try:
            arguments = json.loads(body or b"null")
        except ValueError as exc:
            raise GrantRejected("malformed", "the request body is not JSON") from exc
        grant = verify(
            token, tool=tool, arguments=arguments, env=self.env, keys=self.keys, issuer=self.issuer
        )
        if self.online is not None:
            self.online.check(token, consume=True)
        return grant


async def _answer(send: Callable, status: int, code: str, detail: str) -> None:
    payload = json.dumps({"code": code, "detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
