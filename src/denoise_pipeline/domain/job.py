"""A job and its states: `RECEIVED → (QUEUED →) SUBMITTED → COPYING → COMPLETED`, `FAILED`, `TIMED_OUT`."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from .outcome import ConversionOutcome
from .source import SourceObject


class JobStatus(StrEnum):
    RECEIVED = "RECEIVED"
    QUEUED = "QUEUED"
    SUBMITTED = "SUBMITTED"
    COPYING = "COPYING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"


FINAL_STATES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.TIMED_OUT})
WAITING_STATES = frozenset({JobStatus.RECEIVED, JobStatus.QUEUED})
NON_FINAL_STATES = frozenset(JobStatus) - FINAL_STATES


class ErrorCode(StrEnum):
    PROVIDER_REJECTED = "PROVIDER_REJECTED"
    PROVIDER_AUTH = "PROVIDER_AUTH"
    INSUFFICIENT_CREDITS = "INSUFFICIENT_CREDITS"
    CONVERSION_FAILED = "CONVERSION_FAILED"
    SUBMIT_ATTEMPTS_EXHAUSTED = "SUBMIT_ATTEMPTS_EXHAUSTED"
    PROVIDER_ANSWER_UNREADABLE = "PROVIDER_ANSWER_UNREADABLE"
    COPY_FAILED = "COPY_FAILED"
    OUTPUT_REFUSED = "OUTPUT_REFUSED"
    OUTPUT_TOO_LARGE = "OUTPUT_TOO_LARGE"
    TIMED_OUT = "TIMED_OUT"
    SWEEP_FAILED = "SWEEP_FAILED"


class JobNotFound(LookupError):
    pass


class TransitionRejected(RuntimeError):
    """A conditional transition lost: the job is no longer in a state that allows it (another writer won)."""

    def __init__(self, job_id: str, target: JobStatus) -> None:
        super().__init__(f"job {job_id} cannot move to {target}")
        self.job_id = job_id
        self.target = target


@dataclass
class Job:
    """One job as the table holds it: its source object, its state and everything recorded on the way."""

    job_id: str
    status: JobStatus
    source_bucket: str
    source_key: str
    source_size: int
    source_etag: str = ""
    source_version_id: str = ""
    task_id: str | None = None
    conversion_id: str | None = None
    eta: int | None = None
    credit_estimate: Decimal | None = None
    conversion_cost: str | None = None
    conversion_duration: Decimal | None = None
    output_urls: dict[str, str] = field(default_factory=dict)
    output_bucket: str | None = None
    output_keys: dict[str, str] = field(default_factory=dict)
    error_code: str | None = None
    error_message: str | None = None
    queue_reason: str | None = None
    submit_attempts: int = 0
    created_at: str = ""
    status_at: str = ""
    lease_until: str | None = None
    early_callback: ConversionOutcome | None = None
    """A callback that arrived before the job had a task id: applied, or adopted, once the submit settles."""
    copy_attempts: int = 0
    copy_lease_until: str | None = None
    """While a copy attempt runs: when its lease ends (another worker may start one after that)."""
    last_copy_error: str | None = None
    sweep_failures: int = 0
    """Reconciler sweeps in a row that failed on this job."""
    timestamps: dict[str, str] = field(default_factory=dict)
    """`<state>_at` → when the job entered that state (ISO-8601 UTC)."""

    @property
    def source(self) -> SourceObject:
        return SourceObject(
            self.source_bucket, self.source_key, self.source_size, self.source_etag, self.source_version_id
        )

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATES
