"""Admin for the incident workflow: a read-only window on drills, like rollout's."""

from django.contrib import admin

from incidents.models import Drill
from rollout.admin import ReadOnlyAdmin


@admin.register(Drill)
class DrillAdmin(ReadOnlyAdmin):
    list_display = ["agent", "started_by", "started_at", "succeeded", "stop_ms", "notify_ms"]
