"""What recording a provider callback can come to (refusals are in domain.refusals).

The webhook handler turns these into HTTP answers; the submit function and the reconciler, which record status
lookups and kept callbacks the same way, read them as plain values. The kinds of `About` add no field, so they take
its generated methods as they are (equality and repr still tell the kinds apart) instead of compiling their own
at every cold start; `job` stays read-only on them, though a new attribute could be added (nothing does).
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
class About:
    """A result that carries the job as the callback left it."""

    job: Job

    @property
    def status(self) -> JobStatus:
        return self.job.status


class Duplicate(About):
    """A repeat of a callback already recorded for this job: nothing changed."""


class Failed(About):
    """The callback reported a failed conversion: the job is FAILED with the provider's message."""


class Progress(About):
    """A callback that does not finish the job (progress, or a repeat of one): noted on the job, nothing else."""


class Confirming(About):
    """An unclear callback: noted on the job; the status lookup, off this request's path, decides."""


class Kept(About):
    """A callback that arrived before our own record of the submission: kept on the job and applied once the task
    id is known (or the job adopts the callback's task id instead of being submitted again)."""


CallbackResult = Accepted | Duplicate | Failed | Progress | Confirming | Kept
