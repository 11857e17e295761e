"""What several workflows do when a job reaches a final state or the provider is done with it.

A final state is published on the event bus (at least once: the final transition marks the job `event_pending`,
the mark is cleared after EventBridge accepted the event, and the reconciler publishes what is still pending).
A job the provider is done with frees its provider slot, which wakes the admission of the next queued job.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_lambda_powertools import Logger

from ..adapters.capacity import CapacityGate
from ..adapters.event_bus import EventPublisher, EventPublishError
from ..adapters.job_store import JobStore
from ..adapters.queues import Action, JobQueue
from ..domain.job import Job

logger = Logger(child=True)


@dataclass(frozen=True, eq=False, repr=False)
class Lifecycle:
    """What every state change needs; collaborators, so compared and shown by identity."""

    store: JobStore
    gate: CapacityGate
    admission: JobQueue
    events: EventPublisher

    def announce(self, job: Job) -> None:
        """Publish a final state if EventBridge takes it now; if not, the pending mark stays and the reconciler
        publishes it later, so the step that reached the final state never fails for the event's sake."""
        try:
            self.publish(job)
        except EventPublishError as exc:
            logger.warning("event deferred to the reconciler", extra={"job_id": job.job_id, "error": str(exc)})

    def publish(self, job: Job) -> None:
        """Publish a final state, then clear the job's pending-event mark. Consumers deduplicate on `job_id`.
        Raises EventPublishError."""
        self.events.job_finished(job)
        self.store.mark_event_published(job.job_id)

    def free_slot(self, job_id: str) -> None:
        """The provider is done with this job: give its slot back and wake the admission of queued jobs.

        The release is idempotent (a conditional set DELETE), so a retry is harmless; only the call that really
        freed the slot sends a wake-up.
        """
        if self.gate.release(job_id):
            self.slot_freed(job_id)

    def slot_freed(self, job_id: str) -> None:
        """Wake the admission of queued jobs now: a slot is free."""
        self.admission.enqueue(job_id)

    def wake_admission_after(self, job_id: str, seconds: float) -> None:
        """Wake the admission when a pause ends (SQS delays a message by at most 15 minutes)."""
        self.admission.enqueue(job_id, delay_seconds=seconds)

    def request_confirmation(self, job_id: str, *, after: float = 0) -> None:
        """Have the status lookup settle an unclear callback, off the callback's request path."""
        self.admission.enqueue(job_id, delay_seconds=after, action=Action.CONFIRM)

    def resume(self, job_id: str) -> None:
        """Have a waiting job with a kept callback picked up now (it adopts the callback's task, never resubmits)."""
        self.admission.enqueue(job_id, action=Action.RESUME)
