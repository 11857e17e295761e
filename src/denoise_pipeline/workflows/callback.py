"""Callback workflow: a provider result (a verified callback, or a status lookup) is recorded durably.

The copy of the outputs happens later, off the request path (workflows.copy); this records SUBMITTED → COPYING
with the output URLs and queues the copy, or SUBMITTED → FAILED with the provider's message.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..adapters.job_store import JobStore
from ..adapters.musicgpt import MusicGptClient
from ..adapters.output_copier import CopyError, OutputRefused, UrlPolicy
from ..adapters.queues import JobQueue
from ..domain.callback import (
    Accepted,
    CallbackResult,
    ConflictingCallback,
    Duplicate,
    Failed,
    InvalidCallback,
    UnknownCallback,
)
from ..domain.job import ErrorCode, Job, JobStatus, TransitionRejected
from ..domain.outcome import ConversionOutcome
from .lifecycle import Lifecycle


@dataclass(frozen=True)
class Recorder:
    """What recording an outcome needs; shared by the webhook and the reconciler's status lookups."""

    store: JobStore
    lifecycle: Lifecycle
    copy_queue: JobQueue


@dataclass(frozen=True)
class CallbackDeps:
    recorder: Recorder
    url_policy: UrlPolicy
    status_lookup: MusicGptClient | None = None
    """Set when every callback is confirmed with the provider's status lookup before it is trusted."""


def accept_callback(job_id: str, outcome: ConversionOutcome, deps: CallbackDeps) -> CallbackResult:
    """Record a callback whose token was verified and whose body was read.

    Order matters: the output URLs pass the URL policy, then one conditional write checks that the job exists, is
    SUBMITTED and has this task id, all at once. Nothing is written or fetched before every check passed.
    """
    if outcome.succeeded:
        _refuse_unsafe_urls(outcome, deps.url_policy)
    if deps.status_lookup is not None:
        outcome = _confirmed(outcome, deps.status_lookup)
    return record_outcome(job_id, outcome, deps.recorder)


def _refuse_unsafe_urls(outcome: ConversionOutcome, policy: UrlPolicy) -> None:
    """SSRF guard before anything is written; the copier checks again at fetch time (DNS may change)."""
    for url in outcome.outputs.values():
        try:
            policy.check_resolved(url)
        except OutputRefused as exc:
            raise InvalidCallback(f"output URL refused: {exc}") from exc
        except CopyError:
            continue  # a resolution hiccup is not a verdict; the copy resolves again and retries


def record_outcome(job_id: str, outcome: ConversionOutcome, recorder: Recorder) -> CallbackResult:
    """SUBMITTED → COPYING (+ copy queued) or → FAILED.

    Raises a CallbackRefused when the job is unknown, not SUBMITTED or has another task id (a repeat of an
    accepted callback is a Duplicate instead); the job is read only then, to tell those cases apart.
    """
    try:
        if outcome.succeeded:
            recorder.store.mark_copying(job_id, outcome)
        else:
            failed = recorder.store.mark_failed(
                job_id,
                ErrorCode.CONVERSION_FAILED,
                outcome.message,
                from_states=(JobStatus.SUBMITTED,),
                task_id=outcome.task_id,
            )
    except TransitionRejected:
        return _refusal(job_id, outcome, recorder.store)
    if outcome.succeeded:
        recorder.copy_queue.enqueue(job_id)  # the copy worker frees the slot as it starts: a short ack path
        return Accepted(job_id)
    recorder.lifecycle.free_slot(job_id)
    recorder.lifecycle.announce(failed)
    return Failed(failed)


def _refusal(job_id: str, outcome: ConversionOutcome, store: JobStore) -> Duplicate:
    current = store.find(job_id)
    if current is None:
        raise UnknownCallback
    if current.task_id is not None and current.task_id != outcome.task_id:
        raise ConflictingCallback("task_id does not match this job")
    if _already_recorded(current):
        return Duplicate(current)
    raise ConflictingCallback(f"job is {current.status.value}; a callback is accepted only once it is SUBMITTED")


def _already_recorded(job: Job) -> bool:
    """A repeated callback for an accepted job changes nothing and is answered as a duplicate."""
    return job.status in (JobStatus.COPYING, JobStatus.COMPLETED) or (
        job.status is JobStatus.FAILED and job.error_code == ErrorCode.CONVERSION_FAILED
    )


def _confirmed(outcome: ConversionOutcome, provider: MusicGptClient) -> ConversionOutcome:
    status = provider.get_status(task_id=outcome.task_id)
    if not status.finished or status.succeeded != outcome.succeeded:
        raise ConflictingCallback("the provider's status lookup does not confirm this callback")
    return outcome
