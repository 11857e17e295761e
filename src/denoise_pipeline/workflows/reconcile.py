"""Reconciler: a lost webhook, a lost copy message, a crashed submit or a leaked slot is not a lost job."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from aws_lambda_powertools import Logger

from .callbacks import CallbackRejected
from .capacity import free_slot
from .complete import CompletionDeps, record_outcome
from .events import announce
from .jobs import TransitionRejected, lease_expired
from .models import WAITING_STATES, ErrorCode, Job, JobStatus
from .musicgpt import ProviderError
from .submit import SubmitDeps, admit_queued, submit_claimed

logger = Logger(child=True)


@dataclass
class ReconcileReport:
    slots_released: int = 0
    looked_up: int = 0
    completed_by_lookup: int = 0
    failed_by_lookup: int = 0
    timed_out: int = 0
    copies_requeued: int = 0
    redriven: int = 0
    events_republished: int = 0
    admitted: int = 0


@dataclass(frozen=True)
class ReconcilePolicy:
    stale_after: timedelta
    max_age: timedelta
    lookup_limit: int


def reconcile(now: datetime, submit: SubmitDeps, complete: CompletionDeps, policy: ReconcilePolicy) -> ReconcileReport:
    report = ReconcileReport()
    report.slots_released = release_leaked_slots(now, submit)
    _check_submitted(now, submit, complete, policy, report)
    _requeue_stuck_copies(now, complete, policy, report)
    _redrive_received(now, submit, policy, report)
    report.events_republished = _republish_events(now, complete, policy)
    report.admitted = admit_queued(submit)
    return report


def release_leaked_slots(now: datetime, deps: SubmitDeps) -> int:
    """A slot is held legitimately by a job at the provider (SUBMITTED), one whose copy has not started yet
    (COPYING; the copy frees it, and a stuck copy is re-queued), or a waiting job whose submit lease is live."""
    released = 0
    for job_id in deps.gate.state().holders:
        job = deps.store.find(job_id)
        legitimate = job is not None and (
            job.status in (JobStatus.SUBMITTED, JobStatus.COPYING)
            or (job.status in WAITING_STATES and not lease_expired(job, now))
        )
        if not legitimate:
            released += deps.gate.release(job_id)
    return released


def _check_submitted(
    now: datetime, submit: SubmitDeps, complete: CompletionDeps, policy: ReconcilePolicy, report: ReconcileReport
) -> None:
    for job in complete.store.list_by_status(
        JobStatus.SUBMITTED, older_than=now - policy.stale_after, limit=policy.lookup_limit
    ):
        report.looked_up += 1
        try:
            outcome = submit.provider.get_status(task_id=job.task_id or "")
        except ProviderError as exc:
            logger.warning("status lookup failed", extra={"job_id": job.job_id, "error": exc.message})
        else:
            if outcome.finished and (outcome.outputs or not outcome.succeeded):
                try:
                    answer = record_outcome(job.job_id, outcome, complete)
                except CallbackRejected:
                    continue  # the webhook won the race, or the provider named another task: nothing to do here
                if not answer.body.get("duplicate"):
                    report.completed_by_lookup += outcome.succeeded
                    report.failed_by_lookup += not outcome.succeeded
                continue
        if _age(job, now) > policy.max_age:
            report.timed_out += _time_out(job, complete)


def _time_out(job: Job, deps: CompletionDeps) -> int:
    try:
        timed_out = deps.store.mark_failed(
            job.job_id,
            ErrorCode.TIMED_OUT,
            f"no result from the provider since {job.status_at}",
            from_states=(JobStatus.SUBMITTED,),
            target=JobStatus.TIMED_OUT,
        )
    except TransitionRejected:
        return 0
    free_slot(deps.gate, deps.admission, timed_out.job_id)
    announce(timed_out, deps.store, deps.events)
    return 1


def _republish_events(now: datetime, deps: CompletionDeps, policy: ReconcilePolicy) -> int:
    """Final jobs whose event never went out (EventBridge error, crash after the transition) get it now."""
    pending = deps.store.list_pending_events(older_than=now - policy.stale_after)
    for job in pending:
        announce(job, deps.store, deps.events)
    return len(pending)


def _requeue_stuck_copies(
    now: datetime, deps: CompletionDeps, policy: ReconcilePolicy, report: ReconcileReport
) -> None:
    for job in deps.store.list_by_status(JobStatus.COPYING, older_than=now - policy.stale_after, limit=100):
        deps.copy_queue.enqueue(job.job_id)
        report.copies_requeued += 1


def _redrive_received(now: datetime, deps: SubmitDeps, policy: ReconcilePolicy, report: ReconcileReport) -> None:
    """RECEIVED for long means the submit crashed after creating the job and its retries ran out."""
    for job in deps.store.list_by_status(JobStatus.RECEIVED, older_than=now - policy.stale_after, limit=25):
        claimed = deps.store.claim(job.job_id, now)
        if claimed is None:
            continue
        try:
            submit_claimed(claimed, deps)
        except ProviderError as exc:
            logger.warning("re-drive failed; will try again", extra={"job_id": job.job_id, "error": exc.message})
        report.redriven += 1


def _age(job: Job, now: datetime) -> timedelta:
    started = job.timestamps.get("submitted_at") or job.status_at
    return now - datetime.fromisoformat(started.replace("Z", "+00:00")) if started else timedelta(0)
