"""Every audit verb, registered once with a human description (Sentry's pattern): the
audit page, the trace and the tests read names from here, never from string literals."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Verb:
    name: str
    template: str


VERBS: dict[str, Verb] = {}


def register(name: str, template: str) -> str:
    if name in VERBS:
        raise ValueError(f"audit verb {name!r} registered twice")
    VERBS[name] = Verb(name, template)
    return name


# Gate and action lifecycle
ACTION_SUBMITTED = register("action.submitted", "{actor} asked to run {target}")
ACTION_APPROVAL_RECORDED = register("action.approval_recorded", "{actor} approved {target}")
ACTION_APPROVED = register("action.approved", "{target} reached its approval quorum")
ACTION_REJECTED = register("action.rejected", "{actor} rejected {target}")
ACTION_EDITED = register("action.edited", "{actor} edited the arguments of {target}")
ACTION_EXPIRY_EXTENDED = register("action.expiry_extended", "{actor} extended the wait of {target}")
ACTION_WITHDRAWN = register("action.withdrawn", "{actor} withdrew {target}")
ACTION_EXPIRED = register("action.expired", "{target} expired undecided")
ACTION_CANCELLED = register("action.cancelled", "{target} was cancelled")
ACTION_REVOKED = register("action.revoked", "{target}'s grant was revoked")
ACTION_EXECUTED = register("action.executed", "{actor} reported {target} executed")
ACTION_FAILED = register("action.failed", "{actor} reported {target} failed")
ACTION_ROLLBACK_REQUESTED = register(
    "action.rollback_requested", "{actor} asked to roll back {target}"
)
ACTION_ROLLED_BACK = register("action.rolled_back", "{actor} reported {target} rolled back")
ACTION_ROLLBACK_FAILED = register(
    "action.rollback_failed", "{actor} reported {target}'s rollback failed"
)
ACTION_VIEWED = register("action.viewed", "{actor} viewed {target}")
STANDING_CREATED = register("standing.created", "{actor} created standing approval {target}")
STANDING_ENDED = register("standing.ended", "standing approval {target} ended")
STANDING_NOT_CREATED = register(
    "standing.not_created", "{target} was approved without the standing terms asked for"
)

# Governance and access
AGENT_REGISTERED = register("agent.registered", "{actor} registered {target}")
AGENT_TOKEN_ISSUED = register("agent.token_issued", "{actor} issued a token for {target}")
AGENT_TOKEN_REVOKED = register("agent.token_revoked", "{actor} revoked a token of {target}")
POLICY_VERSION_CREATED = register(
    "policy.version_created", "{actor} created policy version {target}"
)

# Incidents
KILL_SWITCH_ENGAGED = register("kill_switch.engaged", "{actor} engaged kill switch {target}")
KILL_SWITCH_RELEASED = register("kill_switch.released", "{actor} released kill switch {target}")

CIRCUIT_BREAKER_TRIPPED = register(
    "circuit_breaker.tripped", "circuit breaker tripped for {target}"
)
AGENT_DEMOTED = register("agent.demoted", "{actor} demoted {target}")
DRILL_COMPLETED = register("drill.completed", "{actor} ran a kill-switch drill on {target}")

# Execution grants: the keys that sign them
SERVICE_TOKEN_ISSUED = register(
    "service_token.issued", "{actor} issued a tool service token {target}"
)
SERVICE_TOKEN_REVOKED = register(
    "service_token.revoked", "{actor} revoked tool service token {target}"
)
GRANT_CONSUMED = register("grant.consumed", "{actor} used the grant of {target}")
GRANT_KEY_ROTATED = register(
    "grant_key.rotated", "{actor} rotated the grant signing key; {target} signs now"
)

# The log itself
AUDIT_CHECKPOINT = register("audit.checkpoint", "checkpoint of every chain partition")

# Governance: change classification, change requests, shadow labels
GOVERNANCE_CHANGE_APPLIED = register(
    "governance.change_applied", "{actor} applied a tightening change to {target}"
)
CHANGE_REQUEST_CREATED = register(
    "change_request.created", "{actor} proposed governance change {target}"
)
CHANGE_REQUEST_EDITED = register(
    "change_request.edited", "{actor} edited governance change {target}"
)
CHANGE_REQUEST_APPROVAL_RECORDED = register(
    "change_request.approval_recorded", "{actor} approved governance change {target}"
)
CHANGE_REQUEST_APPLIED = register(
    "change_request.applied", "governance change {target} was applied"
)
CHANGE_REQUEST_REJECTED = register(
    "change_request.rejected", "{actor} rejected governance change {target}"
)
CHANGE_REQUEST_WITHDRAWN = register(
    "change_request.withdrawn", "{actor} withdrew governance change {target}"
)
ACTION_SHADOW_LABELLED = register(
    "action.shadow_labelled", "{actor} labelled shadow action {target}"
)
CASE_KEPT = register("case.kept", "{actor} kept {target} as a regression case")
CASE_RETIRED = register("case.retired", "{actor} retired regression case {target}")

# Background work
ACTION_ESCALATED = register("action.escalated", "{target} was escalated: time is running out")
WEBHOOK_FAILED = register("webhook.failed", "a webhook about {target} could not be delivered")
WEBHOOK_SECRET_ROTATED = register(
    "agent.webhook_secret_rotated", "{actor} rotated the webhook secret of {target}"
)

# Audit of the audit log
AUDIT_RETENTION_APPLIED = register(
    "audit.retention_applied", "{actor} redacted action payloads past their retention"
)
AUDIT_VERIFICATION_STARTED = register(
    "audit.verification_started", "{actor} started a verification of the audit chain"
)
AUDIT_VERIFICATION_FAILED = register(
    "audit.verification_failed", "{actor} found the audit chain broken"
)

# People's access: per-agent rights, personal tokens, two-factor, logins, accounts
ACCESS_GRANTED = register("access.granted", "{actor} granted a right on {target}")
ACCESS_REMOVED = register("access.removed", "{actor} removed a right on {target}")
PERSONAL_TOKEN_CREATED = register(
    "personal_token.created", "{actor} created personal API token {target}"
)
PERSONAL_TOKEN_REVOKED = register(
    "personal_token.revoked", "{actor} revoked personal API token {target}"
)
PERSONAL_TOKEN_USED = register("personal_token.used", "{actor} used personal API token {target}")
# A Slack identity decides as the person it is linked to (slack_approvals)
SLACK_LINKED = register(
    "slack.linked", "{actor} linked Slack user {slack_user_id} ({team_id}) to their account"
)
SLACK_UNLINKED = register(
    "slack.unlinked", "{actor} unlinked Slack user {slack_user_id} from their account"
)
SLACK_THRESHOLD_CHANGED = register(
    "slack.threshold_changed", "{actor} set their Slack message risk threshold to {min_risk}"
)
TWO_FACTOR_ENROLLED = register("two_factor.enrolled", "{actor} enrolled a second factor")
TWO_FACTOR_REMOVED = register("two_factor.removed", "{actor} removed their second factor")
TWO_FACTOR_RECOVERY_CODES_ISSUED = register(
    "two_factor.recovery_codes_issued", "{actor} generated new recovery codes"
)
TWO_FACTOR_RECOVERY_CODE_USED = register(
    "two_factor.recovery_code_used", "{actor} signed in with a recovery code"
)
AUTH_LOGGED_IN = register("auth.logged_in", "{actor} logged in")
AUTH_LOGIN_LOCKED = register(
    "auth.login_locked", "logins to {target} are paused after repeated failures"
)
AUTH_STEPPED_UP = register("auth.stepped_up", "{actor} confirmed a second factor to {target}")
AUTH_REAUTHENTICATED = register(
    "auth.reauthenticated", "{actor} confirmed their password to {target}"
)
USER_DISABLED = register("user.disabled", "{actor} disabled {target}")
USER_ENABLED = register("user.enabled", "{actor} re-enabled {target}")

# Refused attempts (audit.refusals): at most one event per actor, code and agent a minute;
# the next one reports the repeats held back
ACCESS_REFUSED = register("access.refused", "{actor} was refused ({code}) on {target}")

# Roles and accounts, whichever path changes them (admin, shell, commands, guardian helpers:
# accounts.audit_receivers)
ACCOUNT_CREATED = register("account.created", "{actor} created account {username} ({flags})")
ACCOUNT_DELETED = register("account.deleted", "{actor} deleted account {username}")
ACCOUNT_FLAGS_CHANGED = register(
    "account.flags_changed", "{actor} set {flags} on account {username}"
)
ROLE_GRANTED = register("role.granted", "{actor} gave {username} the role {role}")
ROLE_REVOKED = register("role.revoked", "{actor} took the role {role} from {username}")
PERMISSION_GRANTED = register("permission.granted", "{actor} granted {permission} to {holder}")
PERMISSION_REVOKED = register("permission.revoked", "{actor} revoked {permission} from {holder}")
# What the governance home lists as "recent role and access changes".
ROLE_AND_ACCESS_VERBS = (
    ACCOUNT_CREATED,
    ACCOUNT_DELETED,
    ACCOUNT_FLAGS_CHANGED,
    ROLE_GRANTED,
    ROLE_REVOKED,
    PERMISSION_GRANTED,
    PERMISSION_REVOKED,
    ACCESS_GRANTED,
    ACCESS_REMOVED,
    USER_DISABLED,
    USER_ENABLED,
)
