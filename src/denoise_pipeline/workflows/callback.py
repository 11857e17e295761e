"""Callback workflow: what the provider says about a job (a verified callback, or a status lookup) is recorded.

- A finished success records SUBMITTED → COPYING with the output URLs and queues the copy (workflows.copy).
- A failure records SUBMITTED → FAILED with the provider's message.
- Progress is noted on the job; an unclear answer is noted and confirmed with the status lookup, off the
  callback's request path and within the provider's lookup budget.
- A callback that beats our own record of the submission (no task id yet) is kept on the job and applied, or its
  task adopted, once the submit settles: it is never refused and never makes us submit twice.
- What we did not understand is kept on the job (reasons and a scrubbed excerpt).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger

from ..adapters.capacity import LookupBudget
from ..adapters.job_store import JobStore
from ..adapters.queues import JobQueue
from ..adapters.url_policy import OutputRefused, UrlPolicy
from ..domain.callback import Accepted, CallbackResult, Confirming, Duplicate, Failed, Kept, Progress
from ..domain.job import WAITING_STATES, ErrorCode, Job, JobStatus, TransitionRejected
from ..domain.outcome import ConversionOutcome, Verdict
from ..domain.refusals import CallbackRefused, ConflictingCallback, InvalidCallback, UnknownCallback
from .lifecycle import Lifecycle

if TYPE_CHECKING:  # the webhook function records callbacks but never calls the provider: no HTTP client import
    from ..adapters.musicgpt import MusicGptClient

logger = Logger(child=True)


@dataclass(frozen=True, eq=False, repr=False)
class Recorder:
    """What recording an outcome needs; shared by the webhook, the submit (kept callbacks) and the lookups.
    Collaborators, so compared and shown by identity."""

    store: JobStore
    lifecycle: Lifecycle
    copy_queue: JobQueue


@dataclass(frozen=True, eq=False, repr=False)
class CallbackDeps:
    """What recording a callback needs; collaborators, so compared and shown by identity."""

    recorder: Recorder
    url_policy: UrlPolicy
    confirm_every_callback: bool = False
    """True: even a clear success is confirmed with the status lookup before its URLs are trusted."""


@dataclass(frozen=True, eq=False, repr=False)
class LookupDeps:
    """What settling an unclear callback with the status lookup needs; compared by identity."""

    recorder: Recorder
    provider: MusicGptClient
    budget: LookupBudget


def accept_callback(job_id: str, outcome: ConversionOutcome, deps: CallbackDeps) -> CallbackResult:
    """Record a callback whose token was verified and whose body was read.

    The output URLs pass the URL policy first; then one conditional write checks that the job exists, is
    SUBMITTED and has this task (and conversion), all at once. Nothing is written or fetched before that.
    """
    if outcome.verdict is Verdict.SUCCEEDED and deps.confirm_every_callback:
        outcome = replace(outcome, verdict=Verdict.UNCLEAR, outputs={})
    if outcome.verdict is Verdict.SUCCEEDED:
        _refuse_unsafe_urls(outcome, deps.url_policy)
    result = record_outcome(job_id, outcome, deps.recorder)
    if outcome.surprises:
        deps.recorder.store.record_surprise(job_id, "callback", outcome.surprises, outcome.raw)
    return result


def _refuse_unsafe_urls(outcome: ConversionOutcome, policy: UrlPolicy) -> None:
    """SSRF guard before anything is written: scheme, host and port against the allowlist. No DNS here, to keep the
    ack path to one write and one send: the copier resolves each host once at fetch time, refuses non-public
    addresses and connects to the address it checked."""
    for url in outcome.outputs.values():
        try:
            policy.check(url)
        except OutputRefused as exc:
            raise InvalidCallback(f"output URL refused: {exc}") from exc


def record_outcome(job_id: str, outcome: ConversionOutcome, recorder: Recorder) -> CallbackResult:
    """Apply an outcome to a SUBMITTED job of the same task, or keep it when the job has no task yet.

    Raises a CallbackRefused when the job is unknown, belongs to another task, or is past taking callbacks (a
    repeat of a recorded callback is a Duplicate instead); the job is read only then, to tell those cases apart.
    """
    try:
        return _apply(job_id, outcome, recorder)
    except TransitionRejected:
        current = recorder.store.find(job_id)
    if current is None:
        raise UnknownCallback
    if current.task_id is None and current.status in WAITING_STATES:
        return _keep(current, outcome, recorder)
    _check_same_task(current, outcome)
    if _already_recorded(current):
        return Duplicate(current)
    raise ConflictingCallback(f"job is {current.status.value}; it takes no more callbacks")


def record_lookup(job: Job, outcome: ConversionOutcome, recorder: Recorder) -> CallbackResult | None:
    """What a status lookup said about a SUBMITTED job: final answers are recorded like a callback, others noted.

    None when nothing was recorded (the lookup named another task, or the job moved on meanwhile).
    """
    if outcome.surprises:
        recorder.store.record_surprise(job.job_id, "lookup", outcome.surprises, outcome.raw)
    if outcome.task_id != job.task_id:
        logger.warning("status lookup answered for another task", extra={"answered": outcome.task_id})
        return None
    try:
        if not outcome.finished:
            return Progress(recorder.store.record_progress(job.job_id, outcome))
        return record_outcome(job.job_id, outcome, recorder)
    except (TransitionRejected, CallbackRefused):
        return None  # the webhook won the race, or the job is final: nothing to do here


@dataclass(frozen=True)
class Confirmation:
    """What a status lookup for an unclear callback came to."""

    outcome: ConversionOutcome | None
    """What the lookup said; None when nothing was looked up (the job moved on, or the budget deferred it)."""
    result: CallbackResult | None = None


def confirm_with_lookup(job_id: str, deps: LookupDeps) -> Confirmation:
    """Settle an unclear callback with `GET /byId`, within the lookup budget (a full budget defers the request).

    Raises ProviderError when the lookup fails; the job stays SUBMITTED and the reconciler looks again later.
    """
    job = deps.recorder.store.find(job_id)
    if job is None or job.status is not JobStatus.SUBMITTED or job.task_id is None:
        return Confirmation(None)
    wait = deps.budget.take()
    if wait:
        deps.recorder.lifecycle.request_confirmation(job_id, after=wait)
        return Confirmation(None)
    outcome = deps.provider.get_status(task_id=job.task_id)
    return Confirmation(outcome, record_lookup(job, outcome, deps.recorder))


def _apply(job_id: str, outcome: ConversionOutcome, recorder: Recorder) -> CallbackResult:
    store, lifecycle = recorder.store, recorder.lifecycle
    if outcome.verdict is Verdict.SUCCEEDED:
        store.mark_copying(job_id, outcome)
        recorder.copy_queue.enqueue(job_id)  # the copy worker frees the slot as it starts: a short ack path
        return Accepted(job_id)
    if outcome.verdict is Verdict.FAILED:
        failed = store.mark_failed(
            job_id, ErrorCode.CONVERSION_FAILED, outcome.message, from_states=(JobStatus.SUBMITTED,), outcome=outcome
        )
        lifecycle.free_slot(job_id)
        lifecycle.announce(failed)
        return Failed(failed)
    noted = store.record_progress(job_id, outcome)
    if outcome.verdict is Verdict.UNCLEAR:
        lifecycle.request_confirmation(job_id)
        return Confirming(noted)
    return Progress(noted)


def _keep(job: Job, outcome: ConversionOutcome, recorder: Recorder) -> CallbackResult:
    """The callback beat our SUBMITTED write (or that write never landed): keep it for the submit to apply."""
    try:
        kept = recorder.store.keep_early_callback(job.job_id, outcome)
    except TransitionRejected:
        current = recorder.store.find(job.job_id)
        if current is not None and current.task_id is not None:
            return record_outcome(job.job_id, outcome, recorder)  # the submit was recorded meanwhile
        return Kept(current or job)  # a final callback is kept already; this one adds nothing
    recorder.lifecycle.resume(job.job_id)  # picked up at once unless a submit is under way (it applies the callback)
    return Kept(kept)


def _check_same_task(job: Job, outcome: ConversionOutcome) -> None:
    if job.task_id != outcome.task_id:
        raise ConflictingCallback("task_id does not match this job")
    if outcome.conversion_id and job.conversion_id and job.conversion_id != outcome.conversion_id:
        raise ConflictingCallback("conversion_id does not match this job")


def _already_recorded(job: Job) -> bool:
    """A callback for a job that has its result already (a repeat, or progress arriving late) changes nothing."""
    if job.status in (JobStatus.COPYING, JobStatus.COMPLETED):
        return True
    return job.status is JobStatus.FAILED and job.error_code == ErrorCode.CONVERSION_FAILED
