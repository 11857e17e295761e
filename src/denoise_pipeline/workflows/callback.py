"""Completion workflow: accept a verified callback durably, then copy outputs and record the final state."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from .callbacks import ConflictingCallback, InvalidCallback, UnknownCallback, parse_callback, verify_token
from .capacity import CapacityGate, free_slot
from .events import EventPublisher, announce
from .jobs import JobStore, TransitionRejected
from .models import ConversionOutcome, ErrorCode, Job, JobStatus, OutputName, output_key
from .musicgpt import MusicGptClient
from .queues import JobQueue
from .transfer import CopyError, OutputCopier, OutputRefused, OutputTooLarge, UrlPolicy

logger = Logger(child=True)


@dataclass(frozen=True)
class CompletionDeps:
    store: JobStore
    gate: CapacityGate
    copier: OutputCopier
    copy_queue: JobQueue
    admission: JobQueue
    events: EventPublisher
    output_bucket: str
    output_prefix: str
    max_copy_attempts: int
    provider: MusicGptClient | None = None
    confirm_with_status_lookup: bool = False


@dataclass(frozen=True)
class CallbackAnswer:
    status_code: int
    body: dict[str, Any]


@dataclass(frozen=True)
class CopyReport:
    job: Job
    copied_bytes: int


def accept_callback(
    job_id: str,
    token: str,
    payload_source: Callable[[], dict[str, Any]],
    secrets: Callable[[], Sequence[str]],
    deps: CompletionDeps,
) -> CallbackAnswer:
    """Verify, parse and record a provider callback; the copy happens later, off the request path.

    Order matters: the token, then the body and its output URLs, then one conditional write that checks the job
    exists, is SUBMITTED and has this task id, all at once. Nothing is written or fetched before every check passed.
    """
    verify_token(secrets, job_id, token)
    outcome = parse_callback(payload_source())
    if outcome.succeeded:
        _refuse_unsafe_urls(outcome, deps.copier.policy)
    if deps.confirm_with_status_lookup and deps.provider is not None:
        outcome = _confirmed(outcome, deps.provider)
    return record_outcome(job_id, outcome, deps)


def _refuse_unsafe_urls(outcome: ConversionOutcome, policy: UrlPolicy) -> None:
    """SSRF guard before anything is written; the copier checks again at fetch time (DNS may change)."""
    for url in outcome.outputs.values():
        try:
            policy.check_resolved(url)
        except OutputRefused as exc:
            raise InvalidCallback(f"output URL refused: {exc}") from exc
        except CopyError:
            continue  # a resolution hiccup is not a verdict; the copy resolves again and retries


def record_outcome(job_id: str, outcome: ConversionOutcome, deps: CompletionDeps) -> CallbackAnswer:
    """Shared by the webhook and the reconciler: SUBMITTED → COPYING (+ copy queued) or → FAILED.

    Raises CallbackRejected when the job is unknown, not SUBMITTED or has another task id (a duplicate of an
    accepted callback is answered 200 instead); the job is read only then, to tell those cases apart.
    """
    try:
        if outcome.succeeded:
            deps.store.mark_copying(job_id, outcome)
        else:
            failed = deps.store.mark_failed(
                job_id,
                ErrorCode.CONVERSION_FAILED,
                outcome.message,
                from_states=(JobStatus.SUBMITTED,),
                task_id=outcome.task_id,
            )
    except TransitionRejected:
        return _refusal(job_id, outcome, deps)
    if outcome.succeeded:
        deps.copy_queue.enqueue(job_id)  # the copy worker frees the slot as it starts: a short ack path
        return CallbackAnswer(202, {"job_id": job_id, "status": JobStatus.COPYING.value})
    free_slot(deps.gate, deps.admission, job_id)
    announce(failed, deps.store, deps.events)
    return CallbackAnswer(200, {"job_id": job_id, "status": failed.status.value})


def _refusal(job_id: str, outcome: ConversionOutcome, deps: CompletionDeps) -> CallbackAnswer:
    current = deps.store.find(job_id)
    if current is None:
        raise UnknownCallback
    if current.task_id is not None and current.task_id != outcome.task_id:
        raise ConflictingCallback("task_id does not match this job")
    duplicate = _duplicate_answer(current)
    if duplicate:
        return duplicate
    raise ConflictingCallback(f"job is {current.status.value}; a callback is accepted only once it is SUBMITTED")


def _duplicate_answer(job: Job) -> CallbackAnswer | None:
    """A repeated callback for an accepted job is answered 200 and changes nothing."""
    if job.status in (JobStatus.COPYING, JobStatus.COMPLETED) or (
        job.status is JobStatus.FAILED and job.error_code == ErrorCode.CONVERSION_FAILED
    ):
        return CallbackAnswer(200, {"job_id": job.job_id, "status": job.status.value, "duplicate": True})
    return None


def _confirmed(outcome: ConversionOutcome, provider: MusicGptClient) -> ConversionOutcome:
    status = provider.get_status(task_id=outcome.task_id)
    if not status.finished or status.succeeded != outcome.succeeded:
        raise ConflictingCallback("the provider's status lookup does not confirm this callback")
    return outcome


def copy_outputs(job_id: str, receive_count: int, deps: CompletionDeps) -> CopyReport | None:
    """Copy every output of a COPYING job, then mark it COMPLETED; None if there is nothing to do.

    Raises CopyError for another attempt while attempts remain; after the last one the job is FAILED.
    """
    job = deps.store.find(job_id)
    if job is None or job.status is not JobStatus.COPYING:
        return None
    free_slot(deps.gate, deps.admission, job.job_id)  # the provider finished this job when it called back
    try:
        keys, total = _copy_all(job, deps)
    except (OutputRefused, OutputTooLarge) as exc:
        code = ErrorCode.OUTPUT_TOO_LARGE if isinstance(exc, OutputTooLarge) else ErrorCode.OUTPUT_REFUSED
        return _fail_copy(job, code, str(exc), deps)
    except CopyError as exc:
        deps.store.record_copy_attempt(job.job_id, str(exc))
        if receive_count >= deps.max_copy_attempts:
            message = f"copy failed after {receive_count} attempts: {exc}"
            return _fail_copy(job, ErrorCode.COPY_FAILED, message, deps)
        raise
    try:
        completed = deps.store.mark_completed(job.job_id, keys, total)
    except TransitionRejected:
        return None
    announce(completed, deps.store, deps.events)
    return CopyReport(completed, total)


def _copy_all(job: Job, deps: CompletionDeps) -> tuple[dict[str, str], int]:
    metadata = {"job-id": job.job_id, "task-id": job.task_id or "", "source-key": quote(job.source_key, safe="/")}
    keys: dict[str, str] = {}
    total = 0
    for name in OutputName:
        url = job.output_urls.get(name.value)
        if not url:
            continue
        key = output_key(deps.output_prefix, job.source_key, name)
        total += deps.copier.copy(url, deps.output_bucket, key, content_type=name.content_type, metadata=metadata)
        keys[name.value] = key
    return keys, total


def _fail_copy(job: Job, code: ErrorCode, message: str, deps: CompletionDeps) -> CopyReport | None:
    try:
        failed = deps.store.mark_failed(job.job_id, code, message, from_states=(JobStatus.COPYING,))
    except TransitionRejected:
        return None
    _discard_outputs(failed, deps)
    announce(failed, deps.store, deps.events)
    return CopyReport(failed, 0)


def _discard_outputs(job: Job, deps: CompletionDeps) -> None:
    """A FAILED job keeps no outputs: remove those its earlier attempts wrote before the failure.

    Runs after the final transition (nothing can complete the job any more) and before the event; a storage
    error is logged, not raised, because the job's final state and event matter more than the clean-up.
    """
    for name in OutputName:
        key = output_key(deps.output_prefix, job.source_key, name)
        try:
            deps.copier.discard(deps.output_bucket, key, job_id=job.job_id)
        except (BotoCoreError, ClientError):
            logger.exception("could not remove an output of a failed job", extra={"key": key})
