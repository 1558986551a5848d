"""Reference data every installation has: the default tier ladder and the four roles.

Written by the data migration; also callable at run time (tests that empty the database
between them restore it with ``ensure_reference_data``)."""

from typing import Any

from django.contrib.auth.management import create_permissions

from audit.actor_context import seeding_reference_data

TTL_BY_RISK = {"low": 86400, "medium": 28800, "high": 14400, "critical": 3600}
# How long reviewers may keep a pending action waiting by extending it, from its submission.
MAX_PENDING_SECONDS = 2 * 86400

TIERS = [
    # name, rank, read, draft, write, auto-approve limit, description, exit criteria
    ("shadow", 0, "allow", "shadow", "shadow", "", "Recorded, never executed: learn before acting.",
     {"window_days": 14, "min_sample": 50, "max_rejection_rate": 0.2, "max_failure_rate": 0.05, "min_shadow_agreement": 0.9}),
    ("read_only", 1, "allow", "deny", "deny", "", "Reads only.",
     {"window_days": 14, "min_sample": 100, "max_rejection_rate": 0.1, "max_failure_rate": 0.05, "min_shadow_agreement": 0.0}),
    ("draft_only", 2, "allow", "allow", "deny", "", "Reads and internal drafts.",
     {"window_days": 14, "min_sample": 100, "max_rejection_rate": 0.1, "max_failure_rate": 0.05, "min_shadow_agreement": 0.0}),
    ("supervised", 3, "allow", "allow", "pending", "", "Every write waits for a human.",
     {"window_days": 30, "min_sample": 200, "max_rejection_rate": 0.05, "max_failure_rate": 0.02, "min_shadow_agreement": 0.0}),
    ("autonomous", 4, "allow", "allow", "auto", "low", "Low-risk writes run; riskier ones wait.", {}),
]  # fmt: skip

ROLES = {
    "reviewer": ["rollout.review_agent", "approvals.view_action", "rollout.view_agent"],
    "governance_owner": [
        "rollout.govern_agent",
        "rollout.view_agent",
        "rollout.view_toolrule",
        "rollout.view_policyversion",
        "rollout.view_tier",
        "approvals.view_action",
    ],
    "incident_owner": [
        "rollout.kill_agent",
        "rollout.view_agent",
        "rollout.view_killswitch",
        "approvals.view_action",
    ],
    "auditor": [
        "rollout.audit_agent",
        "audit.view_auditevent",
        "rollout.view_agent",
        "rollout.view_toolrule",
        "rollout.view_policyversion",
        "rollout.view_killswitch",
        "approvals.view_action",
        "approvals.view_decision",
        "approvals.view_report",
    ],
}


def ensure_reference_data(apps: Any) -> None:
    """Create or refresh the tiers and roles. ``apps`` is a migration's app registry or
    ``django.apps.apps``. Reference data, not anybody's change: no role or permission
    audit events."""
    with seeding_reference_data():
        _ensure_reference_data(apps)


def _ensure_reference_data(apps: Any) -> None:
    tier_model = apps.get_model("rollout", "Tier")
    # Migrations before the field existed run this with a Tier that has no such field.
    extra = (
        {"max_pending_seconds": MAX_PENDING_SECONDS}
        if any(f.name == "max_pending_seconds" for f in tier_model._meta.get_fields())
        else {}
    )
    for name, rank, read, draft, write, auto, description, exit_criteria in TIERS:
        tier_model.objects.update_or_create(
            name=name,
            defaults={
                **extra,
                "rank": rank,
                "read_outcome": read,
                "draft_outcome": draft,
                "write_outcome": write,
                "auto_approve_max_risk": auto,
                "description": description,
                "pending_ttl_seconds": TTL_BY_RISK,
                "exit_criteria": exit_criteria,
            },
        )
    # Permissions are normally created after all migrations; the roles need them now.
    for app_config in apps.get_app_configs():
        had_models = getattr(app_config, "models_module", None)
        app_config.models_module = had_models or True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = had_models
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    for role, perms in ROLES.items():
        group, _ = group_model.objects.get_or_create(name=role)
        for dotted in perms:
            app_label, codename = dotted.split(".")
            group.permissions.add(
                permission_model.objects.get(content_type__app_label=app_label, codename=codename)
            )
