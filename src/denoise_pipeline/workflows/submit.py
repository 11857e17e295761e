"""Submit workflow: an uploaded object becomes exactly one provider job, admitted within provider capacity."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from aws_lambda_powertools import Logger

from .capacity import SLOTS_TAKEN, CapacityGate, free_slot
from .events import EventPublisher, announce
from .jobs import JobStore, TransitionRejected
from .models import ErrorCode, Job, JobStatus, SourceObject, SubmitResult
from .musicgpt import (
    MusicGptClient,
    ProviderAuthError,
    ProviderCreditsError,
    ProviderRateLimited,
    ProviderRejectedError,
)
from .queues import JobQueue
from .settings import SubmitMode
from .sources import InputObjects, WebhookLinks

logger = Logger(child=True)
ACCOUNT_PAUSE_SECONDS = 300.0


class Outcome(StrEnum):
    SUBMITTED = "SUBMITTED"
    QUEUED = "QUEUED"
    FAILED = "FAILED"
    DUPLICATE = "DUPLICATE"
    SKIPPED = "SKIPPED"


@dataclass(frozen=True)
class SubmitDeps:
    store: JobStore
    gate: CapacityGate
    provider: MusicGptClient
    inputs: InputObjects
    links: WebhookLinks
    events: EventPublisher
    admission: JobQueue
    mode: SubmitMode
    max_attempts: int


@dataclass(frozen=True)
class SubmitReport:
    outcome: Outcome
    job_id: str | None
    detail: str = ""


def handle_new_object(source: SourceObject, deps: SubmitDeps) -> SubmitReport:
    """Create the job (once per object version) and submit it, or queue it when the provider is at capacity.

    Raises ProviderRetryableError on a transient provider failure after giving the lease back, so the
    caller's retry (Lambda's async retry, the reconciler) submits the same job again.
    """
    skip = source.skip_reason
    if skip:
        return SubmitReport(Outcome.SKIPPED, None, skip)
    wait = deps.gate.wait_reason(source.job_id)
    job = deps.store.create_queued(source, wait) if wait else deps.store.create_claimed(source)
    if job is None:
        job = deps.store.claim(source.job_id)
        if job is None:
            current = deps.store.find(source.job_id)
            state = current.status.value if current else "unknown"
            return SubmitReport(Outcome.DUPLICATE, source.job_id, f"already handled ({state})")
        return submit_claimed(job, deps)
    if wait:
        return SubmitReport(Outcome.QUEUED, job.job_id, wait)
    return _submit_in_a_slot(job, deps)


def submit_claimed(job: Job, deps: SubmitDeps) -> SubmitReport:
    """Submit a job whose lease the caller holds."""
    if job.submit_attempts > deps.max_attempts:
        failed = deps.store.mark_failed(
            job.job_id,
            ErrorCode.SUBMIT_ATTEMPTS_EXHAUSTED,
            f"gave up after {deps.max_attempts} submit attempts",
            from_states=(JobStatus.RECEIVED, JobStatus.QUEUED),
        )
        announce(failed, deps.store, deps.events)
        return SubmitReport(Outcome.FAILED, job.job_id, failed.error_message or "")
    reason = deps.gate.wait_reason(job.job_id)
    if reason:
        deps.store.mark_queued(job.job_id, reason)
        return SubmitReport(Outcome.QUEUED, job.job_id, reason)
    return _submit_in_a_slot(job, deps)


def _submit_in_a_slot(job: Job, deps: SubmitDeps) -> SubmitReport:
    """Take a slot and submit; the caller holds the lease and has read that a slot looked free."""
    slot = deps.gate.try_acquire(job.job_id)
    if slot is None:  # another job took the last slot between the read and the write
        deps.store.mark_queued(job.job_id, SLOTS_TAKEN)
        return SubmitReport(Outcome.QUEUED, job.job_id, SLOTS_TAKEN)
    try:
        result = _call_provider(job, deps)
    except ProviderRateLimited as exc:
        return _rate_limited(job, exc, deps)
    except ProviderRejectedError as exc:
        return _refused(job, exc, deps)
    except Exception:
        deps.gate.release(job.job_id)
        deps.store.release_lease(job.job_id)
        raise
    try:
        deps.store.mark_submitted(job.job_id, result)
    except TransitionRejected:
        # Only the lease holder submits, so this means the lease expired mid-call and the job moved on.
        logger.error("job changed state while submitting", extra={"task_id": result.task_id})
        raise
    if slot.rate_limit_streak:
        deps.gate.record_success()
    return SubmitReport(Outcome.SUBMITTED, job.job_id, result.task_id)


def _call_provider(job: Job, deps: SubmitDeps) -> SubmitResult:
    webhook_url = deps.links.url_for(job.job_id)
    if deps.mode is SubmitMode.AUDIO_FILE:
        return deps.provider.submit_denoise(audio_file=deps.inputs.upload(job.source), webhook_url=webhook_url)
    return deps.provider.submit_denoise(audio_url=deps.inputs.presigned_url(job.source), webhook_url=webhook_url)


def _rate_limited(job: Job, exc: ProviderRateLimited, deps: SubmitDeps) -> SubmitReport:
    """429 despite our own count: queue the job, pause admission, and wake it up when the pause ends."""
    deps.gate.release(job.job_id)
    pause = deps.gate.pause(exc.message, exc.retry_after)
    detail = f"provider rate limit ({exc.message}); admission paused until {pause.until}"
    deps.store.mark_queued(job.job_id, detail)
    deps.admission.enqueue(job.job_id, delay_seconds=pause.seconds)
    return SubmitReport(Outcome.QUEUED, job.job_id, detail)


def _refused(job: Job, exc: ProviderRejectedError, deps: SubmitDeps) -> SubmitReport:
    """A permanent refusal fails the job; its slot goes to the next job unless the account itself is the problem."""
    if isinstance(exc, ProviderAuthError | ProviderCreditsError):
        # The next job would fail the same way (bad key, no credits): hold the queue instead of draining it.
        deps.gate.release(job.job_id)
        deps.gate.pause(f"account problem: {exc.message}", ACCOUNT_PAUSE_SECONDS)
    else:
        free_slot(deps.gate, deps.admission, job.job_id)
    failed = deps.store.mark_failed(
        job.job_id, _error_code(exc), exc.message, from_states=(JobStatus.RECEIVED, JobStatus.QUEUED)
    )
    announce(failed, deps.store, deps.events)
    return SubmitReport(Outcome.FAILED, job.job_id, exc.message)


def admit_queued(deps: SubmitDeps, *, limit: int = 25) -> int:
    """Submit queued jobs, oldest first, while slots are free. Returns how many were submitted."""
    submitted = 0
    free = deps.gate.free_slots()
    if free == 0:
        return 0
    # Twice as many candidates as free slots, as a twin may claim some first; but no more submissions than free
    # slots, as one more claim would find no slot and cost a claim and a re-queue for nothing.
    for job in deps.store.list_by_status(JobStatus.QUEUED, limit=min(limit, free * 2)):
        claimed = deps.store.claim(job.job_id)
        if claimed is None:
            continue
        report = submit_claimed(claimed, deps)
        if report.outcome is Outcome.QUEUED:
            break
        submitted += report.outcome is Outcome.SUBMITTED
        if submitted >= free:
            break
    return submitted


def _error_code(exc: ProviderRejectedError) -> ErrorCode:
    if isinstance(exc, ProviderAuthError):
        return ErrorCode.PROVIDER_AUTH
    if isinstance(exc, ProviderCreditsError):
        return ErrorCode.INSUFFICIENT_CREDITS
    return ErrorCode.PROVIDER_REJECTED
