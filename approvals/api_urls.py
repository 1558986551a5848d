from django.urls import path

from approvals import api

urlpatterns = [
    path("actions", api.ActionsView.as_view(), name="api-action-submit"),
    path("actions/<int:action_id>", api.action_detail, name="api-action-detail"),
    path(
        "actions/<int:action_id>/execution",
        api.ExecutionReportView.as_view(),
        name="api-action-execution",
    ),
    path(
        "actions/<int:action_id>/withdraw", api.WithdrawView.as_view(), name="api-action-withdraw"
    ),
    path(
        "actions/<int:action_id>/heartbeat",
        api.HeartbeatView.as_view(),
        name="api-action-heartbeat",
    ),
    path(
        "actions/<int:action_id>/rollback",
        api.RollbackReportView.as_view(),
        name="api-action-rollback",
    ),
    path(
        "actions/<int:action_id>/decisions", api.DecisionView.as_view(), name="api-action-decisions"
    ),
    path("grants/verify", api.GrantVerifyView.as_view(), name="api-grant-verify"),
    path("grants/revocations", api.GrantRevocationsView.as_view(), name="api-grant-revocations"),
    path("standing-approvals", api.StandingListView.as_view(), name="api-standing-list"),
    path(
        "standing-approvals/<int:standing_id>",
        api.StandingDetailView.as_view(),
        name="api-standing-detail",
    ),
    path(
        "standing-approvals/<int:standing_id>/revoke",
        api.StandingRevokeView.as_view(),
        name="api-standing-revoke",
    ),
]
