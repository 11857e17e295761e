"""Copy workflow: a COPYING job's outputs are streamed into the output bucket, then the job is COMPLETED."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from aws_lambda_powertools import Logger

from ..adapters.job_store import JobStore
from ..adapters.output_copier import CopyError, OutputCopier, OutputRefused, OutputTooLarge
from ..domain.job import ErrorCode, Job, JobStatus, TransitionRejected
from ..domain.outputs import OutputName, output_key
from .lifecycle import Lifecycle

logger = Logger(child=True)


@dataclass(frozen=True)
class CopyDeps:
    store: JobStore
    lifecycle: Lifecycle
    copier: OutputCopier
    output_bucket: str
    output_prefix: str
    max_attempts: int


@dataclass(frozen=True)
class CopyReport:
    job: Job
    copied_bytes: int


def copy_outputs(job_id: str, receive_count: int, deps: CopyDeps) -> CopyReport | None:
    """Copy every output of a COPYING job, then mark it COMPLETED; None if there is nothing to do.

    Raises CopyError for another attempt while attempts remain; after the last one the job is FAILED.
    """
    job = deps.store.find(job_id)
    if job is None or job.status is not JobStatus.COPYING:
        return None
    deps.lifecycle.free_slot(job.job_id)  # the provider finished this job when it called back
    try:
        keys, total = _copy_all(job, deps)
    except (OutputRefused, OutputTooLarge) as exc:
        code = ErrorCode.OUTPUT_TOO_LARGE if isinstance(exc, OutputTooLarge) else ErrorCode.OUTPUT_REFUSED
        return _fail(job, code, str(exc), deps)
    except CopyError as exc:
        deps.store.record_copy_attempt(job.job_id, str(exc))
        if receive_count >= deps.max_attempts:
            return _fail(job, ErrorCode.COPY_FAILED, f"copy failed after {receive_count} attempts: {exc}", deps)
        raise
    try:
        completed = deps.store.mark_completed(job.job_id, deps.output_bucket, keys, total)
    except TransitionRejected:
        return None
    deps.lifecycle.announce(completed)
    return CopyReport(completed, total)


def _copy_all(job: Job, deps: CopyDeps) -> tuple[dict[str, str], int]:
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


def _fail(job: Job, code: ErrorCode, message: str, deps: CopyDeps) -> CopyReport | None:
    try:
        failed = deps.store.mark_failed(job.job_id, code, message, from_states=(JobStatus.COPYING,))
    except TransitionRejected:
        return None
    _discard_outputs(failed, deps)
    deps.lifecycle.announce(failed)
    return CopyReport(failed, 0)


def _discard_outputs(job: Job, deps: CopyDeps) -> None:
    """A FAILED job keeps no outputs: remove those its earlier attempts wrote before the failure.

    Runs after the final transition (nothing can complete the job any more) and before the event; a storage
    error is logged, not raised, because the job's final state and event matter more than the clean-up.
    """
    for name in OutputName:
        key = output_key(deps.output_prefix, job.source_key, name)
        try:
            deps.copier.discard(deps.output_bucket, key, job_id=job.job_id)
        except CopyError:
            logger.exception("could not remove an output of a failed job", extra={"key": key})
