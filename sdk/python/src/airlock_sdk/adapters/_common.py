"""What the adapters share: picking the sync or async client, and the text a model sees
when a call did not run."""

from __future__ import annotations

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
