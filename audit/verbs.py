"""Every audit verb, registered once with a human description (Sentry's pattern): the
audit page, the trace and the tests read names from here, never from string literals."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Verb:
    name: str
    template: str


VERBS: dict[str, Verb] = {}


def register(name: str, template: str) -> str:
    if name in VERBS:
        raise ValueError(f"audit verb {name!r} registered twice")
    VERBS[name] = Verb(name, template)
    return name


# Gate and action lifecycle
ACTION_SUBMITTED = register("action.submitted", "{actor} asked to run {target}")
ACTION_APPROVAL_RECORDED = register("action.approval_recorded", "{actor} approved {target}")
ACTION_APPROVED = register("action.approved", "{target} reached its approval quorum")
ACTION_REJECTED = register("action.rejected", "{actor} rejected {target}")
ACTION_EDITED = register("action.edited", "{actor} edited the arguments of {target}")
ACTION_WITHDRAWN = register("action.withdrawn", "{actor} withdrew {target}")
ACTION_EXPIRED = register("action.expired", "{target} expired undecided")
ACTION_CANCELLED = register("action.cancelled", "{target} was cancelled")
ACTION_REVOKED = register("action.revoked", "{target}'s grant was revoked")
ACTION_EXECUTED = register("action.executed", "{actor} reported {target} executed")
ACTION_FAILED = register("action.failed", "{actor} reported {target} failed")
ACTION_ROLLBACK_REQUESTED = register(
    "action.rollback_requested", "{actor} asked to roll back {target}"
)
ACTION_ROLLED_BACK = register("action.rolled_back", "{actor} reported {target} rolled back")
ACTION_ROLLBACK_FAILED = register(
    "action.rollback_failed", "{actor} reported {target}'s rollback failed"
)
ACTION_VIEWED = register("action.viewed", "{actor} viewed {target}")

# Governance and access
AGENT_REGISTERED = register("agent.registered", "{actor} registered {target}")
AGENT_TOKEN_ISSUED = register("agent.token_issued", "{actor} issued a token for {target}")
AGENT_TOKEN_REVOKED = register("agent.token_revoked", "{actor} revoked a token of {target}")
POLICY_VERSION_CREATED = register(
    "policy.version_created", "{actor} created policy version {target}"
)

# Incidents
KILL_SWITCH_ENGAGED = register("kill_switch.engaged", "{actor} engaged kill switch {target}")
KILL_SWITCH_RELEASED = register("kill_switch.released", "{actor} released kill switch {target}")

CIRCUIT_BREAKER_TRIPPED = register(
    "circuit_breaker.tripped", "circuit breaker tripped for {target}"
)
AGENT_DEMOTED = register("agent.demoted", "{actor} demoted {target}")
DRILL_COMPLETED = register("drill.completed", "{actor} ran a kill-switch drill on {target}")

# The log itself
AUDIT_CHECKPOINT = register("audit.checkpoint", "checkpoint of every chain partition")
