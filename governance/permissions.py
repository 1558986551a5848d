"""Who may read, keep and retire an agent's regression cases (``governance.cases``),
built on the per-agent rights of ``rollout.permissions``. Pages, the command's callers and
the write path all ask here.

- read: whoever may read the agent's governance (its governors and auditors) and its
  incident owners (the people who keep cases from an incident); a case's request (its
  masked arguments) only those who may read the agent's actions — its reviewers and
  auditors — as everywhere else;
- keep: its governors; its incident owners too, for an action a kill switch stopped,
  kept from that switch's page;
- retire: its governors."""

from __future__ import annotations

from typing import Any

from governance.selectors import can_read_governance
from rollout import permissions as agent_perms
from rollout.models import Agent


def can_read_cases(user: Any, agent: Agent) -> bool:
    return can_read_governance(user, agent) or agent_perms.can_kill(user, agent)


def can_read_case_requests(user: Any, agent: Agent) -> bool:
    """The stored request of a case is an action's content: for those who read actions."""
    return agent_perms.can_review(user, agent) or agent_perms.can_read_audit(user, agent)


def can_keep_case(user: Any, agent: Agent, *, from_incident: bool = False) -> bool:
    """``from_incident``: the action was stopped by the kill switch it is kept from (the
    caller checked that)."""
    if agent_perms.can_govern(user, agent):
        return True
    return from_incident and agent_perms.can_kill(user, agent)


def can_retire_case(user: Any, agent: Agent) -> bool:
    return agent_perms.can_govern(user, agent)
