"""What the adapters share: picking the sync or async client, and the text a model sees
when a call did not run."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from airlock_sdk.aio import AsyncAirlock
from airlock_sdk.client import Airlock
from airlock_sdk.errors import ActionNotPermitted, AirlockError, GateUnavailable


def sync_client(client: Airlock | AsyncAirlock | None) -> Airlock:
    if client is None:
        from airlock_sdk import default_client

        return default_client()
    return client.sync_twin() if isinstance(client, AsyncAirlock) else client


def async_client(client: Airlock | AsyncAirlock | None) -> AsyncAirlock:
    if client is None:
        from airlock_sdk import default_client

        return default_client().async_twin()
    return client.async_twin() if isinstance(client, Airlock) else client


# Printable ASCII without spaces: safe as an Idempotency-Key and as a correlation id (the
# server refuses invisible and control characters in both).
_PLAIN = re.compile(r"[\x21-\x7e]+")


def stable_id(text: str, limit: int) -> str:
    """``text`` if it is plain and at most ``limit`` characters, else a digest of it."""
    if len(text) <= limit and _PLAIN.fullmatch(text):
        return text
    return "sha256-" + hashlib.sha256(text.encode()).hexdigest()[: max(16, limit - 7)]


def replay_key(framework: str, conversation: Any, call_id: Any) -> str | None:
    """An ``Idempotency-Key`` that survives a resume: the framework's conversation id (a
    LangGraph ``thread_id``, an Agents run id, an MCP session) plus the tool call's id.
    ``None`` (a fresh key per submission) when either is missing: a call id alone is not
    unique across conversations, and a per-invocation id would defeat the replay check."""
    if conversation in (None, "") or call_id in (None, ""):
        return None
    return stable_id(f"{framework}:{conversation}:{call_id}", 200)


def correlation_for(conversation: Any) -> str | None:
    """The conversation's id as a ``correlation_id`` (at most 80 plain characters)."""
    if conversation in (None, ""):
        return None
    return stable_id(str(conversation), 80)


def recorded_text(decision: Any) -> str:
    """What a replayed call tells the model: the result recorded when the tool ran."""
    result = decision.result
    if result is None:
        return f"Airlock: this call already ran (action {decision.id}); its result was not kept."
    return result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)


def message_for_model(tool: str, exc: AirlockError) -> str:
    """What to tell the model instead of a tool result. A refusal is an answer to reason
    about (``str(exc)`` carries the reviewer's reason); an unreachable gate is not a
    verdict, so the model is told the call did not run and may be retried later."""
    if isinstance(exc, ActionNotPermitted):
        return str(exc)
    if isinstance(exc, GateUnavailable):
        return (
            f"Airlock: the call to {tool!r} did not run because the approval service "
            "could not be reached. Nothing was executed; try again later."
        )
    return f"Airlock: the call to {tool!r} did not run: {exc}"


def json_arguments(values: dict[str, Any]) -> dict[str, Any]:
    """Tool inputs as JSON (pydantic models dumped in JSON mode)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        dump = getattr(value, "model_dump", None)
        out[key] = dump(mode="json") if callable(dump) else value
    return out
