"""Reconcile workflow: a lost webhook, a lost copy message, a crashed submit or a leaked slot is not a lost job."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from aws_lambda_powertools import Logger

from ..adapters.capacity import LookupBudget
from ..adapters.musicgpt import ProviderError
from ..clock import from_iso, iso
from ..domain.callback import Accepted, CallbackResult, Failed
from ..domain.job import WAITING_STATES, ErrorCode, Job, JobStatus, TransitionRejected
from .callback import record_lookup
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


@dataclass(frozen=True)
class ReconcileDeps:
    submit: SubmitDeps
    budget: LookupBudget
    """Status lookups share the provider's per-minute limit with the submit function's confirmations."""
    policy: ReconcilePolicy


def reconcile(now: datetime, deps: ReconcileDeps) -> ReconcileReport:
    report = ReconcileReport()
    report.slots_released = release_leaked_slots(now, deps.submit)
    _check_submitted(now, deps, report)
    _requeue_stuck_copies(now, deps, report)
    _redrive_received(now, deps, report)
    report.events_republished = _republish_events(now, deps)
    report.admitted = admit_queued(deps.submit)
    return report


def release_leaked_slots(now: datetime, deps: SubmitDeps) -> int:
    """A slot is held legitimately by a job at the provider (SUBMITTED), one whose copy has not started yet
    (COPYING; the copy frees it, and a stuck copy is re-queued), or a waiting job whose submit lease is live."""
    gate = deps.lifecycle.gate
    released = 0
    for job_id in gate.state().holders:
        job = deps.store.find(job_id)
        legitimate = job is not None and (
            job.status in (JobStatus.SUBMITTED, JobStatus.COPYING)
            or (job.status in WAITING_STATES and not _lease_expired(job, now))
        )
        if not legitimate:
            released += gate.release(job_id)
    return released


def _check_submitted(now: datetime, deps: ReconcileDeps, report: ReconcileReport) -> None:
    policy = deps.policy
    for job in deps.submit.store.list_by_status(
        JobStatus.SUBMITTED, older_than=now - policy.stale_after, limit=policy.lookup_limit
    ):
        result = _look_up(job, deps, report)
        if isinstance(result, Accepted | Failed):
            report.completed_by_lookup += isinstance(result, Accepted)
            report.failed_by_lookup += isinstance(result, Failed)
        elif _age(job, now) > policy.max_age:
            report.timed_out += _time_out(job, deps)


def _look_up(job: Job, deps: ReconcileDeps, report: ReconcileReport) -> CallbackResult | None:
    if deps.budget.take():
        logger.info("status lookup budget used up for this minute", extra={"job_id": job.job_id})
        return None
    report.looked_up += 1
    try:
        outcome = deps.submit.provider.get_status(task_id=job.task_id or "")
    except ProviderError as exc:
        logger.warning("status lookup failed", extra={"job_id": job.job_id, "error": exc.message})
        return None
    return record_lookup(job, outcome, deps.submit.recorder)


def _time_out(job: Job, deps: ReconcileDeps) -> int:
    try:
        timed_out = deps.submit.store.mark_failed(
            job.job_id,
            ErrorCode.TIMED_OUT,
            f"no result from the provider since {job.status_at}",
            from_states=(JobStatus.SUBMITTED,),
            target=JobStatus.TIMED_OUT,
        )
    except TransitionRejected:
        return 0
    deps.submit.lifecycle.free_slot(timed_out.job_id)
    deps.submit.lifecycle.announce(timed_out)
    return 1


def _republish_events(now: datetime, deps: ReconcileDeps) -> int:
    """Final jobs whose event never went out (EventBridge error, crash after the transition) get it now."""
    pending = deps.submit.store.list_pending_events(older_than=now - deps.policy.stale_after)
    for job in pending:
        deps.submit.lifecycle.announce(job)
    return len(pending)


def _requeue_stuck_copies(now: datetime, deps: ReconcileDeps, report: ReconcileReport) -> None:
    stale = now - deps.policy.stale_after
    for job in deps.submit.store.list_by_status(JobStatus.COPYING, older_than=stale, limit=100):
        deps.submit.recorder.copy_queue.enqueue(job.job_id)
        report.copies_requeued += 1


def _redrive_received(now: datetime, deps: ReconcileDeps, report: ReconcileReport) -> None:
    """RECEIVED for long means the submit crashed after creating the job and its retries ran out."""
    stale = now - deps.policy.stale_after
    for job in deps.submit.store.list_by_status(JobStatus.RECEIVED, older_than=stale, limit=25):
        claimed = deps.submit.reservations.claim(job.job_id, now)
        if claimed is None:
            continue
        try:
            submit_claimed(claimed, deps.submit)
        except ProviderError as exc:
            logger.warning("re-drive failed; will try again", extra={"job_id": job.job_id, "error": exc.message})
        report.redriven += 1


def _lease_expired(job: Job, now: datetime) -> bool:
    return job.lease_until is None or job.lease_until < iso(now)


def _age(job: Job, now: datetime) -> timedelta:
    started = job.timestamps.get("submitted_at") or job.status_at
    return now - from_iso(started) if started else timedelta(0)
