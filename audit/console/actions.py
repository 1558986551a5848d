"""The console's one write path: "Verify now" (an auditor starts a verification of the
chain, run in the background by ``audit.tasks.run_verification_job``)."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from audit import verbs
from audit.chain import Actor, append_event
from audit.models import AuditEvent, VerificationJob
from audit.tasks import run_verification_job
from audit.verification import active_job
from core.errors import Refused
from rollout.permissions import audit_scope


class VerificationRefused(Refused):
    """Starting a verification was refused (no right, or one is running already)."""


def start_verification(user: Any) -> VerificationJob:
    """Queue a verification of the whole chain for ``user``, who must audit every agent (a
    per-agent auditor reads only their agents' partitions, and a run walks them all).
    Refused while another one is queued or running. Audited as ``user``."""
    scope = audit_scope(user)
    if scope is None or not scope.everything:
        raise VerificationRefused(
            "forbidden",
            "Only an auditor of every agent may verify the whole chain.",
            status=403,
        )
    with transaction.atomic():
        running = active_job()
        if running is not None:
            raise _already_running(running)
        head = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first()
        try:
            with transaction.atomic():
                job = VerificationJob.objects.create(
                    requested_by=user.get_username(),
                    requested_at=timezone.now(),
                    events_total=head or 0,
                )
        except IntegrityError:  # another start won the race
            raise _already_running(VerificationJob.objects.filter(active=True).first()) from None
        append_event(
            verb=verbs.AUDIT_VERIFICATION_STARTED,
            actor=Actor.user(user),
            target_type="audit_verification_job",
            target_id=job.pk,
            data={"head_id": head},
        )
        transaction.on_commit(lambda: _queue(job.pk))
    return job


def _queue(job_id: int) -> None:
    run_verification_job.delay(job_id)


def _already_running(job: VerificationJob | None) -> VerificationRefused:
    who = f" (started by {job.requested_by})" if job is not None else ""
    return VerificationRefused(
        "verification_running",
        f"A verification is already running{who}; its result will show here when it ends.",
        status=409,
    )
