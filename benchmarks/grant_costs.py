"""What execution grants cost, in CPU time per grant, run once in its own process against
the benchmark's throwaway database (after ``migrate`` and ``seed_demo``):
``python -m benchmarks.grant_costs CALLS``. Prints one JSON object; ``benchmarks/gate.py``
reports it beside the gate's measured server+PostgreSQL CPU per call.

- ``sign_us``: the gate's added work per ``allowed``/``approved`` call — building the claims
  and ``grants.tokens.sign_grant`` (Ed25519 under the cached signing key), as
  ``approvals.actions._issue_grant`` does; the signing key is loaded once before timing,
  as the server caches it.
- ``verify_us`` per payload size: what a tool service spends per call in
  ``airlock_sdk.grants.verify`` (offline: signature, tool, canonical payload hash,
  environment, expiry) with a ``KeySet`` built from the published key set.
- ``hash_us``: the part of ``verify`` that hashes the canonical JSON of the arguments (it
  grows with the payload; the signature check does not); ``ed25519_verify_us``: the bare
  signature check (``cryptography``), the floor under any JOSE library's ``verify``.

Times are CPU time (``time.process_time``), so another process on the machine does not
inflate them; each is the median of five rounds of ``CALLS`` calls.
"""

from __future__ import annotations

import base64
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SDK_SRC = ROOT / "sdk" / "python" / "src"
if str(SDK_SRC) not in sys.path:
    sys.path.insert(0, str(SDK_SRC))

ROUNDS = 5

# What a tool service is handed: the benchmark's read call, and an email with a 2 KiB body
# and 20 recipients (a larger payload, so the hashing share shows).
PAYLOADS = {
    "small": {"order_id": "A-1001"},
    "2 KiB": {
        "to": [f"customer{i}@example.com" for i in range(20)],
        "subject": "Your refund is on its way",
        "body": "Dear customer, " + "we have processed your refund. " * 68,
    },
}


def cpu_us_per_call(function: Callable[[], object], calls: int) -> float:
    """The median over ``ROUNDS`` of the CPU microseconds one call of ``function`` takes."""
    rounds = []
    for _ in range(ROUNDS):
        started = time.process_time()
        for _ in range(calls):
            function()
        rounds.append((time.process_time() - started) * 1e6 / calls)
    return statistics.median(rounds)


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
    import django

    import config  # noqa: F401  (before the settings: see MANAGE in benchmarks/gate.py)

    django.setup()
    from airlock_sdk.canonical import payload_hash
    from airlock_sdk.grants import KeySet, verify

    from audit.installation import installation_id
    from grants.keys import key_set, signing_key
    from grants.tokens import sign_grant

    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    signing_key()  # the first grant makes the first key; the server caches it
    issuer = installation_id()
    now = int(time.time())

    def claims_for(arguments: dict) -> dict:
        return {
            "iss": issuer,
            "jti": uuid.uuid4().hex,
            "sub": "1234567",
            "agent": "support-assistant",
            "tool": "get_order_status",
            "payload_hash": payload_hash(arguments),
            "obo": None,
            "env": "production",
            "pv": 2,
            "iat": now,
            "exp": now + 300,
        }

    small = PAYLOADS["small"]
    figures: dict[str, object] = {
        "calls": calls,
        "sign_us": cpu_us_per_call(lambda: sign_grant(claims_for(small)), calls),
    }
    keys = KeySet(key_set())
    token = sign_grant(claims_for(small))
    signed, _, signature = token.rpartition(".")
    public = keys.key(signing_key()[0])
    raw_signature = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    figures["ed25519_verify_us"] = cpu_us_per_call(
        lambda: public.verify(raw_signature, signed.encode()), calls
    )
    verify_us, hash_us, token_bytes = {}, {}, {}
    for name, arguments in PAYLOADS.items():
        token = sign_grant(claims_for(arguments))
        token_bytes[name] = len(token)

        def check(token: str = token, arguments: dict = arguments) -> None:
            verify(token, tool="get_order_status", arguments=arguments, env="production", keys=keys)

        check()  # a wrong binding raises here, before anything is timed
        verify_us[name] = cpu_us_per_call(check, calls)
        hash_us[name] = cpu_us_per_call(lambda a=arguments: payload_hash(a), calls)
    figures.update(
        verify_us=verify_us,
        hash_us=hash_us,
        token_bytes=token_bytes,
        payload_bytes={name: len(json.dumps(a)) for name, a in PAYLOADS.items()},
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
