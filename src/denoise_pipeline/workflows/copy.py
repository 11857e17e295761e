"""Copy workflow: a COPYING job's outputs land in the output bucket, all of them or none, then it is COMPLETED.

- One attempt at a time per job: an attempt starts by taking the job's copy lease, which also counts the attempt
  on the job item (so a crash or Lambda's own timeout counts too; SQS receive counts play no part).
- An attempt ends by its deadline (set from the invocation's remaining time), well before Lambda would kill it.
- Outputs are written under a staging prefix and promoted to their final keys only once all of them are in place;
  a failed attempt leaves neither staged nor promoted objects behind.
- A failed attempt is logged by the caller, recorded on the job and queued again after a back-off; after
  `max_attempts` the job is FAILED with the last reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

from aws_lambda_powertools import Logger

from ..adapters.job_store import JobStore
from ..adapters.output_copier import CopyDeadlineExceeded, CopyError, OutputCopier, OutputRefused, OutputTooLarge
from ..adapters.queues import JobQueue
from ..clock import from_iso, utc_now
from ..domain.job import ErrorCode, Job, JobStatus, TransitionRejected
from ..domain.outputs import OutputName, output_key, output_metadata, staging_key
from .lifecycle import Lifecycle

logger = Logger(child=True)
LEASE_MARGIN_SECONDS = 60.0
"""A lease outlives its attempt's deadline by this much, so no second attempt starts while the first winds up."""
MAX_RETRY_DELAY_SECONDS = 900.0
PROMOTE_BYTES_PER_SECOND = 100 * 1024 * 1024
"""A conservative rate for S3's server-side copy (UploadPartCopy, 512 MiB parts side by side): promotion starts only
when the staged bytes can be promoted at this rate before the attempt's `promote_by`."""


@dataclass(frozen=True, eq=False, repr=False)
class CopyDeps:
    """What a copy attempt needs; collaborators, so compared and shown by identity."""

    store: JobStore
    lifecycle: Lifecycle
    copier: OutputCopier
    copy_queue: JobQueue
    output_bucket: str
    output_prefix: str
    max_attempts: int
    retry_delay_seconds: float
    """The first retry's delay; each later one doubles it (at most 15 minutes)."""


@dataclass(frozen=True)
class Attempt:
    """One copy attempt: its lease owner and its deadlines."""

    owner: str
    """Who holds the copy lease during this attempt (unique per attempt)."""
    deadline: float
    """`time.monotonic()` value by which staging must end."""
    promote_by: float | None = None
    """`time.monotonic()` value by which promotion must end (before the invocation does); None: no limit."""


@dataclass(frozen=True)
class CopyReport:
    """What one copy attempt did."""

    job: Job
    copied_bytes: int
    attempt: int
    failure: str | None = None
    """Set when this attempt failed and another one is queued."""


def copy_outputs(job_id: str, attempt: Attempt, deps: CopyDeps) -> CopyReport | None:
    """One copy attempt. None when there is nothing to do here: the job is not COPYING, or another attempt holds
    its lease (that one finishes, or the reconciler queues the job again once the lease has expired)."""
    job = deps.store.find(job_id)
    if job is None or job.status is not JobStatus.COPYING:
        return None
    deps.lifecycle.free_slot(job.job_id)  # the provider finished this job when it called back
    lease_until = utc_now() + timedelta(seconds=max(0.0, attempt.deadline - time.monotonic()) + LEASE_MARGIN_SECONDS)
    claimed = deps.store.claim_copy(job_id, attempt.owner, lease_until, deps.max_attempts)
    if claimed is None:
        return _settle_unclaimed(job_id, deps)
    try:
        keys, total = _copy_all(claimed, attempt, deps)
    except (OutputRefused, OutputTooLarge) as exc:  # retrying cannot help
        _clean_up(claimed, deps)
        code = ErrorCode.OUTPUT_TOO_LARGE if isinstance(exc, OutputTooLarge) else ErrorCode.OUTPUT_REFUSED
        return _fail(claimed, code, str(exc), deps)
    except Exception as exc:  # noqa: BLE001 - every attempt ends recorded on the job, whatever stopped it
        return _attempt_failed(claimed, attempt, exc, deps)
    try:
        completed = deps.store.mark_completed(job_id, attempt.owner, deps.output_bucket, keys, total)
    except TransitionRejected:
        return None  # the lease was lost meanwhile; whoever holds it settles the job
    deps.lifecycle.announce(completed)
    return CopyReport(completed, total, claimed.copy_attempts)


def _settle_unclaimed(job_id: str, deps: CopyDeps) -> CopyReport | None:
    """No lease to take: fail the job if its attempts are used up and none is running, else leave it."""
    job = deps.store.find(job_id)
    if job is None or job.status is not JobStatus.COPYING or job.copy_attempts < deps.max_attempts:
        return None
    if job.copy_lease_until is not None and from_iso(job.copy_lease_until) > utc_now():
        return None  # the last attempt is still running
    message = f"copy failed after {job.copy_attempts} attempts: {job.last_copy_error or 'the last attempt did not end'}"
    return _fail(job, ErrorCode.COPY_FAILED, message, deps)


def _copy_all(job: Job, attempt: Attempt, deps: CopyDeps) -> tuple[dict[str, str], int]:
    """Stage every output, then promote them all: none is visible under its final key before all are staged."""
    transfers = {
        name.value: OutputTransfer(
            job.output_urls[name.value],
            staging_key(job.job_id, name),
            output_key(deps.output_prefix, job.source_key, name),
            name.content_type,
        )
        for name in OutputName
        if job.output_urls.get(name.value)
    }
    metadata = output_metadata(job.job_id, job.task_id or "", job.source_key)
    total = stage_and_promote(
        deps.copier, deps.output_bucket, list(transfers.values()), metadata, attempt.deadline, attempt.promote_by
    )
    return {name: transfer.final_key for name, transfer in transfers.items()}, total


@dataclass(frozen=True)
class OutputTransfer:
    """One output: where it is downloaded from, staged and finally kept."""

    url: str
    staging_key: str
    final_key: str
    content_type: str


def stage_and_promote(
    copier: OutputCopier,
    bucket: str,
    transfers: Sequence[OutputTransfer],
    metadata: dict[str, str],
    deadline: float,
    promote_by: float | None = None,
) -> int:
    """Copy every output to its staging key at once, then promote them all at once; returns the bytes copied.

    Concurrent, so a job takes about as long as its largest output rather than the sum of all four. Every copy runs
    to its end (success, failure or the shared deadline) before anything is promoted or raised; when some failed,
    the one raised is a permanent refusal if there is one (retrying cannot help), else the first in output order.
    Promotion starts only if it can end by `promote_by`: a promotion cut off by Lambda would leave some outputs
    visible and others not.
    """
    copied = _all_or_raise(
        lambda t: copier.copy(
            t.url, bucket, t.staging_key, content_type=t.content_type, metadata=metadata, deadline=deadline
        ),
        transfers,
    )
    staged = sum(copied)
    if promote_by is not None and time.monotonic() + staged / PROMOTE_BYTES_PER_SECOND > promote_by:
        left = max(0.0, promote_by - time.monotonic())
        raise CopyDeadlineExceeded(f"{staged} bytes staged with {left:.0f} s left: too little time to promote them all")
    _all_or_raise(lambda t: copier.promote(bucket, t.staging_key, t.final_key), transfers)
    return staged


def _all_or_raise[T](step: Callable[[OutputTransfer], T], transfers: Sequence[OutputTransfer]) -> list[T]:
    """`step` for every transfer in its own thread; the results in order, or the most telling failure."""
    if len(transfers) <= 1:
        return [step(t) for t in transfers]
    with ThreadPoolExecutor(max_workers=len(transfers)) as pool:
        futures = [pool.submit(step, t) for t in transfers]
    failures = [exc for future in futures if (exc := future.exception()) is not None]
    permanent = [exc for exc in failures if isinstance(exc, OutputRefused | OutputTooLarge)]
    if failures:
        raise (permanent or failures)[0]
    return [future.result() for future in futures]


def _attempt_failed(job: Job, attempt: Attempt, exc: Exception, deps: CopyDeps) -> CopyReport | None:
    reason = f"{type(exc).__name__}: {exc}" if not isinstance(exc, CopyError) else str(exc)
    _clean_up(job, deps)
    delay = min(MAX_RETRY_DELAY_SECONDS, deps.retry_delay_seconds * 2 ** (job.copy_attempts - 1))
    # The lease runs out a second before the retry arrives, so the retry can take it.
    retry_at = utc_now() + timedelta(seconds=max(0.0, delay - 1.0))
    deps.store.end_copy_attempt(job.job_id, attempt.owner, reason, retry_at)
    if job.copy_attempts >= deps.max_attempts:
        return _fail(job, ErrorCode.COPY_FAILED, f"copy failed after {job.copy_attempts} attempts: {reason}", deps)
    deps.copy_queue.enqueue(job.job_id, delay_seconds=delay)
    return CopyReport(job, 0, job.copy_attempts, failure=reason)


def _fail(job: Job, code: ErrorCode, message: str, deps: CopyDeps) -> CopyReport | None:
    try:
        failed = deps.store.mark_failed(job.job_id, code, message, from_states=(JobStatus.COPYING,))
    except TransitionRejected:
        return None
    _clean_up(failed, deps)
    deps.lifecycle.announce(failed)
    return CopyReport(failed, 0, job.copy_attempts)


def _clean_up(job: Job, deps: CopyDeps) -> None:
    """Nothing of an unfinished or failed job stays: its staged objects, and the outputs it promoted (by version,
    matched on its `job-id` metadata, so an earlier job's outputs under the same keys become current again).

    A storage error is logged, not raised: the job's recorded state matters more than the clean-up, and the
    staging prefix expires on its own (template lifecycle rule).
    """
    for name in OutputName:
        try:
            for key in (staging_key(job.job_id, name), output_key(deps.output_prefix, job.source_key, name)):
                deps.copier.discard(deps.output_bucket, key, job_id=job.job_id)
        except CopyError:
            logger.exception("could not remove an output of an unfinished job", extra={"output": name.value})
