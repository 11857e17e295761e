"""Reconcile workflow: a lost webhook, a lost copy message, a crashed submit or a leaked slot is not a lost job.

Every job is swept on its own: an exception on one is logged with its job id, counted (on the job and in the
report) and the sweep goes on; a job the sweep fails on `SWEEP_FAILURE_LIMIT` times in a row ends FAILED with the
reason, and gives its provider slot back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from aws_lambda_powertools import Logger

from ..adapters.capacity import LookupBudget
from ..adapters.musicgpt import ProviderError
from ..clock import from_iso, iso
from ..domain.callback import Accepted, CallbackResult, Failed
from ..domain.job import WAITING_STATES, ErrorCode, Job, JobStatus, TransitionRejected
from .callback import record_lookup
from .submit import SubmitDeps, admit_queued, submit_claimed

logger = Logger(child=True)
SWEEP_FAILURE_LIMIT = 3


@dataclass
class ReconcileReport:
    """What one reconciler run did, counted per kind of repair."""

    slots_released: int = 0
    looked_up: int = 0
    completed_by_lookup: int = 0
    failed_by_lookup: int = 0
    timed_out: int = 0
    copies_requeued: int = 0
    redriven: int = 0
    events_republished: int = 0
    admitted: int = 0
    job_errors: int = 0
    """Jobs the sweep failed on this time (each logged with its job id)."""
    failed_by_sweep: int = 0
    """Jobs failed because the sweep failed on them SWEEP_FAILURE_LIMIT times in a row."""


@dataclass(frozen=True)
class ReconcilePolicy:
    """When a job counts as stuck or too old, and how many status lookups a run may make."""

    stale_after: timedelta
    max_age: timedelta
    lookup_limit: int


@dataclass(frozen=True, eq=False, repr=False)
class ReconcileDeps:
    """What a reconciler run needs; collaborators, so compared and shown by identity."""

    submit: SubmitDeps
    budget: LookupBudget
    """Status lookups share the provider's per-minute limit with the submit function's confirmations."""
    policy: ReconcilePolicy


class _Sweep:
    def __init__(self, now: datetime, deps: ReconcileDeps) -> None:
        self.now = now
        self.deps = deps
        self.report = ReconcileReport()

    def each(self, job_id: str, action: Callable[[], int], sweep_failures: int = 0) -> int:
        """Run one job's part of the sweep in isolation; returns what it counted (0 when it failed)."""
        try:
            counted = action()
            if sweep_failures:
                self.deps.submit.store.clear_sweep_failures(job_id)
        except Exception as exc:  # noqa: BLE001 - one job's failure never stops the sweep; it is logged and counted
            logger.exception("the sweep failed on a job", extra={"job_id": job_id})
            self.report.job_errors += 1
            self._count_failure(job_id, f"{type(exc).__name__}: {exc}")
            return 0
        return counted

    def _count_failure(self, job_id: str, reason: str) -> None:
        store, lifecycle = self.deps.submit.store, self.deps.submit.lifecycle
        try:
            failures = store.record_sweep_failure(job_id, reason)
            if failures < SWEEP_FAILURE_LIMIT:
                return
            failed = store.mark_failed(
                job_id, ErrorCode.SWEEP_FAILED, f"the reconciler failed on this job {failures} times in a row: {reason}"
            )
        except TransitionRejected:
            return  # final already (an event that cannot be published yet): nothing to fail
        except Exception:  # noqa: BLE001 - recording the failure failed too; the next sweep tries again
            logger.exception("could not record a sweep failure", extra={"job_id": job_id})
            return
        self.report.failed_by_sweep += 1
        try:
            lifecycle.free_slot(job_id)
        except Exception:  # noqa: BLE001 - the job is final: a later sweep releases its slot as a leaked one
            logger.exception("could not free the slot of a job the sweep failed", extra={"job_id": job_id})
        self.each(job_id, partial(_announce, failed, self.deps))


def reconcile(now: datetime, deps: ReconcileDeps) -> ReconcileReport:
    sweep = _Sweep(now, deps)
    _release_leaked_slots(sweep)
    _check_submitted(sweep)
    _requeue_stuck_copies(sweep)
    _redrive_received(sweep)
    _republish_events(sweep)
    sweep.report.admitted = admit_queued(deps.submit)
    return sweep.report


def _release_leaked_slots(sweep: _Sweep) -> None:
    """A slot is held legitimately by a job at the provider (SUBMITTED), one whose copy has not started yet
    (COPYING; the copy frees it, and a stuck copy is re-queued), or a waiting job whose submit lease is live."""
    deps = sweep.deps.submit
    gate = deps.lifecycle.gate

    def check(job_id: str) -> int:
        job = deps.store.find(job_id)
        legitimate = job is not None and (
            job.status in (JobStatus.SUBMITTED, JobStatus.COPYING)
            or (job.status in WAITING_STATES and not _lease_expired(job.lease_until, sweep.now))
        )
        return 0 if legitimate else int(gate.release(job_id))

    for job_id in gate.state().holders:
        sweep.report.slots_released += sweep.each(job_id, partial(check, job_id))


def _check_submitted(sweep: _Sweep) -> None:
    policy, report = sweep.deps.policy, sweep.report

    def check(job: Job) -> int:
        result = _look_up(job, sweep)
        if isinstance(result, Accepted | Failed):
            report.completed_by_lookup += isinstance(result, Accepted)
            report.failed_by_lookup += isinstance(result, Failed)
            return 0
        return _time_out(job, sweep.deps) if _age(job, sweep.now) > policy.max_age else 0

    stale = sweep.now - policy.stale_after
    for job in sweep.deps.submit.store.list_by_status(JobStatus.SUBMITTED, older_than=stale, limit=policy.lookup_limit):
        report.timed_out += sweep.each(job.job_id, partial(check, job), job.sweep_failures)


def _look_up(job: Job, sweep: _Sweep) -> CallbackResult | None:
    if sweep.deps.budget.take():
        logger.info("status lookup budget used up for this minute", extra={"job_id": job.job_id})
        return None
    sweep.report.looked_up += 1
    try:
        outcome = sweep.deps.submit.provider.get_status(task_id=job.task_id or "")
    except ProviderError as exc:
        logger.warning("status lookup failed", extra={"job_id": job.job_id, "error": exc.message})
        return None
    return record_lookup(job, outcome, sweep.deps.submit.recorder)


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


def _republish_events(sweep: _Sweep) -> None:
    """Final jobs whose event never went out (EventBridge error, crash after the transition) get it now."""
    deps = sweep.deps
    for job in deps.submit.store.list_pending_events(older_than=sweep.now - deps.policy.stale_after):
        sweep.report.events_republished += sweep.each(job.job_id, partial(_announce, job, deps), job.sweep_failures)


def _announce(job: Job, deps: ReconcileDeps) -> int:
    deps.submit.lifecycle.publish(job)  # raises: a failure is counted on the job like any other
    return 1


def _requeue_stuck_copies(sweep: _Sweep) -> None:
    """A COPYING job whose copy attempt is not running (no live lease) and that waits too long is queued again;
    the copy worker fails it once its attempts are used up."""
    deps = sweep.deps

    def requeue(job: Job) -> int:
        if not _lease_expired(job.copy_lease_until, sweep.now):
            return 0
        deps.submit.recorder.copy_queue.enqueue(job.job_id)
        return 1

    stale = sweep.now - deps.policy.stale_after
    for job in deps.submit.store.list_by_status(JobStatus.COPYING, older_than=stale, limit=100):
        sweep.report.copies_requeued += sweep.each(job.job_id, partial(requeue, job), job.sweep_failures)


def _redrive_received(sweep: _Sweep) -> None:
    """RECEIVED for long means the submit crashed after creating the job and its retries ran out."""
    deps = sweep.deps.submit

    def redrive(job: Job) -> int:
        claimed = deps.reservations.claim(job.job_id, sweep.now)
        if claimed is None:
            return 0
        try:
            submit_claimed(claimed, deps)
        except ProviderError as exc:
            logger.warning("re-drive failed; will try again", extra={"job_id": job.job_id, "error": exc.message})
        return 1

    stale = sweep.now - sweep.deps.policy.stale_after
    for job in deps.store.list_by_status(JobStatus.RECEIVED, older_than=stale, limit=25):
        sweep.report.redriven += sweep.each(job.job_id, partial(redrive, job), job.sweep_failures)


def _lease_expired(lease_until: str | None, now: datetime) -> bool:
    return lease_until is None or lease_until < iso(now)


def _age(job: Job, now: datetime) -> timedelta:
    started = job.timestamps.get("submitted_at") or job.status_at
    return now - from_iso(started) if started else timedelta(0)
