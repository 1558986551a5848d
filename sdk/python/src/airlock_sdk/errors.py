"""Exceptions raised by the SDK.

Two families matter to an agent:

- :class:`ActionNotPermitted` and its subclasses: Airlock answered, and the answer is that
  the tool must not run (denied, shadowed, rejected, expired, cancelled, revoked, or still
  undecided when the caller stopped waiting). ``str(exc)`` is a short sentence meant for
  the model: it says what happened and, for a rejection, the reviewer's reason.
- :class:`GateUnavailable`: Airlock could not be reached (or kept failing) after retries.
  The SDK fails closed: nothing runs.

:class:`AirlockAPIError` is a request the server refused (bad token, schema error, a report
on an action that is not executable, ...).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airlock_sdk.decision import DecisionBase


class AirlockError(Exception):
    """Base class of every SDK error."""


class GateUnavailable(AirlockError):
    """Airlock could not be reached, or answered with server errors, after all retries.

    The tool did not run (fail closed)."""


class AirlockAPIError(AirlockError):
    """The server refused a request: ``status_code`` and the API's stable ``code``."""

    def __init__(
        self,
        status_code: int,
        code: str,
        detail: str = "",
        fields: dict[str, Any] | None = None,
    ) -> None:
        self.status_code = status_code
        self.code = code
        self.detail = detail
        self.fields = fields or {}
        message = f"HTTP {status_code} {code}: {detail}" if detail else f"HTTP {status_code} {code}"
        if self.fields:
            message += f" {self.fields}"
        super().__init__(message)


class AuthenticationError(AirlockAPIError):
    """401: the token is missing, wrong or revoked."""


class ActionNotPermitted(AirlockError):
    """The tool must not run. ``decision`` is the action as Airlock last reported it;
    ``reason`` is the text to show the model."""

    verdict = "not permitted"

    def __init__(self, decision: DecisionBase, reason: str | None = None) -> None:
        self.decision = decision
        self.reason = reason if reason is not None else _default_reason(decision)
        super().__init__(self.message())

    @property
    def status(self) -> str:
        return self.decision.status

    @property
    def action_id(self) -> int:
        return self.decision.id

    def message(self) -> str:
        text = f"Airlock: the call to {self.decision.tool!r} was {self.verdict}"
        return f"{text}: {self.reason}" if self.reason else f"{text}."


class ActionDenied(ActionNotPermitted):
    """Denied at the gate (forbidden or unknown tool, argument limit, rate limit, tier,
    kill switch, ...). ``reason_code`` is the gate's code."""

    verdict = "denied"

    @property
    def reason_code(self) -> str:
        return self.decision.reason_code


class ActionShadowed(ActionNotPermitted):
    """The agent is in shadow mode for this tool: the call was recorded, never executed."""

    verdict = "recorded in shadow mode and not executed"


class ActionRejected(ActionNotPermitted):
    """A reviewer rejected the call; ``reason`` is their comment (the ``feedback``)."""

    verdict = "rejected by a human reviewer"


class ActionExpired(ActionNotPermitted):
    """Nobody decided before the action expired; expiry is a denial."""

    verdict = "not decided in time (expired)"


class ActionCancelled(ActionNotPermitted):
    """Cancelled while pending: a kill switch stopped it, or the agent withdrew it."""

    verdict = "cancelled"


class ActionRevoked(ActionNotPermitted):
    """A kill switch revoked the approval before the tool ran."""

    verdict = "revoked"


class DecisionTimeout(ActionNotPermitted):
    """Still pending when the caller stopped waiting. The decorator and the adapters
    withdraw the action before raising this."""

    verdict = "not decided within the time the agent waited"


class WebhookVerificationError(AirlockError):
    """A webhook's signature header is missing, malformed, stale or does not match."""


def _default_reason(decision: DecisionBase) -> str:
    if decision.feedback:
        return decision.feedback
    if decision.reasons:
        return "; ".join(str(r) for r in decision.reasons)
    return decision.reason_code or ""


_BY_STATUS: dict[str, type[ActionNotPermitted]] = {
    "denied": ActionDenied,
    "shadowed": ActionShadowed,
    "rejected": ActionRejected,
    "expired": ActionExpired,
    "cancelled": ActionCancelled,
    "revoked": ActionRevoked,
}


def not_permitted_for(decision: DecisionBase) -> ActionNotPermitted:
    """The exception that says why ``decision`` may not run (any non-executable status)."""
    kind = _BY_STATUS.get(decision.status)
    if kind is None:  # executed, failed, rollback states: already reported, never run again
        return ActionNotPermitted(decision, reason=f"the action is already {decision.status}")
    return kind(decision)
