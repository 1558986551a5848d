"""Building blocks for tests: people with roles, agents with rules, tokens, submissions."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from guardian.shortcuts import assign_perm

from approvals.actions import submit_action
from audit.chain import Actor
from rollout.actions import issue_agent_token, register_agent
from rollout.models import Agent

_counter = itertools.count(1)


def make_user(
    username: str | None = None,
    *,
    groups: tuple[str, ...] = (),
    perms: tuple[str, ...] = (),
    agent_perms: dict[str, Agent] | None = None,
    superuser: bool = False,
    password: str = "pw-for-tests",
) -> Any:
    """A person. ``groups`` are roles (all agents); ``perms`` global permissions;
    ``agent_perms`` maps a permission codename to the one agent it covers (guardian)."""
    user = get_user_model().objects.create_user(
        username=username or f"user{next(_counter)}",
        password=password,
        is_superuser=superuser,
        is_staff=superuser,
    )
    for name in groups:
        user.groups.add(Group.objects.get(name=name))
    for dotted in perms:
        app_label, codename = dotted.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    for perm, agent in (agent_perms or {}).items():
        assign_perm(perm, user, agent)
    return user


def rule(
    tool: str,
    effect: str,
    kind: str,
    risk: str = "low",
    limits: list | None = None,
    rate: int | None = None,
    radius: dict | None = None,
) -> dict:
    return {
        "tool": tool,
        "effect": effect,
        "rule": kind,
        "base_risk": risk,
        "argument_limits": limits or [],
        "blast_radius_from_arguments": radius or {},
        "rate_limit_per_minute": rate,
    }


SUPPORT_RULES = [
    rule("get_order_status", "read", "allowed"),
    rule("search_policy_docs", "read", "allowed"),
    rule("create_ticket_draft", "draft", "allowed"),
    rule("approve_refund", "write", "forbidden", "high"),
    rule("delete_customer_record", "write", "forbidden", "critical"),
    rule("send_email", "write", "requires_approval", "medium"),
    rule(
        "create_refund_request",
        "write",
        "requires_approval",
        "medium",
        [{"field": "amount", "op": "<=", "value": 10000}],
    ),
    rule("update_crm_note", "write", "allowed", "low"),
    rule("wipe_database", "write", "allowed", "critical"),
]


def make_agent(
    slug: str | None = None,
    *,
    tier: str = "supervised",
    rules: list[dict] | None = None,
    **extra: Any,
) -> Agent:
    return register_agent(
        actor=Actor.system("tests"),
        slug=slug or f"agent-{next(_counter)}",
        name=(slug or "Test agent").replace("-", " ").title(),
        tier=tier,
        rules=SUPPORT_RULES if rules is None else rules,
        **extra,
    )


def make_token(agent: Agent, environment: str = "") -> str:
    return issue_agent_token(agent=agent, actor=Actor.system("tests"), environment=environment)


def submit(
    agent: Agent,
    tool: str = "send_email",
    arguments: dict | None = None,
    key: str | None = None,
    **body: Any,
):
    """Submit through the gate's write path (not HTTP); returns the action."""
    payload = {
        "tool": tool,
        "arguments": arguments if arguments is not None else {"to": "a@example.com"},
        **body,
    }
    return submit_action(agent=agent, idempotency_key=key or uuid.uuid4().hex, body=payload).action
