"""Admin for rollout: a read-only window on policy, plus per-agent object permissions.

Policy never changes here: tiers' outcomes, agents' tiers and tool rules, tokens and
change requests change only through ``governance.actions`` (the governance pages and API),
so that every change is classified, versioned, four-eyes where it loosens, and audited
(``governance.admin`` shows change requests and shadow labels, read-only too).
Per-agent access (who may review, govern, kill or audit an agent) is policy too: it
changes on the agent's page or through the governance API (``governance.access``), so a grant
needs a second governance owner and every change is versioned and audited. The admin
therefore has no object-permission screen.

People are added and renamed on Django's user admin, with forms that also refuse a username
whose skeleton another person has (``core.identity``): a field error, before the model's
own ``pre_save`` check would refuse the save."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm

from core.identity import check_username_available
from rollout.models import (
    Agent,
    AgentToken,
    EnvironmentOverride,
    KillSwitch,
    PolicyVersion,
    Release,
    Tier,
    ToolRule,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Lists and shows rows; never adds, changes or deletes them."""

    def has_add_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False


class PersonCreationForm(AdminUserCreationForm):
    """Django's add-user form; a username too like an existing one is a field error."""

    def clean_username(self) -> str:
        username = super().clean_username()
        if username and "username" not in self.errors:
            check_username_available(username)
        return username


class PersonChangeForm(UserChangeForm):
    """Django's change-user form; renaming to a username too like another person's is a
    field error (keeping one's own name is fine)."""

    def clean_username(self) -> str:
        username = self.cleaned_data.get("username")
        if username:
            check_username_available(username, self.instance.pk)
        return username


admin.site.unregister(get_user_model())


@admin.register(get_user_model())
class PersonAdmin(UserAdmin):
    form = PersonChangeForm
    add_form = PersonCreationForm


@admin.register(Tier)
class TierAdmin(admin.ModelAdmin):
    """Only a tier's description and exit criteria are editable here: its outcomes and
    limits are part of every policy snapshot, and changing them would change agents'
    autonomy without a change request or a new policy version."""

    list_display = ["rank", "name", "read_outcome", "draft_outcome", "write_outcome"]
    readonly_fields = [
        "name",
        "rank",
        "read_outcome",
        "draft_outcome",
        "write_outcome",
        "auto_approve_max_risk",
        "pending_ttl_seconds",
        "max_pending_seconds",
    ]
    fields = [*readonly_fields, "description", "exit_criteria"]

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False


class ToolRuleInline(admin.TabularInline):
    model = ToolRule
    extra = 0
    can_delete = False
    fields = [
        "tool",
        "effect",
        "rule",
        "base_risk",
        "argument_limits",
        "blast_radius_from_arguments",
        "rate_limit_per_minute",
        "min_confidence",
    ]
    readonly_fields = fields

    def has_add_permission(self, request: Any, obj: Any = None) -> bool:
        return False


class EnvironmentOverrideInline(admin.TabularInline):
    """Per-environment overrides, read-only: they change through governance like any rule."""

    model = EnvironmentOverride
    extra = 0
    can_delete = False
    fields = ["environment", "tier", "tools"]
    readonly_fields = fields

    def has_add_permission(self, request: Any, obj: Any = None) -> bool:
        return False


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    """Agents, read-only."""

    list_display = ["slug", "name", "tier", "active", "current_policy"]
    search_fields = ["slug", "name"]
    inlines = [ToolRuleInline, EnvironmentOverrideInline]
    readonly_fields = [
        "slug",
        "name",
        "description",
        "owner",
        "tier",
        "active",
        "rate_limit_per_minute",
        "circuit_breaker",
        "current_policy",
        "created_at",
    ]
    exclude = ["webhook_secret"]

    def has_add_permission(self, request: Any) -> bool:
        return False  # register at /agents/new

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False


@admin.register(PolicyVersion)
class PolicyVersionAdmin(ReadOnlyAdmin):
    list_display = ["agent", "number", "created_by", "created_at", "reason"]
    list_filter = ["agent"]


@admin.register(AgentToken)
class AgentTokenAdmin(ReadOnlyAdmin):
    list_display = ["agent", "name", "prefix", "created_by", "created_at", "revoked_at"]
    exclude = ["token_hash"]


@admin.register(Release)
class ReleaseAdmin(ReadOnlyAdmin):
    list_display = ["agent", "model", "prompt_version", "tool_schema_version", "first_seen_at"]


@admin.register(KillSwitch)
class KillSwitchAdmin(ReadOnlyAdmin):
    list_display = ["scope", "target", "engaged_by", "engaged_at", "released_at", "is_drill"]
