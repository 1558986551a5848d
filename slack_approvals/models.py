"""Slack approvals' rows: who a Slack user is in Airlock, and what Airlock owes Slack.
Every change goes through ``slack_approvals.actions``."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from approvals.models import Action
from rollout.models import Risk


class SlackAccount(models.Model):
    """A person's Slack identity (one workspace user, proven once through a signed link)
    and their Slack preference: the lowest risk they are sent direct messages for. The row
    outlives an unlink (the ids are emptied), so the threshold is kept."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="slack_account"
    )
    team_id = models.CharField(max_length=32, blank=True)
    slack_user_id = models.CharField(max_length=32, blank=True)
    # The Slack username as Slack sent it when the link was asked for (shown, never trusted).
    slack_name = models.CharField(max_length=120, blank=True)
    linked_at = models.DateTimeField(null=True, blank=True)
    min_risk = models.CharField(max_length=10, choices=Risk.choices, default=Risk.LOW)

    class Meta:
        constraints = [
            # One Slack identity ↔ one person.
            models.UniqueConstraint(
                fields=["team_id", "slack_user_id"],
                condition=~Q(slack_user_id=""),
                name="one_person_per_slack_identity",
            )
        ]

    def __str__(self) -> str:
        return f"{self.user_id} ↔ {self.team_id}/{self.slack_user_id or '-'}"

    @property
    def is_linked(self) -> bool:
        return bool(self.slack_user_id)


class SlackMessage(models.Model):
    """The direct message owed (then sent) to one person about one pending action, and the
    update owed to it once the action leaves pending: the outbox row of both. Written in the
    transaction that made the action pending (or ended it); delivered by
    ``slack_approvals.tasks.deliver_slack_message``; re-dispatched when left undelivered."""

    action = models.ForeignKey(Action, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    team_id = models.CharField(max_length=32)
    slack_user_id = models.CharField(max_length=32)
    # Where the message went (the direct-message channel) and its timestamp: what
    # chat.update needs.
    channel_id = models.CharField(max_length=32, blank=True)
    ts = models.CharField(max_length=32, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    posted_at = models.DateTimeField(null=True, blank=True)
    update_owed = models.BooleanField(default=False)
    updated_in_slack_at = models.DateTimeField(null=True, blank=True)
    # Not posted because the action had left pending (or the person could no longer decide
    # it) by the time the task ran.
    skipped_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    failed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["action", "user"], name="one_slack_message_per_person")
        ]
        indexes = [
            models.Index(
                fields=["created_at"],
                condition=Q(failed_at__isnull=True, skipped_at__isnull=True)
                & (Q(posted_at__isnull=True) | Q(update_owed=True)),
                name="slack_message_owed",
            )
        ]

    def __str__(self) -> str:
        return f"#{self.action_id} → {self.slack_user_id}"


class SlackNotice(models.Model):
    """A short reply owed to one Slack user, shown only to them (chat.postEphemeral) in the
    conversation they acted in: why a click was refused, that an approval was recorded,
    how to link their account. Delivered by ``slack_approvals.tasks.deliver_slack_notice``."""

    channel_id = models.CharField(max_length=32)
    slack_user_id = models.CharField(max_length=32)
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    failed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"notice → {self.slack_user_id}"
