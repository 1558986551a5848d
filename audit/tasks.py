"""Celery tasks of the audit log: checkpoints and periodic verification (payload retention
redacts actions: ``approvals.tasks.apply_payload_retention``)."""

from celery import shared_task

from audit.checkpoints import write_signed_checkpoint
from audit.verification import run_job, run_verification


@shared_task
def write_checkpoint() -> int | None:
    """Join the per-agent chains with a global checkpoint event and append its signed head
    to the checkpoint file (nothing when no event was appended since the last one)."""
    record = write_signed_checkpoint()
    return record["event_id"] if record else None


@shared_task
def verify_chain_periodically(kind: str | None = None) -> bool:
    """Verify the chain (incremental, or full once a day); a break notifies the incident
    owners. Returns whether the chain is intact."""
    return run_verification(kind=kind, triggered_by="celery beat").ok


@shared_task
def run_verification_job(job_id: int) -> bool | None:
    """The verification an auditor asked for with "Verify now" (``audit.console.actions``).
    Returns whether the chain is intact (None when the job was no longer waiting)."""
    run = run_job(job_id)
    return None if run is None else run.ok
