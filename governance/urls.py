"""Governance pages and the governance REST API (``/api/v1/agents…``, ``/api/v1/changes…``).
Mounted at the site root, before the approvals pages."""

from django.urls import path

from governance import api
from governance.views import access, agents, cases, changes, policy, shadow, tokens

# The names keep the namespace they were published under (``rollout:agent-detail``,
# ``rollout:change-detail``, ``rollout:api-agent-backtest`` …): templates, the audit log's
# links and the authorization matrix name them. The code behind them moved to governance;
# the names, like the paths, did not.
app_name = "rollout"

pages = [
    path("agents", agents.agent_list, name="agent-list"),
    path("agents/new", agents.agent_register, name="agent-register"),
    path("agents/<slug:slug>", agents.agent_detail, name="agent-detail"),
    path("agents/<slug:slug>/policy", agents.agent_policy, name="agent-policy"),
    path("agents/<slug:slug>/metrics", agents.agent_metrics, name="agent-metrics"),
    path("agents/<slug:slug>/history", agents.agent_history, name="agent-history"),
    path("agents/<slug:slug>/tier", policy.change_tier, name="agent-tier"),
    path("agents/<slug:slug>/settings", policy.change_settings, name="agent-settings"),
    path("agents/<slug:slug>/rules/add", policy.rule_form, name="rule-add"),
    # Tool names may hold "/", so the tool comes last.
    path("agents/<slug:slug>/rules/edit/<path:tool>", policy.rule_form, name="rule-edit"),
    path("agents/<slug:slug>/rules/remove/<path:tool>", policy.remove_rule, name="rule-remove"),
    path(
        "agents/<slug:slug>/environments/tier",
        policy.change_environment_tier,
        name="environment-tier",
    ),
    path(
        "agents/<slug:slug>/environments/rule",
        policy.environment_rule_form,
        name="environment-rule",
    ),
    path(
        "agents/<slug:slug>/environments/rule/clear",
        policy.clear_environment_rule,
        name="environment-rule-clear",
    ),
    path("agents/<slug:slug>/tokens", tokens.issue_token, name="token-issue"),
    path(
        "agents/<slug:slug>/webhook-secret",
        tokens.rotate_webhook_secret,
        name="webhook-secret-rotate",
    ),
    path(
        "agents/<slug:slug>/tokens/<int:token_id>/revoke",
        tokens.revoke_token,
        name="token-revoke",
    ),
    path("agents/<slug:slug>/access", access.access_change, name="agent-access"),
    path("agents/<slug:slug>/versions/<int:number>", agents.version_detail, name="version-detail"),
    path(
        "agents/<slug:slug>/versions/<int:number>/revert",
        policy.revert_to_version,
        name="version-revert",
    ),
    path("agents/<slug:slug>/shadow", shadow.shadow_actions, name="shadow-actions"),
    path(
        "agents/<slug:slug>/shadow/<int:action_id>",
        shadow.label_shadow_action,
        name="shadow-label",
    ),
    path("agents/<slug:slug>/cases", cases.case_list, name="agent-cases"),
    path("agents/<slug:slug>/cases/keep", cases.keep_case, name="case-keep"),
    path(
        "agents/<slug:slug>/cases/<int:case_id>/retire",
        cases.retire_case,
        name="case-retire",
    ),
    path("changes", changes.change_list, name="change-list"),
    path("changes/<int:change_id>", changes.change_detail, name="change-detail"),
    path("changes/<int:change_id>/approve", changes.approve_change, name="change-approve"),
    path("changes/<int:change_id>/reject", changes.reject_change, name="change-reject"),
    path("changes/<int:change_id>/withdraw", changes.withdraw_change, name="change-withdraw"),
    path("changes/<int:change_id>/edit", changes.edit_change, name="change-edit"),
]

api_v1 = [
    path("api/v1/agents", api.AgentListView.as_view(), name="api-agents"),
    path("api/v1/agents/<slug:slug>", api.AgentDetailView.as_view(), name="api-agent"),
    path(
        "api/v1/agents/<slug:slug>/changes",
        api.AgentChangesView.as_view(),
        name="api-agent-changes",
    ),
    path(
        "api/v1/agents/<slug:slug>/versions",
        api.PolicyVersionListView.as_view(),
        name="api-agent-versions",
    ),
    path(
        "api/v1/agents/<slug:slug>/versions/<int:number>",
        api.PolicyVersionDetailView.as_view(),
        name="api-agent-version",
    ),
    path(
        "api/v1/agents/<slug:slug>/versions/<int:number>/revert",
        api.PolicyVersionRevertView.as_view(),
        name="api-agent-version-revert",
    ),
    path("api/v1/agents/<slug:slug>/diff", api.PolicyDiffView.as_view(), name="api-agent-diff"),
    path(
        "api/v1/agents/<slug:slug>/readiness",
        api.ReadinessView.as_view(),
        name="api-agent-readiness",
    ),
    path(
        "api/v1/agents/<slug:slug>/backtest",
        api.BacktestView.as_view(),
        name="api-agent-backtest",
    ),
    path("api/v1/agents/<slug:slug>/tokens", api.TokenListView.as_view(), name="api-agent-tokens"),
    path(
        "api/v1/agents/<slug:slug>/webhook-secret",
        api.WebhookSecretView.as_view(),
        name="api-agent-webhook-secret",
    ),
    path(
        "api/v1/agents/<slug:slug>/tokens/<int:token_id>/revoke",
        api.TokenRevokeView.as_view(),
        name="api-agent-token-revoke",
    ),
    path(
        "api/v1/agents/<slug:slug>/shadow-labels",
        api.ShadowLabelView.as_view(),
        name="api-agent-shadow-labels",
    ),
    path("api/v1/changes", api.ChangeListView.as_view(), name="api-changes"),
    path("api/v1/changes/<int:change_id>", api.ChangeDetailView.as_view(), name="api-change"),
    path(
        "api/v1/changes/<int:change_id>/approve",
        api.ChangeApproveView.as_view(),
        name="api-change-approve",
    ),
    path(
        "api/v1/changes/<int:change_id>/reject",
        api.ChangeRejectView.as_view(),
        name="api-change-reject",
    ),
    path(
        "api/v1/changes/<int:change_id>/withdraw",
        api.ChangeWithdrawView.as_view(),
        name="api-change-withdraw",
    ),
]

urlpatterns = pages + api_v1
