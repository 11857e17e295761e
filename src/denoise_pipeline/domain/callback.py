"""What recording a provider callback can come to: results for the caller, refusals as exceptions.

The webhook handler turns these into HTTP answers; the reconciler, which records status lookups the same way,
reads them as plain values.
"""

from __future__ import annotations

from dataclasses import dataclass

from .job import Job, JobStatus


@dataclass(frozen=True)
class Accepted:
    """The callback was recorded (job now COPYING); the copy runs later, off the request path."""

    job_id: str
    status = JobStatus.COPYING


@dataclass(frozen=True)
class Duplicate:
    """A repeat of a callback already recorded for this job: nothing changed."""

    job: Job

    @property
    def status(self) -> JobStatus:
        return self.job.status


@dataclass(frozen=True)
class Failed:
    """The callback reported a failed conversion: the job is FAILED with the provider's message."""

    job: Job

    @property
    def status(self) -> JobStatus:
        return self.job.status


CallbackResult = Accepted | Duplicate | Failed


class CallbackRefused(Exception):
    """A callback we will not act on; nothing was written or fetched."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownCallback(CallbackRefused):
    """Wrong token or unknown job: one refusal for both, so the API does not reveal which jobs exist."""

    def __init__(self) -> None:
        super().__init__("no such webhook")


class InvalidCallback(CallbackRefused):
    """The payload's fields cannot be used (wrong types, refused output URL)."""


class ConflictingCallback(CallbackRefused):
    """The callback does not fit the job (another task id, or a job not waiting for a result)."""
