"""Submit workflow: an uploaded object becomes exactly one provider job, admitted within provider capacity."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from aws_lambda_powertools import Logger

from ..adapters.input_objects import InputObjects
from ..adapters.job_store import JobStore
from ..adapters.musicgpt import (
    MusicGptClient,
    ProviderAnswerUnreadable,
    ProviderAuthError,
    ProviderCreditsError,
    ProviderError,
    ProviderRateLimited,
    ProviderRejectedError,
)
from ..adapters.reservations import Reservation, Reservations, Waiting
from ..domain.job import WAITING_STATES, ErrorCode, Job, JobStatus, TransitionRejected
from ..domain.outcome import ConversionOutcome
from ..domain.source import SourceObject
from ..domain.submission import SubmitMode, SubmitResult
from ..domain.tokens import WebhookLinks
from .callback import Recorder, record_outcome
from .lifecycle import Lifecycle

logger = Logger(child=True)
ACCOUNT_PAUSE_SECONDS = 300.0


class Outcome(StrEnum):
    SUBMITTED = "SUBMITTED"
    ADOPTED = "ADOPTED"
    """A callback had arrived before the submit was recorded: its task was taken, nothing was sent again."""
    QUEUED = "QUEUED"
    FAILED = "FAILED"
    DUPLICATE = "DUPLICATE"
    SKIPPED = "SKIPPED"


@dataclass(frozen=True, eq=False, repr=False)
class SubmitDeps:
    """What submitting a job needs; collaborators, so compared and shown by identity."""

    store: JobStore
    reservations: Reservations
    provider: MusicGptClient
    inputs: InputObjects
    links: WebhookLinks
    lifecycle: Lifecycle
    recorder: Recorder
    mode: SubmitMode
    max_attempts: int


@dataclass(frozen=True)
class SubmitReport:
    """What handling one uploaded object came to."""

    outcome: Outcome
    job_id: str | None
    detail: str = ""


def handle_new_object(source: SourceObject, deps: SubmitDeps) -> SubmitReport:
    """Create the job (once per object version) and submit it, or queue it when the provider is at capacity.

    Raises ProviderRetryableError on a transient provider failure after giving the reservation back, so the
    caller's retry (Lambda's async retry, the reconciler) submits the same job again.
    """
    skip = source.skip_reason
    if skip:
        return SubmitReport(Outcome.SKIPPED, None, skip)
    opened = deps.reservations.open(source)
    if isinstance(opened, Waiting):
        return SubmitReport(Outcome.QUEUED, opened.job_id, opened.reason)
    if opened is not None:
        return _submit(opened, deps)
    job = deps.reservations.claim(source.job_id)
    if job is None:
        current = deps.store.find(source.job_id)
        state = current.status.value if current else "unknown"
        return SubmitReport(Outcome.DUPLICATE, source.job_id, f"already handled ({state})")
    return submit_claimed(job, deps)


def submit_claimed(job: Job, deps: SubmitDeps) -> SubmitReport:
    """Submit a job whose lease the caller holds (or adopt the task of a callback kept on it)."""
    if job.early_callback is not None:
        return _adopt(job, job.early_callback, deps)
    if job.submit_attempts > deps.max_attempts:
        failed = deps.store.mark_failed(
            job.job_id,
            ErrorCode.SUBMIT_ATTEMPTS_EXHAUSTED,
            f"gave up after {deps.max_attempts} submit attempts",
            from_states=WAITING_STATES,
        )
        deps.lifecycle.announce(failed)
        return SubmitReport(Outcome.FAILED, job.job_id, failed.error_message or "")
    reserved = deps.reservations.reserve(job)
    if isinstance(reserved, Waiting):
        return SubmitReport(Outcome.QUEUED, job.job_id, reserved.reason)
    return _submit(reserved, deps)


def _submit(reservation: Reservation, deps: SubmitDeps) -> SubmitReport:
    job = reservation.job
    try:
        result = _call_provider(job, deps)
    except ProviderRateLimited as exc:
        waiting = reservation.rate_limited(exc.message, exc.retry_after)
        deps.lifecycle.wake_admission_after(job.job_id, waiting.resume_in)
        return SubmitReport(Outcome.QUEUED, job.job_id, waiting.reason)
    except ProviderRejectedError as exc:
        return _refused(reservation, exc, _error_code(exc), deps)
    except ProviderAnswerUnreadable as exc:
        deps.store.record_surprise(job.job_id, "submit", [exc.message], exc.answer)
        return _refused(reservation, exc, ErrorCode.PROVIDER_ANSWER_UNREADABLE, deps)
    except Exception:
        reservation.cancel()
        raise
    try:
        submitted = reservation.confirm(result)
    except TransitionRejected:
        # Only the lease holder submits, so this means the lease expired mid-call and the job moved on.
        logger.error("job changed state while submitting", extra={"task_id": result.task_id})
        raise
    kept = submitted.early_callback
    if kept is not None and kept.task_id == result.task_id:  # the provider called back before our write landed
        record_outcome(job.job_id, kept, deps.recorder)
    elif kept is not None:
        logger.warning("a kept callback names another task than this submit's", extra={"kept_task": kept.task_id})
    return SubmitReport(Outcome.SUBMITTED, job.job_id, result.task_id)


def _adopt(job: Job, kept: ConversionOutcome, deps: SubmitDeps) -> SubmitReport:
    deps.reservations.adopt(job, kept)
    record_outcome(job.job_id, kept, deps.recorder)
    return SubmitReport(Outcome.ADOPTED, job.job_id, kept.task_id)


def _call_provider(job: Job, deps: SubmitDeps) -> SubmitResult:
    webhook_url = deps.links.url_for(job.job_id)
    if deps.mode is SubmitMode.AUDIO_FILE:
        return deps.provider.submit_denoise(audio_file=deps.inputs.upload(job.source), webhook_url=webhook_url)
    return deps.provider.submit_denoise(audio_url=deps.inputs.presigned_url(job.source), webhook_url=webhook_url)


def _refused(reservation: Reservation, exc: ProviderError, code: ErrorCode, deps: SubmitDeps) -> SubmitReport:
    """A permanent refusal (or an answer we cannot read: the job may exist there, so it is not sent again) fails
    the job; its slot goes to the next job unless the account itself is the problem (a bad key or no credits would
    fail the next job the same way: the queue is held instead of drained)."""
    account_problem = isinstance(exc, ProviderAuthError | ProviderCreditsError)
    refused = reservation.refuse(
        code, exc.message, hold_admission_for=ACCOUNT_PAUSE_SECONDS if account_problem else None
    )
    if refused.slot_freed:
        deps.lifecycle.slot_freed(refused.job.job_id)
    deps.lifecycle.announce(refused.job)
    return SubmitReport(Outcome.FAILED, refused.job.job_id, exc.message)


def resume(job_id: str, deps: SubmitDeps) -> SubmitReport | None:
    """A callback was kept on a waiting job: take the lease and settle the job now (it adopts the callback's task).
    None when another submit holds the lease (it applies the callback itself) or the job moved on."""
    claimed = deps.reservations.claim(job_id)
    return None if claimed is None else submit_claimed(claimed, deps)


def admit_queued(deps: SubmitDeps, *, limit: int = 25) -> int:
    """Submit queued jobs, oldest first, while slots are free. Returns how many were submitted."""
    free = deps.reservations.free_slots()
    if free == 0:
        return 0
    submitted = 0
    # Twice as many candidates as free slots, as a twin may claim some first; but no more submissions than free
    # slots, as one more claim would find no slot and cost a claim and a re-queue for nothing.
    for job in deps.store.list_by_status(JobStatus.QUEUED, limit=min(limit, free * 2)):
        claimed = deps.reservations.claim(job.job_id)
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
