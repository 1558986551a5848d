"""The audit pages and the read-only audit API (included once from config/urls.py; the
same paths and names as before the console had its own package)."""

from django.urls import path

from audit.console import api, views

urlpatterns = [
    path("audit", views.search, name="audit-search"),
    path("audit/verification", views.verification, name="audit-verification"),
    path("audit/export", views.export, name="audit-export"),
    path("audit/actions/<int:action_id>", views.action_story, name="audit-action"),
    path(
        "audit/policy-versions/<int:version_id>",
        views.policy_version,
        name="audit-policy-version",
    ),
    path("api/v1/audit/events", api.EventListView.as_view(), name="api-audit-events"),
    path(
        "api/v1/audit/events/<int:event_id>",
        api.EventDetailView.as_view(),
        name="api-audit-event",
    ),
    path("api/v1/audit/export", api.ExportView.as_view(), name="api-audit-export"),
    path("api/v1/audit/status", api.StatusView.as_view(), name="api-audit-status"),
    path("api/v1/audit/verbs", api.VerbListView.as_view(), name="api-audit-verbs"),
    path(
        "api/v1/audit/actions/<int:action_id>/trace",
        api.TraceView.as_view(),
        name="api-audit-trace",
    ),
    path(
        "api/v1/audit/actions/<int:action_id>/replay",
        api.ReplayView.as_view(),
        name="api-audit-replay",
    ),
]
