"""People's credentials: personal API tokens, two-factor recovery codes and failed logins.
The tables keep the names they had in ``rollout`` (moved with the app, data untouched)."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class PersonalToken(models.Model):
    """A person's API token for scripts, the CLI and integrations. It acts as its owner,
    narrowed to its ``scopes`` (``accounts.permissions.TOKEN_SCOPES``), until it expires or is
    revoked; a disabled owner's tokens stop at once. Only its SHA-256 is stored; the token is
    shown once. Written only by ``accounts.personal_tokens``."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="personal_tokens"
    )
    name = models.CharField(max_length=80)
    prefix = models.CharField(max_length=12)
    token_hash = models.CharField(max_length=64, unique=True)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.CharField(max_length=150, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    # The last time a second-factor code came with a request made with this token: step-up
    # for the token lasts as long as it does for a browser session.
    stepped_up_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "rollout_personaltoken"  # moved from rollout; same table
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "revoked_at"], name="personal_token_owner")]

    def __str__(self) -> str:
        return f"{self.user_id}:{self.name} ({self.prefix}…)"


class RecoveryCode(models.Model):
    """One single-use recovery code of a person's two-factor authentication, stored as a
    SHA-256 digest (the codes are shown once, at generation). Written only by
    ``accounts.twofactor``."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="recovery_codes"
    )
    code_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "rollout_recoverycode"  # moved from rollout; same table
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["user", "code_hash"], name="recovery_code_unique")
        ]

    def __str__(self) -> str:
        return f"recovery code of {self.user_id}"


class LoginFailure(models.Model):
    """One failed login (password or second factor), for throttling per username and per
    client address. Kept in the database, not the cache, so a Redis outage can neither
    open the door to guessing nor lock everyone out. Old rows are pruned as logins happen.
    Written only by ``accounts.login_protection``."""

    username = models.CharField(max_length=150)
    ip = models.CharField(max_length=45)
    at = models.DateTimeField()

    class Meta:
        db_table = "rollout_loginfailure"  # moved from rollout; same table
        indexes = [
            models.Index(fields=["username", "at"], name="login_failure_user"),
            models.Index(fields=["ip", "at"], name="login_failure_ip"),
        ]

    def __str__(self) -> str:
        return f"{self.username}@{self.ip} {self.at:%Y-%m-%d %H:%M:%S}"


class HomeChoice(models.Model):
    """The page a person chose to land on at ``/`` (a key such as ``"queue"`` or
    ``"incidents"``). Only the key lives here: which homes a person may open is asked of
    the permissions above this app (``approvals.navigation``), which falls back to the
    person's default when the chosen one is no longer open to them. Written only by
    ``accounts.preferences``."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="home_choice"
    )
    home = models.CharField(max_length=20)
    chosen_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.user_id}: {self.home}"


class DesktopNotificationChoice(models.Model):
    """The lowest risk of a new card that a person's desktop (browser) notifications tell
    them about, while the queue is open in a background tab. Whether notifications are on
    is the browser's permission (per browser, asked by ``static/notify.js``); the threshold
    follows the person. The risk names are the caller's (``approvals``): this app lies
    below ``rollout``. Written only by ``accounts.preferences``."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="desktop_notifications"
    )
    min_risk = models.CharField(max_length=10)
    chosen_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.user_id}: {self.min_risk} and above"
