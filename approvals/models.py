"""Actions asked for by agents, the decisions people make on them and the reports agents
send back. Every change goes through ``approvals.actions``."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.timezone import now

from approvals.states import Status
from rollout.models import Agent, PolicyVersion, Release, Risk


class Action(models.Model):
    """One tool call an agent asked the gate about, with the gate's answer and everything
    that happened to it after."""

    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="actions")
    release = models.ForeignKey(Release, null=True, blank=True, on_delete=models.SET_NULL)
    tool = models.CharField(max_length=120)
    effect = models.CharField(max_length=10, blank=True)
    # ``arguments`` are the ones to execute (a reviewer may have edited them);
    # ``original_arguments`` are the ones the agent sent.
    arguments = models.JSONField()
    original_arguments = models.JSONField()
    summary = models.TextField(blank=True)
    rationale = models.JSONField(default=dict, blank=True)
    evidence = models.JSONField(default=list, blank=True)
    blast_radius = models.JSONField(default=dict, blank=True)
    compensation = models.JSONField(null=True, blank=True)
    on_behalf_of = models.CharField(max_length=150, blank=True)
    callback_url = models.URLField(max_length=2000, blank=True)

    status = models.CharField(max_length=20, choices=Status.choices, db_index=True)
    reason_code = models.CharField(max_length=40)
    reasons = models.JSONField(default=list)
    risk = models.CharField(max_length=10, choices=Risk.choices)
    required_approvals = models.PositiveSmallIntegerField(default=0)
    needs_critical_approver = models.BooleanField(default=False)
    payload_hash = models.CharField(max_length=64)
    policy_version = models.ForeignKey(PolicyVersion, on_delete=models.PROTECT, null=True)
    feedback = models.TextField(blank=True)

    idempotency_key = models.CharField(max_length=200)
    # The environment of the token that submitted it ("" = an unbound token): idempotency
    # keys and what an agent token may see are scoped to it.
    environment = models.CharField(max_length=40, blank=True)
    request_hash = models.CharField(max_length=64)
    correlation_id = models.CharField(max_length=80, blank=True)

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    escalated_at = models.DateTimeField(null=True, blank=True)
    # An approved or allowed action must be executed (reported) before this, or it is revoked.
    grant_expires_at = models.DateTimeField(null=True, blank=True)
    # The signed execution grant (JWS compact, ``grants.tokens``) issued when the action
    # became allowed or approved, stored so an idempotent replay answers the same token;
    # ``grant_id`` is its ``jti``.
    grant = models.TextField(blank=True)
    grant_id = models.CharField(max_length=32, blank=True)
    # When a tool service used the grant through the online check (``consume``): once only.
    grant_used_at = models.DateTimeField(null=True, blank=True)
    reversible_until = models.DateTimeField(null=True, blank=True)
    # Opt-in proof of life of the agent waiting on a pending action: waits and heartbeats
    # renew ``lease_expires_at``; once it passes the action is cancelled (``agent_gone``).
    # None: no lease (interrupt-style agents, which sleep while a human decides).
    lease_seconds = models.PositiveIntegerField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # Set when the gate answered ``approved`` at once: people's earlier standing approval
    # covered this call (``approvals.standing``).
    standing_approval = models.ForeignKey(
        "StandingApproval",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="covered_actions",
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["agent", "environment", "idempotency_key"], name="action_idempotency"
            )
        ]
        indexes = [
            models.Index(fields=["agent", "created_at"], name="action_agent_time"),
            models.Index(fields=["agent", "tool", "created_at"], name="action_agent_tool_time"),
            models.Index(
                fields=["expires_at"], condition=Q(status="pending"), name="action_pending_expiry"
            ),
            models.Index(
                fields=["lease_expires_at"],
                condition=Q(status="pending", lease_expires_at__isnull=False),
                name="action_pending_lease",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.agent_id}:{self.tool} ({self.status})"


class Channel(models.TextChoices):
    """Where a person's decision came from; recorded on the decision and its audit event."""

    PAGE = "page"
    API = "api"
    EMAIL = "email"
    SLACK = "slack"
    BULK = "bulk"
    STANDING = "standing"


class Decision(models.Model):
    """A reviewer's verdict. Approvals count toward the quorum only while they are bound to
    the action's current payload; an edit voids earlier ones."""

    class Verdict(models.TextChoices):
        APPROVE = "approve"
        REJECT = "reject"

    action = models.ForeignKey(Action, on_delete=models.CASCADE, related_name="decisions")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    verdict = models.CharField(max_length=10, choices=Verdict.choices)
    comment = models.TextField(blank=True)
    edited_arguments = models.JSONField(null=True, blank=True)
    payload_hash = models.CharField(max_length=64)
    voided = models.BooleanField(default=False)
    # Empty on decisions recorded before channels were (migration 0004).
    channel = models.CharField(max_length=10, choices=Channel.choices, blank=True)
    # An approval's standing terms ("also approve matching calls for N minutes, up to K
    # uses"); both empty when the approver asked for none.
    standing_minutes = models.PositiveIntegerField(null=True, blank=True)
    standing_uses = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            # Nobody counts twice toward one payload. Only approvals count: a reviewer who
            # approved may still reject (veto) the action while it waits for a second one.
            # Voided approvals are history, not votes: after an edit back to a payload
            # someone approved before, they approve it again.
            models.UniqueConstraint(
                fields=["action", "reviewer", "payload_hash"],
                condition=Q(verdict="approve", voided=False),
                name="one_approval_per_reviewer_payload",
            )
        ]

    def __str__(self) -> str:
        return f"{self.reviewer_id} {self.verdict} #{self.action_id}"


class EmailDecisionLink(models.Model):
    """One Approve or Reject link of a notification email: issued to one person for one
    action, with the verdict and the payload hash of what the email showed. It opens a
    confirmation page (only for that person, logged in); confirming goes through the write
    path, which marks it used in the decision's transaction. Usable once, never after
    ``expires_at`` (the action's expiry when the email was sent). Only the SHA-256 of its
    random token is stored (``core.digests.token_digest``): the token is in the email only."""

    action = models.ForeignKey(Action, on_delete=models.CASCADE, related_name="email_links")
    person = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    verdict = models.CharField(max_length=10, choices=Decision.Verdict.choices)
    payload_hash = models.CharField(max_length=64)
    token_digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.verdict} link of #{self.action_id} for {self.person_id}"


class Report(models.Model):
    """What the agent said happened: the execution, or a rollback. Accepted once each."""

    class Kind(models.TextChoices):
        EXECUTION = "execution"
        ROLLBACK = "rollback"

    action = models.ForeignKey(Action, on_delete=models.CASCADE, related_name="reports")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    outcome = models.CharField(max_length=20)
    payload_hash = models.CharField(max_length=64, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["action", "kind"], name="one_report_per_kind")
        ]

    def __str__(self) -> str:
        return f"{self.kind} of #{self.action_id}: {self.outcome}"


class Outbox(models.Model):
    """Work owed after a change — a webhook to the agent, an email or a chat message to
    people — written in the change's transaction and delivered by Celery. Undelivered rows
    are re-dispatched, so a crash or a broker outage delays delivery but never loses it."""

    class Kind(models.TextChoices):
        WEBHOOK = "webhook"  # signed POST to the action's callback_url, one per row
        EMAIL = "email"  # to a person; batched per address
        CHAT = "chat"  # Slack-compatible incoming webhook; batched per URL

    kind = models.CharField(max_length=20, choices=Kind.choices)
    action = models.ForeignKey(Action, null=True, blank=True, on_delete=models.CASCADE)
    agent = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.CASCADE)
    destination = models.CharField(max_length=2000)
    payload = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    delivered_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["kind", "created_at"],
                condition=Q(delivered_at__isnull=True, failed_at__isnull=True),
                name="outbox_undelivered",
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} → {self.destination}"


class NotificationRoute(models.Model):
    """Who hears about one agent beyond its reviewers: the escalation people (a group and/or
    named users) and a Slack-compatible incoming-webhook URL."""

    agent = models.OneToOneField(Agent, on_delete=models.CASCADE, related_name="notification_route")
    escalation_group = models.ForeignKey(
        "auth.Group", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    escalation_users = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="+"
    )
    chat_webhook_url = models.URLField(max_length=2000, blank=True)

    def __str__(self) -> str:
        return f"notifications of {self.agent.slug}"


class DailyAgentStats(models.Model):
    """Per-agent daily counts, rolled up by a periodic task so governance charts and
    promotion readiness stay fast with millions of actions. Recomputed idempotently."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="daily_stats")
    day = models.DateField()
    submitted = models.PositiveIntegerField(default=0)
    by_status = models.JSONField(default=dict)  # final/current status -> count
    decided = models.PositiveIntegerField(default=0)
    decision_seconds_total = models.FloatField(default=0)
    executed = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["agent", "day"]
        constraints = [models.UniqueConstraint(fields=["agent", "day"], name="daily_stats_unique")]

    def __str__(self) -> str:
        return f"{self.agent_id} {self.day}"


class StandingApproval(models.Model):
    """People's approval of one call that also approves matching later calls of the same
    agent, tool and environment, for a while and a number of uses, within the bounds the
    tool's policy sets (``rollout.standing``). Created with the approval that completed
    its source action's quorum when every approver gave the same terms; ended by expiry,
    its count, a reviewer's revoke, a kill switch in scope or a policy change of the
    tool, its tier or its bounds. Every change goes through ``approvals.standing``."""

    class EndReason(models.TextChoices):
        REVOKED = "revoked"
        KILL_SWITCH = "kill_switch"
        POLICY_CHANGED = "policy_changed"
        USED_UP = "used_up"
        EXPIRED = "expired"

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="standing_approvals")
    tool = models.CharField(max_length=120)
    # The declared ``blast_radius.environment`` of the approved call ("" when none); a
    # later call must declare the same.
    environment = models.CharField(max_length=120, blank=True)
    arguments = models.JSONField()
    at_most = models.JSONField(default=list)
    risk = models.CharField(max_length=10, choices=Risk.choices)
    max_uses = models.PositiveIntegerField()
    uses = models.PositiveIntegerField(default=0)
    minutes = models.PositiveIntegerField()
    expires_at = models.DateTimeField()
    approvers = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="+")
    source_action = models.OneToOneField(
        Action, on_delete=models.PROTECT, related_name="created_standing_approval"
    )
    policy_version = models.ForeignKey(PolicyVersion, on_delete=models.PROTECT)
    created_at = models.DateTimeField(auto_now_add=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=20, choices=EndReason.choices, blank=True)
    ended_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["agent", "tool"],
                condition=Q(ended_at__isnull=True),
                name="standing_active",
            )
        ]

    def __str__(self) -> str:
        return f"standing #{self.pk} {self.agent_id}:{self.tool}"

    @property
    def uses_left(self) -> int:
        return max(0, self.max_uses - self.uses)

    @property
    def is_active(self) -> bool:
        """In force now: not ended, in time, uses left (an expired one is ended when next
        looked up at the gate)."""
        return self.ended_at is None and self.uses < self.max_uses and self.expires_at > now()
