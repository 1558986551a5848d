"""Reference data every installation has: the default tier ladder and the four roles.

Written by the data migration; also callable at run time (tests that empty the database
between them restore it with ``ensure_reference_data``)."""

from typing import Any

from django.contrib.auth.management import _get_all_permissions, create_permissions

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
    # Each part reads first and writes only what is missing or different: the test suite
    # calls this before most tests (on a database that usually has it all), and ~250
    # queries a call made it the suite's largest fixed cost. The writes are the same.
    _ensure_tiers(apps)
    # Permissions are normally created after all migrations; the roles need them now.
    if not _permissions_complete(apps):
        for app_config in apps.get_app_configs():
            had_models = getattr(app_config, "models_module", None)
            app_config.models_module = had_models or True
            create_permissions(app_config, apps=apps, verbosity=0)
            app_config.models_module = had_models
    _ensure_roles(apps)


def _ensure_tiers(apps: Any) -> None:
    tier_model = apps.get_model("rollout", "Tier")
    # Migrations before the field existed run this with a Tier that has no such field.
    extra = (
        {"max_pending_seconds": MAX_PENDING_SECONDS}
        if any(f.name == "max_pending_seconds" for f in tier_model._meta.get_fields())
        else {}
    )
    existing = {tier.name: tier for tier in tier_model.objects.all()}
    for name, rank, read, draft, write, auto, description, exit_criteria in TIERS:
        defaults = {
            **extra,
            "rank": rank,
            "read_outcome": read,
            "draft_outcome": draft,
            "write_outcome": write,
            "auto_approve_max_risk": auto,
            "description": description,
            "pending_ttl_seconds": TTL_BY_RISK,
            "exit_criteria": exit_criteria,
        }
        tier = existing.get(name)
        if tier is not None and all(getattr(tier, k) == v for k, v in defaults.items()):
            continue
        tier_model.objects.update_or_create(name=name, defaults=defaults)


def _permissions_complete(apps: Any) -> bool:
    """Whether every model already has its content type and permissions, i.e. whether
    ``create_permissions`` would add nothing (two queries instead of ~3 per app)."""
    content_type_model = apps.get_model("contenttypes", "ContentType")
    permission_model = apps.get_model("auth", "Permission")
    types = set(content_type_model.objects.values_list("app_label", "model"))
    permissions = set(
        permission_model.objects.values_list(
            "content_type__app_label", "content_type__model", "codename"
        )
    )
    for app_config in apps.get_app_configs():
        for model in app_config.get_models():
            opts = model._meta
            if (opts.app_label, opts.model_name) not in types:
                return False
            for codename, _name in _get_all_permissions(opts):
                if (opts.app_label, opts.model_name, codename) not in permissions:
                    return False
    return True


def _ensure_roles(apps: Any) -> None:
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    held = set(
        group_model.objects.filter(name__in=ROLES).values_list(
            "name", "permissions__content_type__app_label", "permissions__codename"
        )
    )
    for role, perms in ROLES.items():
        missing = [dotted for dotted in perms if (role, *dotted.split(".")) not in held]
        if not missing:
            continue
        group, _ = group_model.objects.get_or_create(name=role)
        group.permissions.add(
            *(
                permission_model.objects.get(content_type__app_label=app_label, codename=codename)
                for app_label, codename in (dotted.split(".") for dotted in missing)
            )
        )
