"""Admin for governance: change requests, their approvals and shadow labels, read-only. They
change only through ``governance.actions`` (the governance pages and API)."""

from __future__ import annotations

from django.contrib import admin

from governance.models import ChangeApproval, ChangeRequest, ShadowLabel
from rollout.admin import ReadOnlyAdmin


@admin.register(ChangeRequest)
class ChangeRequestAdmin(ReadOnlyAdmin):
    list_display = ["id", "agent", "author", "status", "classification", "created_at"]
    list_filter = ["status", "agent"]


@admin.register(ChangeApproval)
class ChangeApprovalAdmin(ReadOnlyAdmin):
    list_display = ["change_request", "approver", "revision", "voided", "created_at"]


@admin.register(ShadowLabel)
class ShadowLabelAdmin(ReadOnlyAdmin):
    list_display = ["action", "reviewer", "label", "updated_at"]
