"""Demo users, agents and a few pending actions. Safe to run again: nothing is duplicated."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand
from django.db import transaction

from approvals.actions import submit_action
from audit.chain import Actor
from rollout.actions import register_agent
from rollout.models import Agent

DEMO_PASSWORD = "airlock-demo"

USERS = [
    # username, groups, extra global permissions, superuser
    ("admin", [], [], True),
    ("reviewer", ["reviewer"], ["rollout.critical_approve_agent"], False),
    ("reviewer2", ["reviewer"], [], False),
    ("governor", ["governance_owner"], [], False),
    ("governor2", ["governance_owner"], [], False),
    ("incident", ["incident_owner"], [], False),
    ("auditor", ["auditor"], [], False),
]


def rule(tool, effect, kind, risk="low", limits=None, description="", radius=None):
    return {
        "tool": tool,
        "effect": effect,
        "rule": kind,
        "base_risk": risk,
        "argument_limits": limits or [],
        "blast_radius_from_arguments": radius or {},
        "description": description,
    }


# Money tools weigh the amount they are asked to move, not only the amount the agent
# declares; the numeric limit beside it denies an amount that is not a number.
AMOUNT_FROM_ARGUMENTS = {"amount": "amount"}


AGENTS = [
    {
        "slug": "support-assistant",
        "name": "Support Assistant",
        "tier": "supervised",
        "description": "Answers customer tickets; refunds and emails need a human.",
        "rules": [
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
                radius=AMOUNT_FROM_ARGUMENTS,
            ),
        ],
    },
    {
        "slug": "finance-agent",
        "name": "Finance Agent",
        "tier": "draft_only",
        "description": "Prepares payment runs and reconciliations.",
        "rules": [
            rule("get_invoice", "read", "allowed"),
            rule("export_ledger", "read", "allowed", "medium"),
            rule("draft_payment_run", "draft", "allowed", "medium"),
            rule(
                "create_payment",
                "write",
                "requires_approval",
                "high",
                [{"field": "amount", "op": "<=", "value": 50000}],
                radius=AMOUNT_FROM_ARGUMENTS,
            ),
        ],
    },
    {
        "slug": "deploy-bot",
        "name": "Deploy Bot",
        "tier": "shadow",
        "description": "Ships services; learning in shadow mode.",
        "rules": [
            rule("get_build_status", "read", "allowed"),
            rule("create_release_notes_draft", "draft", "allowed"),
            rule(
                "deploy_service",
                "write",
                "allowed",
                "high",
                [{"field": "environment", "op": "in", "value": ["staging", "production"]}],
            ),
            rule("rollback_service", "write", "allowed", "medium"),
        ],
    },
    {
        "slug": "ops-agent",
        "name": "Ops Agent",
        "tier": "autonomous",
        "description": "Keeps the cluster healthy; low-risk fixes run on their own.",
        "rules": [
            rule("get_metrics", "read", "allowed"),
            rule("restart_pod", "write", "allowed", "low"),
            rule("scale_deployment", "write", "allowed", "medium"),
            rule("drain_node", "write", "allowed", "high"),
            rule("delete_volume", "write", "forbidden", "critical"),
        ],
    },
]

DEMO_ACTIONS = [
    (
        "support-assistant",
        "seed-refund-ORD-7711",
        {
            "tool": "create_refund_request",
            "arguments": {
                "order_id": "ORD-7711",
                "amount": 42.18,
                "currency": "EUR",
                "reason": "late_delivery",
            },
            "summary": "Refund 42.18 EUR for order ORD-7711: delivery more than five business days late",
            "rationale": {
                "objective": "Resolve ticket T-3190 within policy",
                "plan": "Refund the shipping-delay amount, then email the customer",
                "alternatives": ["Offer a voucher instead"],
                "confidence": 0.86,
            },
            "evidence": [
                {
                    "kind": "shipping_status",
                    "title": "Carrier tracking",
                    "content": "Delivered 2026-11-19; promised 2026-11-11.",
                },
                {
                    "kind": "refund_policy",
                    "title": "Refund policy §4.2",
                    "content": "Deliveries more than five business days late are refundable.",
                },
            ],
            "blast_radius": {
                "environment": "production",
                "reversible": True,
                "amount": {"value": 42.18, "currency": "EUR"},
                "users_affected": 1,
            },
            "release": {
                "model": "gpt-5.1",
                "prompt_version": "support-v14",
                "tool_schema_version": "2026-10",
            },
        },
    ),
    (
        "support-assistant",
        "seed-email-ORD-7711",
        {
            "tool": "send_email",
            "arguments": {
                "to": "dana@example.com",
                "subject": "Your refund for ORD-7711",
                "body": "Hi Dana, we have refunded 42.18 EUR.",
            },
            "summary": "Tell the customer about the refund",
            "evidence": [
                {
                    "kind": "ticket",
                    "title": "Ticket T-3190",
                    "content": "Customer asked for a refund of the late order.",
                }
            ],
            "blast_radius": {"environment": "production", "reversible": False, "users_affected": 1},
            "release": {
                "model": "gpt-5.1",
                "prompt_version": "support-v14",
                "tool_schema_version": "2026-10",
            },
        },
    ),
    (
        "ops-agent",
        "seed-scale-checkout",
        {
            "tool": "scale_deployment",
            "arguments": {"deployment": "checkout", "replicas": 12, "namespace": "prod"},
            "summary": "Scale checkout from 6 to 12 replicas ahead of the sale",
            "rationale": {"objective": "Keep p99 under 300 ms during the sale", "confidence": 0.7},
            "blast_radius": {
                "environment": "production",
                "reversible": True,
                "systems": ["checkout"],
            },
        },
    ),
]


class Command(BaseCommand):
    help = "Create demo users, agents and pending actions (idempotent)."

    def handle(self, *args, **options) -> None:
        with transaction.atomic():
            users = self._users()
        system = Actor.system("seed")
        for spec in AGENTS:
            if not Agent.objects.filter(slug=spec["slug"]).exists():
                register_agent(actor=system, owner=users["governor"], **spec)
        for slug, key, body in DEMO_ACTIONS:
            submit_action(agent=Agent.objects.get(slug=slug), idempotency_key=key, body=body)
        self.stdout.write(f"Demo logins (password for all: {DEMO_PASSWORD}):")
        for username, groups, extra, superuser in USERS:
            role = (
                "superuser" if superuser else ", ".join(groups + [p.split(".")[1] for p in extra])
            )
            self.stdout.write(f"  {username:<10} {role}")
        self.stdout.write("Agents: " + ", ".join(spec["slug"] for spec in AGENTS))

    def _users(self) -> dict:
        User = get_user_model()
        users = {}
        for username, groups, extra, superuser in USERS:
            user, created = User.objects.get_or_create(
                username=username,
                defaults={
                    "is_superuser": superuser,
                    "is_staff": superuser,
                    "email": f"{username}@example.com",
                },
            )
            if created:
                user.set_password(DEMO_PASSWORD)
                user.save()
            for name in groups:
                user.groups.add(Group.objects.get(name=name))
            for dotted in extra:
                app_label, codename = dotted.split(".")
                user.user_permissions.add(
                    Permission.objects.get(content_type__app_label=app_label, codename=codename)
                )
            users[username] = user
        return users
