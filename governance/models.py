"""The governance workflow's records: change requests, their approvals, and reviewers' labels
of shadowed actions. Written only by ``governance.actions``.

The tables keep the names they were created with in ``rollout`` (``db_table``): the models
moved app, the rows did not (``governance`` migration 0001)."""

from django.conf import settings
from django.db import models

from approvals.models import Action
from rollout.models import Agent, PolicyVersion


class ChangeRequest(models.Model):
    """A proposed governance change that would give an agent more autonomy (promote, allow a
    tool, loosen a limit, raise a rate, activate). It waits for another governance owner of
    that agent; once approved it is applied atomically as a new policy version.

    ``before`` holds the agent's values of exactly the parts the change touches, as they
    were when it was written (or last edited); ``after`` the values it sets. Both use the
    shape of ``rollout.policy_diff`` pieces, so the diff shown to approvers is stable, and
    an approval of a request whose ``before`` no longer matches the live policy is refused
    as stale. Written only by ``governance.actions``."""

    class Status(models.TextChoices):
        OPEN = "open"
        APPLIED = "applied"
        REJECTED = "rejected"
        WITHDRAWN = "withdrawn"

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="change_requests")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.OPEN)
    classification = models.CharField(max_length=12)
    reason = models.CharField(max_length=300)
    before = models.JSONField()
    after = models.JSONField()
    # Bumped by every edit; approvals count only for the revision they were given on.
    revision = models.PositiveIntegerField(default=1)
    required_approvals = models.PositiveSmallIntegerField(default=1)
    base_version = models.ForeignKey(
        PolicyVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    applied_version = models.ForeignKey(
        PolicyVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    closed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    close_comment = models.TextField(blank=True)

    class Meta:
        db_table = "rollout_changerequest"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "agent"], name="change_request_status")]

    def __str__(self) -> str:
        return f"change #{self.pk} of {self.agent.slug} ({self.status})"

    @property
    def is_open(self) -> bool:
        return self.status == self.Status.OPEN


class ChangeApproval(models.Model):
    """One governance owner's approval of one revision of a change request. An edit voids
    the approvals of earlier revisions (they stay, marked ``voided``)."""

    change_request = models.ForeignKey(
        ChangeRequest, on_delete=models.CASCADE, related_name="approvals"
    )
    approver = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    revision = models.PositiveIntegerField()
    comment = models.TextField(blank=True)
    voided = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "rollout_changeapproval"
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["change_request", "approver", "revision"],
                name="one_approval_per_approver_revision",
            )
        ]

    def __str__(self) -> str:
        return f"{self.approver_id} approved change #{self.change_request_id} r{self.revision}"


class ShadowLabel(models.Model):
    """A reviewer's judgement of a shadowed action: would they have approved it? Feeds the
    shadow-agreement figure of promotion readiness. One label per reviewer and action (a
    reviewer may change their mind); written only by ``governance.actions``."""

    class Label(models.TextChoices):
        WOULD_APPROVE = "would_approve"
        WOULD_REJECT = "would_reject"

    action = models.ForeignKey(Action, on_delete=models.CASCADE, related_name="shadow_labels")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    label = models.CharField(max_length=20, choices=Label.choices)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "rollout_shadowlabel"
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["action", "reviewer"], name="one_label_per_reviewer")
        ]

    def __str__(self) -> str:
        return f"{self.reviewer_id} {self.label} #{self.action_id}"


class RegressionCase(models.Model):
    """A request people kept as a regression case, with the gate answer they expected
    (``governance.cases``): replayed against an agent's current or proposed policy, a case
    whose answer would differ from the expectation is shown beside every change request.

    The request is stored masked the way the audit log and its export mask it (the
    configured sensitive argument paths, then every secret-looking key), so a case never
    holds more than an auditor could read. The source action and kill switch are kept as
    references only (the action may be purged by retention; the case stays). Written only
    by ``governance.cases``."""

    class Expected(models.TextChoices):
        ALLOWED = "allowed", "runs without a human"
        PENDING = "pending", "waits for a human"
        DENIED = "denied", "does not run"

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="regression_cases")
    source_action = models.ForeignKey(
        Action, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The kill switch whose page it was kept from (an id: switches are never deleted).
    source_switch_id = models.PositiveIntegerField(null=True, blank=True)
    tool = models.CharField(max_length=120)
    arguments = models.JSONField()
    blast_radius = models.JSONField(default=dict, blank=True)
    rationale = models.JSONField(default=dict, blank=True)
    # The environment of the token that sent the call ("" = unbound), as the gate took it.
    environment = models.CharField(max_length=40, blank=True)
    expected = models.CharField(max_length=10, choices=Expected.choices)
    note = models.CharField(max_length=500, blank=True)
    kept_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    kept_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-kept_at", "-id"]
        indexes = [models.Index(fields=["agent", "kept_at"], name="regression_case_agent")]

    def __str__(self) -> str:
        return f"case #{self.pk} of {self.agent_id}: {self.tool} expected {self.expected}"
