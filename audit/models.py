"""The tamper-evident audit log.

Events are append-only. Each event belongs to one chain *partition* (per agent up to
``AUDIT_CHAIN_STRIPES`` stripes ``slug``, ``slug#1``…, plus ``global`` for events about no
agent); inside a partition every event carries the hash of
the one before it, so altering, removing or reordering a row breaks the chain from there
on. Partitions let the gate of different agents append without waiting for one global
lock; periodic ``audit.checkpoint`` events in the global partition record every
partition's head and so join them into one verifiable history.
"""

from django.db import models


class AuditChainHead(models.Model):
    """The last event of one chain partition. Appends lock this row, so writers of one
    partition are serialised and its chain never forks."""

    partition = models.CharField(max_length=120, primary_key=True)
    last_seq = models.BigIntegerField(default=0)
    last_hash = models.CharField(max_length=64, default="")

    def __str__(self) -> str:
        return f"{self.partition}@{self.last_seq}"


class AuditEvent(models.Model):
    """One thing that happened. Written only by ``audit.chain.append_event`` inside the
    transaction of the change it records; on PostgreSQL a trigger refuses UPDATE, DELETE
    and TRUNCATE."""

    class ActorType(models.TextChoices):
        USER = "user"
        AGENT = "agent"
        SYSTEM = "system"

    id = models.BigAutoField(primary_key=True)  # the global sequence number
    partition = models.CharField(max_length=120)
    chain_seq = models.BigIntegerField()
    created_at = models.DateTimeField(db_index=True)
    actor_type = models.CharField(max_length=10, choices=ActorType.choices)
    actor = models.CharField(max_length=150)
    verb = models.CharField(max_length=60, db_index=True)
    target_type = models.CharField(max_length=40, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    agent_slug = models.CharField(max_length=80, blank=True, db_index=True)
    correlation_id = models.CharField(max_length=80, blank=True, db_index=True)
    data = models.JSONField(default=dict)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["partition", "chain_seq"], name="audit_partition_seq")
        ]
        indexes = [
            models.Index(fields=["target_type", "target_id", "id"], name="audit_target"),
            models.Index(fields=["agent_slug", "id"], name="audit_agent_id"),
        ]
        permissions = [
            (
                "view_sensitive",
                "See argument fields masked by the per-tool redaction paths",
            )
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.verb} {self.target_type}:{self.target_id}"


class AuditVerification(models.Model):
    """One run of the chain verification: when, how far, and what it found. The latest run
    is the status shown on ``/audit``; an incremental run continues from the ``heads`` of
    the last good one. Not part of the chain (it is a record about the chain)."""

    class Kind(models.TextChoices):
        FULL = "full"
        INCREMENTAL = "incremental"

    kind = models.CharField(max_length=12, choices=Kind.choices)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    ok = models.BooleanField()
    events_checked = models.BigIntegerField(default=0)
    last_event_id = models.BigIntegerField(null=True, blank=True)
    first_broken_id = models.BigIntegerField(null=True, blank=True)
    problem = models.TextField(blank=True)
    # partition -> [chain_seq, hash] of the last event verified in it
    heads = models.JSONField(default=dict)
    checkpoint_lines = models.PositiveIntegerField(default=0)
    triggered_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-finished_at", "-id"]
        indexes = [models.Index(fields=["-finished_at"], name="audit_verification_latest")]

    def __str__(self) -> str:
        return f"{self.kind} verification {'ok' if self.ok else 'BROKEN'} at {self.finished_at}"


class VerificationJob(models.Model):
    """A verification someone asked for from the console ("Verify now"), run in the
    background (``audit.tasks.run_verification_job``). ``active`` is True while it is queued
    or running and NULL after, so the unique constraint lets one run at a time; the progress
    of a running job is kept in the cache (the walk reads one snapshot in one transaction,
    so rows it wrote would not show before the end)."""

    class State(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    active = models.BooleanField(null=True, default=True)
    requested_by = models.CharField(max_length=150)
    requested_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    # The newest event id when the job started: how far the run will get, for the progress.
    events_total = models.BigIntegerField(default=0)
    verification = models.ForeignKey(
        AuditVerification, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-requested_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["active"], name="audit_one_active_verification_job")
        ]

    def __str__(self) -> str:
        return f"verification job {self.pk} ({self.state}) by {self.requested_by}"


class RefusalWindow(models.Model):
    """How many times one actor was refused with one code about one agent in one minute
    (``audit.refusals``). The first refusal of a window writes an ``access.refused`` event;
    the rest only count here, and the key's next event reports them and deletes these rows.
    Not part of the chain: a tally kept so a flood of refusals costs one statement each."""

    actor = models.CharField(max_length=170)  # ``str(Actor)``: "user:alice", "agent:x"
    code = models.CharField(max_length=60)
    agent_slug = models.CharField(max_length=80, blank=True)
    window_start = models.DateTimeField()
    refusals = models.PositiveIntegerField(default=1)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["actor", "code", "agent_slug", "window_start"], name="audit_refusal_window"
            )
        ]

    def __str__(self) -> str:
        return f"{self.actor} {self.code} {self.agent_slug} @{self.window_start}: {self.refusals}"


class Installation(models.Model):
    """This database's installation id: one row (pk 1), made once by a migration (or on
    first use, after a flush) and never changed. Signed checkpoint lines and export chain
    heads carry it, so a file of another installation is told apart from a forgery.
    Read through ``audit.installation.installation_id``."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    installation_id = models.CharField(max_length=64, unique=True)
    # HMAC of the id with the checkpoint key: an id edited in the database (to make the
    # checkpoints of a rewritten log look like another installation's) does not verify.
    seal = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"installation {self.installation_id}"
