"""Running the chain verification, keeping its status, and raising the alarm.

A *full* run walks every event in id order (``verify_chain``, on several cores through
``audit.parallel`` when the log is large); an *incremental* run continues each partition
from the heads the last good run verified (``verify_partitions_from``). Both feed
``audit.walker.ChainWalker``. Both compare the table with the signed checkpoint
file. Every run is recorded as an ``AuditVerification``; the latest is the status shown on
``/audit``. When a run finds the chain broken (and the run before did not, or named another
event), ``audit.verification_failed`` is audited and the incident owners are notified.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import transaction
from django.db.models import Count, Max, Q
from django.utils import timezone

from audit import parallel, verbs
from audit.chain import GLOBAL_PARTITION, Actor, append_event
from audit.checkpoints import CheckpointFile, latest_checkpoint, read_checkpoint_file
from audit.installation import installation_id, installation_problem
from audit.models import AuditChainHead, AuditEvent, AuditVerification, VerificationJob
from audit.walker import (
    ChainWalker,
    Expectations,
    Progress,
    VerifyResult,
    head_expectations,
    iter_event_tuples,
    merge_expectations,
    use_one_snapshot,
)
from core.links import public_link
from core.notices import owe_notice

logger = logging.getLogger(__name__)

FULL = AuditVerification.Kind.FULL
INCREMENTAL = AuditVerification.Kind.INCREMENTAL


def _base_run() -> AuditVerification | None:
    """The last good run, if nothing has been found broken since."""
    latest = AuditVerification.objects.order_by("-finished_at", "-id").first()
    return latest if latest and latest.ok else None


def choose_kind() -> str:
    """Incremental after a recent good full run; otherwise full."""
    base = _base_run()
    if base is None:
        return FULL
    last_full = (
        AuditVerification.objects.filter(kind=FULL, ok=True).order_by("-finished_at").first()
    )
    max_age = timedelta(hours=settings.AUDIT_FULL_VERIFY_HOURS)
    if last_full is None or timezone.now() - last_full.finished_at > max_age:
        return FULL
    return INCREMENTAL


def verify_chain(
    *,
    expectations: Expectations | None = None,
    progress: Progress | None = None,
    check_heads: bool = True,
    workers: int | None = None,
) -> VerifyResult:
    """Walk every event in ``id`` order: links, hashes, checkpoints, and the outside claims
    in ``expectations`` (e.g. signed checkpoint files) plus the head table's. A large log on
    PostgreSQL is walked by several processes (``audit.parallel``; ``workers``, default
    ``AUDIT_VERIFY_WORKERS`` or the number of cores up to 4), with the same result."""
    workers = parallel.default_workers() if workers is None else workers
    if workers > 1 and parallel.can_fork_workers() and parallel.worth_it(workers):
        return parallel.verify_chain_parallel(
            workers=workers, expectations=expectations, progress=progress, check_heads=check_heads
        )
    with transaction.atomic():
        use_one_snapshot()
        claims = merge_expectations(expectations or {}, head_expectations() if check_heads else {})
        walker = ChainWalker(expectations=claims)
        walker.walk(iter_event_tuples(), data_is_text=True, progress=progress)
        return walker.result_with_tail()


def verify_partitions_from(
    heads: dict[str, tuple[int, str]],
    *,
    expectations: Expectations | None = None,
    progress: Progress | None = None,
) -> VerifyResult:
    """Incremental verification: continue every partition from its last verified head.

    Within a partition, committed events always form an unbroken prefix (appends hold the
    head's row lock until commit), so walking ``chain_seq > last verified`` per partition
    never mistakes a slow transaction for a gap, as walking new ids globally could. Each
    partition's old head must still carry its old hash; checkpoints are checked by looking
    up the events they name."""
    with transaction.atomic():
        use_one_snapshot()
        partitions = sorted(
            AuditChainHead.objects.values_list("partition", flat=True),
            key=lambda p: (p == GLOBAL_PARTITION, p),  # the checkpoints' partition last
        )
        walker = ChainWalker(heads, expectations or {}, lookup_checkpoints=True)
        highest = 0
        for partition in partitions:
            seq, old_hash = heads.get(partition, (0, ""))
            if seq:
                now = (
                    AuditEvent.objects.filter(partition=partition, chain_seq=seq)
                    .values_list("id", "hash")
                    .first()
                )
                if now is None or now[1] != old_hash:
                    walker.failure = (
                        now[0] if now else None,
                        f"event {partition}#{seq} changed since it was verified",
                    )
                    return walker.result()
            rows = iter_event_tuples(
                "partition = %s AND chain_seq > %s", [partition, seq], order="chain_seq"
            )
            if not walker.walk(rows, data_is_text=True, progress=progress):
                return walker.result()
            highest = max(highest, walker.last_id or 0)
        problem = _check_checkpoint_refs(walker.checkpoint_refs)
        if problem:
            walker.failure = problem
        result = walker.result()
        # Partitions are walked one after the other: the run got as far as the newest event
        # of any of them (the last one walked is only the newest of the last partition).
        result.last_id = highest or None
        return result


def _check_checkpoint_refs(refs: list[tuple[int, str, int, str]]) -> tuple[int, str] | None:
    for event_id, part, seq, hsh in refs:
        if seq == 0:
            continue
        found = (
            AuditEvent.objects.filter(partition=part, chain_seq=seq)
            .values_list("hash", flat=True)
            .first()
        )
        if found != hsh:
            return event_id, f"checkpoint disagrees with chain {part}"
    return None


def _verify(
    kind: str, checkpoints: CheckpointFile, progress: Progress | None, workers: int | None
) -> VerifyResult:
    sealed = installation_problem()
    if sealed:
        return VerifyResult(False, 0, None, sealed)
    if checkpoints.problem:
        return VerifyResult(
            False, 0, _event_named(checkpoints), f"checkpoint file: {checkpoints.problem}"
        )
    missing = _lines_missing(checkpoints)
    if missing:
        return VerifyResult(False, 0, None, f"checkpoint file: {missing}")
    if kind == FULL:
        return verify_chain(
            expectations=checkpoints.expectations(), progress=progress, workers=workers
        )
    base = _base_run()
    heads = {p: (v[0], v[1]) for p, v in (base.heads if base else {}).items()}
    # Only the newest signed line is compared here (the full run compares them all): a
    # rewrite of verified history shows up as a changed head or a changed checkpoint claim.
    claims = checkpoints.expectations(only_latest=True)
    result = verify_partitions_from(heads, expectations=claims, progress=progress)
    if result.last_id is None and base is not None:
        result.last_id = base.last_event_id  # nothing new: still verified as far as before
    if result.ok:
        problem = _claims_by_lookup(claims)
        if problem:
            result.ok, result.first_broken_id, result.problem = False, problem[0], problem[1]
    return result


def _event_named(checkpoints: CheckpointFile) -> int | None:
    """The event a bad line is about (a forged line names the checkpoint event it claims to
    sign); none for a file of another installation."""
    record = checkpoints.problem_record
    if record is None or checkpoints.other_installation:
        return None
    found = (
        AuditEvent.objects.filter(partition=record.get("partition"), chain_seq=record.get("seq"))
        .values_list("id", flat=True)
        .first()
    )
    if found is None and type(record.get("event_id")) is int:
        found = record["event_id"]
    return found


def _lines_missing(checkpoints: CheckpointFile) -> str:
    """With no line of this installation, the database must hold at most one checkpoint
    event (the newest line may still be on its way): otherwise the file is gone, or this
    database's installation id was changed to look elsewhere."""
    if checkpoints.records:
        return ""
    written = AuditEvent.objects.filter(
        partition=GLOBAL_PARTITION, verb=verbs.AUDIT_CHECKPOINT
    ).values_list("id", flat=True)[:2]
    if len(written) < 2:
        return ""
    return (
        f"{checkpoints.path} holds no signed line of installation {installation_id()}, but "
        "this database holds checkpoint events: the file is missing or was moved, or this "
        "database's installation id was changed"
    )


def _claims_by_lookup(claims: Expectations) -> tuple[int | None, str] | None:
    for (partition, seq), sources in sorted(claims.items()):
        row = (
            AuditEvent.objects.filter(partition=partition, chain_seq=seq)
            .values_list("id", "hash")
            .first()
        )
        for digest, source in sources:
            if row is None:
                return None, f"{source} names event {partition}#{seq}, which is missing"
            if row[1] != digest:
                return row[0], f"hash differs from {source}: the table was rewritten"
    return None


def run_verification(
    *,
    kind: str | None = None,
    triggered_by: str = "",
    progress: Progress | None = None,
    workers: int | None = None,
    checkpoint_file: Path | None = None,
) -> AuditVerification:
    """Verify the chain (``kind`` full, incremental, or chosen by ``choose_kind``) against
    the checkpoint file (this installation's, or ``checkpoint_file``), record the run, and
    raise the alarm when it is newly broken. The run's ``checkpoints`` (not stored) is the
    file as read, with its notes."""
    kind = kind or choose_kind()
    started = timezone.now()
    checkpoints = read_checkpoint_file(checkpoint_file)
    result = _verify(kind, checkpoints, progress, workers)
    run = AuditVerification.objects.create(
        kind=kind,
        started_at=started,
        finished_at=timezone.now(),
        ok=result.ok,
        events_checked=result.events,
        last_event_id=result.last_id,
        first_broken_id=result.first_broken_id,
        problem=result.problem,
        heads={p: [seq, digest] for p, (seq, digest) in result.heads.items()},
        checkpoint_lines=len(checkpoints.records),
        triggered_by=triggered_by,
    )
    run.checkpoints = checkpoints
    if not run.ok:
        _raise_alarm(run)
    return run


def _raise_alarm(run: AuditVerification) -> None:
    """Audit the failure and tell the incident owners, once per distinct break."""
    previous = AuditVerification.objects.exclude(pk=run.pk).order_by("-finished_at", "-id").first()
    if (
        previous is not None
        and not previous.ok
        and (previous.first_broken_id, previous.problem) == (run.first_broken_id, run.problem)
    ):
        return
    logger.error("audit chain verification failed: %s (event %s)", run.problem, run.first_broken_id)
    with transaction.atomic():
        append_event(
            verb=verbs.AUDIT_VERIFICATION_FAILED,
            actor=Actor.system("audit-verification"),
            target_type="audit_verification",
            target_id=run.pk,
            data={
                "kind": run.kind,
                "first_broken_id": run.first_broken_id,
                "problem": run.problem[:500],
            },
        )
        _notify_incident_owners(run)


def incident_owners() -> set[Any]:
    """Active people who may engage every kill switch (and superusers)."""
    perm = Q(
        user_permissions__content_type__app_label="rollout",
        user_permissions__codename="kill_agent",
    ) | Q(
        groups__permissions__content_type__app_label="rollout",
        groups__permissions__codename="kill_agent",
    )
    users = get_user_model().objects.filter(is_active=True)
    return set(users.filter(perm | Q(is_superuser=True)).distinct())


def _notify_incident_owners(run: AuditVerification) -> None:
    where = f"event {run.first_broken_id}" if run.first_broken_id else "the checkpoints"
    owe_notice(
        people=incident_owners(),
        subject="Airlock: the audit chain failed verification",
        line=f"Audit chain broken at {where}: {run.problem}",
        link=public_link("audit-search"),
        chat=True,
    )


# --- "Verify now": a run someone asked for, in the background ------------------------------

# A job queued or running for longer than this is taken as lost (its worker died), so it
# no longer blocks the next one.
ABANDONED_AFTER = timedelta(hours=6)


def progress_key(job_id: int) -> str:
    return f"audit:verification-job:{job_id}:done"


def job_progress(job: VerificationJob) -> int:
    """How many events the running ``job`` has walked (as last reported)."""
    return int(cache.get(progress_key(job.pk)) or 0)


def active_job(newest: VerificationJob | None = None) -> VerificationJob | None:
    """The job queued or running now (always the newest: one starts only when none is
    active); one lost long ago is closed as failed first. ``newest``: the newest job, when
    the caller has read it already."""
    job = newest if newest is not None else VerificationJob.objects.first()
    if job is None or not job.active:
        return None
    if timezone.now() - job.requested_at > ABANDONED_AFTER:
        VerificationJob.objects.filter(pk=job.pk, active=True).update(
            active=None,
            state=VerificationJob.State.FAILED,
            finished_at=timezone.now(),
            error="abandoned: no worker finished it",
        )
        job.active, job.state = None, VerificationJob.State.FAILED
        job.error = "abandoned: no worker finished it"
        return None
    return job


def run_job(job_id: int) -> AuditVerification | None:
    """Run the verification ``job_id`` asked for (the worker's side of "Verify now"): its
    walk reports progress to the cache, and the job ends done (with its run) or failed."""
    job = VerificationJob.objects.filter(pk=job_id, active=True).first()
    if job is None:
        return None
    VerificationJob.objects.filter(pk=job.pk).update(state=VerificationJob.State.RUNNING)
    key = progress_key(job.pk)
    cache.set(key, 0, timeout=int(ABANDONED_AFTER.total_seconds()))

    def report(count: int, _last_id: int) -> None:
        cache.set(key, count, timeout=int(ABANDONED_AFTER.total_seconds()))

    try:
        run = run_verification(triggered_by=f"{job.requested_by} (Verify now)", progress=report)
    except Exception as exc:
        VerificationJob.objects.filter(pk=job.pk).update(
            active=None,
            state=VerificationJob.State.FAILED,
            finished_at=timezone.now(),
            error=f"{type(exc).__name__}: {exc}"[:500],
        )
        raise
    VerificationJob.objects.filter(pk=job.pk).update(
        active=None,
        state=VerificationJob.State.DONE,
        finished_at=timezone.now(),
        verification=run,
    )
    cache.delete(key)
    return run


@dataclass
class VerificationStatus:
    latest: AuditVerification | None
    last_ok: AuditVerification | None
    checkpoint: dict | None
    checkpoint_problem: str
    head_id: int | None = None  # the newest event of the log now
    unverified: int = 0  # events after the latest run's last verified one
    job: VerificationJob | None = None  # the run queued or running now
    job_done: int = 0
    last_job: VerificationJob | None = None  # the newest "Verify now", finished or not

    @property
    def state(self) -> str:
        if self.latest is None:
            return "never"
        return "ok" if self.latest.ok else "broken"

    @property
    def verified_through(self) -> int | None:
        return self.latest.last_event_id if self.latest else None

    @property
    def fingerprint(self) -> str:
        """Changes whenever what the status shows changes (a poll that sees the same one
        is answered with nothing, so a screen reader does not hear it again)."""
        job = self.job
        return "-".join(
            str(part)
            for part in (
                self.latest.pk if self.latest else 0,
                self.head_id or 0,
                job.pk if job else 0,
                job.state if job else "",
                self.job_done,
                self.last_job.pk if self.last_job else 0,
                self.checkpoint["event_id"] if self.checkpoint else 0,
            )
        )

    @property
    def job_share(self) -> int | None:
        """Percent of the running job's walk done, when it can be told."""
        if self.job is None or not self.job.events_total:
            return None
        return min(100, int(100 * self.job_done / self.job.events_total))


def verification_status() -> VerificationStatus:
    """The latest run, the last good one, the newest signed checkpoint, how far the log has
    grown since the latest run, and a "Verify now" run in progress, for the page."""
    checkpoint, problem = latest_checkpoint()
    latest = AuditVerification.objects.order_by("-finished_at", "-id").first()
    if latest is None or latest.ok:
        last_ok = latest
    else:
        last_ok = AuditVerification.objects.filter(ok=True).order_by("-finished_at", "-id").first()
    through = (latest.last_event_id if latest else None) or 0
    # Only the events past the verified one are counted (an index range, not the table);
    # events are never deleted, so with none past it the head is the verified one.
    beyond = AuditEvent.objects.filter(id__gt=through).aggregate(n=Count("id"), head=Max("id"))
    head_id = beyond["head"] or (through or None)
    last_job = VerificationJob.objects.first()
    job = active_job(last_job)
    return VerificationStatus(
        latest=latest,
        last_ok=last_ok,
        checkpoint=checkpoint,
        checkpoint_problem=problem,
        head_id=head_id,
        unverified=beyond["n"],
        job=job,
        job_done=job_progress(job) if job else 0,
        last_job=last_job,
    )
