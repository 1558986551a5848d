"""The incident workflow's own records: kill-switch drills. Kill switches themselves are
``rollout.models.KillSwitch`` (every gate call reads them); they change only through
``incidents.actions``."""

from django.db import models

from rollout.models import Agent, AgentToken, KillSwitch


class Drill(models.Model):
    """A kill-switch drill: a drill switch stopped a probe of one agent through the real gate,
    measured from another process, without touching the agent's real work."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="drills")
    switch = models.ForeignKey(KillSwitch, null=True, on_delete=models.SET_NULL, related_name="+")
    started_by = models.CharField(max_length=150)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    succeeded = models.BooleanField(default=False)
    # Milliseconds from the engage's commit until the probe was denied / a dashboard heard.
    stop_ms = models.FloatField(null=True, blank=True)
    notify_ms = models.FloatField(null=True, blank=True)
    probes = models.PositiveIntegerField(default=0)
    detail = models.TextField(blank=True)
    # The drill's own token, issued when it starts (only its SHA-256 is stored, as for every
    # agent token) and revoked when it ends: it calls this drill's probe and nothing else.
    probe_token = models.OneToOneField(
        AgentToken, null=True, blank=True, on_delete=models.SET_NULL, related_name="drill"
    )

    class Meta:
        db_table = "rollout_drill"  # moved from rollout; same table
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"drill of {self.agent.slug} at {self.started_at:%Y-%m-%d %H:%M}"
