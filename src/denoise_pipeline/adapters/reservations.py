"""One reservation to submit a job: the submit lease on its item and a provider slot on the capacity item.

The two are halves of one thing: only a holder of both calls the provider, and every way out of a submit settles
both together (SUBMITTED keeps the slot; a wait, a refusal or a transient failure gives both back). The submit
workflow speaks to this port and never to the two halves separately.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..domain.job import WAITING_STATES, Job
from ..domain.outcome import ConversionOutcome
from ..domain.source import SourceObject
from ..domain.submission import SubmitResult
from .capacity import SLOTS_TAKEN, CapacityGate, Slot
from .job_store import JobStore


@dataclass(frozen=True)
class Waiting:
    """The job waits as QUEUED (no free slot, or admission paused); `reason` says which."""

    job_id: str
    reason: str
    resume_in: float = 0.0
    """Seconds until admission resumes, when it was paused for this job's sake."""


@dataclass(frozen=True)
class Refused:
    """The provider will never take this job: it failed, and its slot was given back."""

    job: Job
    slot_freed: bool
    """True when this refusal gave a slot back that the next queued job may take."""


class Reservation:
    """Lease and slot held for one job; exactly one of the methods below ends it."""

    def __init__(self, job: Job, slot: Slot, store: JobStore, gate: CapacityGate) -> None:
        self.job = job
        self._slot = slot
        self._store = store
        self._gate = gate

    def confirm(self, result: SubmitResult) -> Job:
        """The provider took the job: SUBMITTED (the job keeps its slot until the provider is done with it)."""
        submitted = self._store.mark_submitted(self.job.job_id, result)
        if self._slot.rate_limit_streak:
            self._gate.record_success()
        return submitted

    def cancel(self) -> None:
        """A transient failure: give both halves back so a retry can take them at once."""
        self._gate.release(self.job.job_id)
        self._store.release_lease(self.job.job_id)

    def rate_limited(self, message: str, retry_after: float | None) -> Waiting:
        """The provider said 429 despite our count: slot back, admission paused, the job QUEUED with the reason."""
        self._gate.release(self.job.job_id)
        pause = self._gate.pause(message, retry_after)
        reason = f"provider rate limit ({message}); admission paused until {pause.until}"
        self._store.mark_queued(self.job.job_id, reason)
        return Waiting(self.job.job_id, reason, pause.seconds)

    def refuse(self, code: str, message: str, *, hold_admission_for: float | None = None) -> Refused:
        """The provider will never take this job: FAILED. `hold_admission_for` pauses admission (an account
        problem would fail the next job the same way) instead of handing the slot to the next job."""
        if hold_admission_for is None:
            freed = self._gate.release(self.job.job_id)
        else:
            self._gate.release(self.job.job_id)
            self._gate.pause(f"account problem: {message}", hold_admission_for)
            freed = False
        failed = self._store.mark_failed(self.job.job_id, code, message, from_states=WAITING_STATES)
        return Refused(failed, freed)


class Reservations:
    def __init__(self, store: JobStore, gate: CapacityGate) -> None:
        self._store = store
        self._gate = gate

    def open(self, source: SourceObject) -> Reservation | Waiting | None:
        """Create the job for a new object: with a reservation when a slot is free, else QUEUED in one write.
        None when the job exists already (a duplicate event, or a retry)."""
        wait = self._gate.wait_reason(source.job_id)
        if wait:
            return None if self._store.create_queued(source, wait) is None else Waiting(source.job_id, wait)
        job = self._store.create_claimed(source)
        return None if job is None else self._take_slot(job)

    def claim(self, job_id: str, now: datetime | None = None) -> Job | None:
        """Take the submit lease of an existing waiting job; None when another holder has it or it moved on."""
        return self._store.claim(job_id, now)

    def reserve(self, job: Job) -> Reservation | Waiting:
        """Add a slot to the lease the caller holds, or put the job back in the queue with the reason."""
        wait = self._gate.wait_reason(job.job_id)
        if wait:
            self._store.mark_queued(job.job_id, wait)
            return Waiting(job.job_id, wait)
        return self._take_slot(job)

    def adopt(self, job: Job, kept: ConversionOutcome) -> Job:
        """SUBMITTED with the task of a callback kept on the job: the provider has the job already, so it is never
        sent again. While the provider still works on it the job counts against capacity, slot or not."""
        if not kept.finished:
            self._gate.try_acquire(job.job_id)
        result = SubmitResult(kept.task_id, kept.conversion_id or "", None, None, kept.status, kept.message)
        return self._store.mark_submitted(job.job_id, result)

    def free_slots(self) -> int:
        return self._gate.free_slots()

    def _take_slot(self, job: Job) -> Reservation | Waiting:
        slot = self._gate.try_acquire(job.job_id)
        if slot is None:  # another job took the last slot between the read and the write
            self._store.mark_queued(job.job_id, SLOTS_TAKEN)
            return Waiting(job.job_id, SLOTS_TAKEN)
        return Reservation(job, slot, self._store, self._gate)
