"""Domain types: the source object, the job and its states, provider results, the callback payload."""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

AUDIO_SUFFIXES = frozenset({".mp3", ".wav", ".m4a", ".flac", ".ogg", ".aac"})
JOB_ID_LENGTH = 32


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
    COPY_FAILED = "COPY_FAILED"
    OUTPUT_REFUSED = "OUTPUT_REFUSED"
    OUTPUT_TOO_LARGE = "OUTPUT_TOO_LARGE"
    TIMED_OUT = "TIMED_OUT"


class OutputName(StrEnum):
    """The provider's output fields; the value is also the object name in the output bucket."""

    NO_NOISE = "no_noise"
    NO_NOISE_WAV = "no_noise_wav"
    NOISE = "noise"
    NOISE_WAV = "noise_wav"

    @property
    def is_wav(self) -> bool:
        return self.value.endswith("_wav")

    @property
    def file_name(self) -> str:
        """`no_noise_wav` → `no_noise.wav`, `noise` → `noise.mp3`."""
        return f"{self.value.removesuffix('_wav')}.wav" if self.is_wav else f"{self.value}.mp3"

    @property
    def content_type(self) -> str:
        return "audio/wav" if self.is_wav else "audio/mpeg"


REQUIRED_OUTPUTS = (OutputName.NO_NOISE_WAV, OutputName.NOISE_WAV)


@dataclass(frozen=True)
class SourceObject:
    """The uploaded object a job is about; its identity includes the version so a changed re-upload is a new job."""

    bucket: str
    key: str
    size: int
    etag: str = ""
    version_id: str = ""

    @property
    def job_id(self) -> str:
        return derive_job_id(self.bucket, self.key, self.version_id or self.etag)

    @property
    def skip_reason(self) -> str | None:
        """Why this object is not audio we should submit, or None."""
        if self.key.endswith("/"):
            return "folder marker"
        if posixpath.splitext(self.key)[1].lower() not in AUDIO_SUFFIXES:
            return "not an audio file suffix"
        if self.size <= 0:
            return "empty object"
        return None


def derive_job_id(bucket: str, key: str, revision: str) -> str:
    digest = hashlib.sha256("\n".join((bucket, key, revision)).encode("utf-8")).hexdigest()
    return digest[:JOB_ID_LENGTH]


def is_job_id(value: str) -> bool:
    return len(value) == JOB_ID_LENGTH and all(c in "0123456789abcdef" for c in value)


def output_key(prefix: str, source_key: str, name: OutputName) -> str:
    """`<prefix><input key without extension>/<fixed name>`: never derived from a provider URL."""
    stem = posixpath.splitext(source_key)[0]
    return f"{prefix}{stem}/{name.file_name}"


@dataclass
class Job:
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
    output_keys: dict[str, str] = field(default_factory=dict)
    error_code: str | None = None
    error_message: str | None = None
    queue_reason: str | None = None
    submit_attempts: int = 0
    created_at: str = ""
    status_at: str = ""
    lease_until: str | None = None
    timestamps: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Job:
        return cls(
            job_id=str(item["job_id"]),
            status=JobStatus(item["status"]),
            source_bucket=str(item["source_bucket"]),
            source_key=str(item["source_key"]),
            source_size=int(item.get("source_size", 0)),
            source_etag=str(item.get("source_etag", "")),
            source_version_id=str(item.get("source_version_id", "")),
            task_id=item.get("task_id"),
            conversion_id=item.get("conversion_id"),
            eta=int(item["eta"]) if item.get("eta") is not None else None,
            credit_estimate=item.get("credit_estimate"),
            conversion_cost=item.get("conversion_cost"),
            conversion_duration=item.get("conversion_duration"),
            output_urls=dict(item.get("output_urls", {})),
            output_keys=dict(item.get("output_keys", {})),
            error_code=item.get("error_code"),
            error_message=item.get("error_message"),
            queue_reason=item.get("queue_reason"),
            submit_attempts=int(item.get("submit_attempts", 0)),
            created_at=str(item.get("created_at", "")),
            status_at=str(item.get("status_at", "")),
            lease_until=item.get("lease_until"),
            timestamps={k: str(v) for k, v in item.items() if k.endswith("_at") and isinstance(v, str)},
        )

    @property
    def source(self) -> SourceObject:
        return SourceObject(
            self.source_bucket, self.source_key, self.source_size, self.source_etag, self.source_version_id
        )


@dataclass(frozen=True)
class SubmitResult:
    """The provider's answer to POST /denoise."""

    task_id: str
    conversion_id: str
    eta: int | None
    credit_estimate: Decimal | None
    status: str | None
    message: str | None


@dataclass(frozen=True)
class ConversionOutcome:
    """What a callback or a status lookup says about a finished (or not) conversion."""

    task_id: str
    finished: bool
    succeeded: bool
    message: str
    outputs: dict[OutputName, str]
    conversion_cost: str | None = None
    conversion_duration: Decimal | None = None
    conversion_id: str | None = None
