"""Settings per function, parsed once from the environment variables template.yaml declares for that function.

Each class names every variable its function reads (`env(...)` on the field). A field without a default is
required by its type: a missing or malformed value fails the function at start-up, with every problem named in
one error. Values the template passes have no default here, so template.yaml stays their single source; the
defaults below are for tuning knobs the template does not set.

The classes are frozen dataclasses without `__eq__` and `__repr__`: a function reads its settings once and the
client caches in wiring key on that one object, and every generated method is source that a cold start compiles
(bench/cold_import.py). For the same reason the groups of fields the three functions' classes are made of
(`JobsSettings` … `SubmittingSettings`) have no `__init__`: they are never built on their own, only read as types.
"""

from __future__ import annotations

import dataclasses
import os
import types
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Self, get_type_hints

from .domain.submission import SubmitMode


class SettingsError(RuntimeError):
    """A required setting is missing or malformed; raised when a function starts."""


def env(name: str, default: Any = dataclasses.MISSING, *, minimum: float | None = None) -> Any:
    """A field read from the environment variable `name`; required unless it has a default."""
    return dataclasses.field(default=default, metadata={"env": name, "minimum": minimum})


class EnvSettings:
    """Base of every settings class: reads its fields from the environment."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        problems: list[str] = []
        settings = _read(cls, os.environ if environ is None else environ, problems)
        if problems:
            raise SettingsError("invalid configuration: " + "; ".join(problems))
        return settings

    @classmethod
    def required(cls) -> set[str]:
        """The variables without a default: the template must give each of them."""
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        return {
            spec.metadata["env"] for spec in fields if "env" in spec.metadata and spec.default is dataclasses.MISSING
        }

    @classmethod
    def variables(cls) -> set[str]:
        """Every environment variable this class reads."""
        return {spec.metadata["env"] for spec in dataclasses.fields(cls)}  # type: ignore[arg-type]


@dataclass(frozen=True, kw_only=True, eq=False, repr=False, init=False)
class JobsSettings(EnvSettings):
    """What every function needs: the job table, the bus final states go to, and provider capacity."""

    jobs_table: str = env("JOBS_TABLE_NAME")
    event_bus_name: str = env("EVENT_BUS_NAME")
    admission_queue_url: str = env("ADMISSION_QUEUE_URL")
    max_parallel_jobs: int = env("MAX_PARALLEL_JOBS", minimum=1)
    secret_max_age_seconds: int = env("SECRET_MAX_AGE_SECONDS", 300, minimum=0)


@dataclass(frozen=True, kw_only=True, eq=False, repr=False, init=False)
class ProviderSettings(EnvSettings):
    """The MusicGPT API: where it is, the secret holding its key, and how patiently to call it."""

    api_url: str = env("MUSICGPT_API_URL")
    api_key_secret_id: str = env("MUSICGPT_API_KEY_SECRET_ARN")
    connect_timeout: float = env("PROVIDER_CONNECT_TIMEOUT_SECONDS", 5.0, minimum=0.001)
    read_timeout: float = env("PROVIDER_READ_TIMEOUT_SECONDS", 30.0, minimum=0.001)
    max_retries: int = env("PROVIDER_MAX_RETRIES", 3, minimum=0)
    lookups_per_minute: int = env("STATUS_LOOKUPS_PER_MINUTE", minimum=1)
    """The provider's status-lookup limit for the account's plan (20 / 200 / 500)."""


@dataclass(frozen=True, kw_only=True, eq=False, repr=False, init=False)
class SigningSettings(EnvSettings):
    """The secret that signs and verifies webhook tokens."""

    signing_secret_id: str = env("WEBHOOK_SIGNING_SECRET_ARN")


@dataclass(frozen=True, kw_only=True, eq=False, repr=False, init=False)
class SubmissionSettings(EnvSettings):
    """How a job is submitted: the webhook base, audio_url or audio_file, presigning, attempts."""

    webhook_base_url: str = env("WEBHOOK_BASE_URL")
    submit_mode: SubmitMode = env("SUBMIT_MODE")
    presign_expiry_seconds: int = env("PRESIGN_EXPIRY_SECONDS", minimum=60)
    max_submit_attempts: int = env("MAX_SUBMIT_ATTEMPTS", 5, minimum=1)


@dataclass(frozen=True, kw_only=True, eq=False, repr=False, init=False)
class SubmittingSettings(JobsSettings, ProviderSettings, SigningSettings, SubmissionSettings):
    """What a function that submits jobs needs; a confirmed or kept result is recorded like a callback, which
    queues the copy."""

    copy_queue_url: str = env("COPY_QUEUE_URL")


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class SubmitSettings(SubmittingSettings):
    """SubmitFunction: new uploads, and the admission queue (wake-ups, status-lookup confirmations, kept callbacks)."""

    input_bucket: str = env("INPUT_BUCKET")
    """Only uploads to this bucket are submitted."""


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class WebhookSettings(JobsSettings, SigningSettings):
    """WebhookFunction: callbacks (verify, record) and the copy queue (stream outputs into the output bucket)."""

    copy_queue_url: str = env("COPY_QUEUE_URL")
    output_bucket: str = env("OUTPUT_BUCKET")
    output_prefix: str = env("OUTPUT_PREFIX", "denoised/")
    output_allowlist: tuple[str, ...] = env("OUTPUT_HOST_ALLOWLIST")
    copy_max_bytes: int = env("COPY_MAX_BYTES", minimum=1)
    copy_connect_timeout: float = env("COPY_CONNECT_TIMEOUT_SECONDS", 5.0, minimum=0.001)
    copy_read_timeout: float = env("COPY_READ_TIMEOUT_SECONDS", 60.0, minimum=0.001)
    max_copy_attempts: int = env("MAX_COPY_ATTEMPTS", minimum=1)
    copy_retry_delay_seconds: float = env("COPY_RETRY_DELAY_SECONDS", 30.0, minimum=0)
    """The first retry of a failed copy attempt waits this long; each later one twice as long (at most 15 min)."""
    copy_min_bytes_per_second: float = env("COPY_MIN_BYTES_PER_SECOND", 65536.0, minimum=0)
    """A download slower than this after its first 30 s is stopped and retried (0 = no minimum)."""
    output_ca_bundle: str = env("OUTPUT_CA_BUNDLE", "")
    """A PEM bundle to verify output downloads against instead of the system's CAs (the local stack's own CA)."""
    confirm_every_callback: bool = env("CONFIRM_WITH_STATUS_LOOKUP")
    """True: a success is confirmed with the status lookup (by the submit function) before its URLs are trusted."""


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class ReconcileSettings(SubmittingSettings):
    """ReconcileFunction: re-drives stuck jobs, so it submits like SubmitFunction; it also re-queues copies."""

    stale_after_seconds: int = env("STALE_AFTER_SECONDS", minimum=1)
    max_job_age_seconds: int = env("MAX_JOB_AGE_SECONDS", minimum=60)
    lookup_limit: int = env("RECONCILE_LOOKUP_LIMIT", 10, minimum=1)


def _read[S](cls: type[S], environ: Mapping[str, str], problems: list[str]) -> S:
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    for spec in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = spec.metadata["env"]
        raw = environ.get(name, "").strip()
        if not raw:
            if spec.default is dataclasses.MISSING:
                problems.append(f"{name} is required")
            continue
        value = _convert(name, hints[spec.name], raw, problems)
        minimum = spec.metadata["minimum"]
        if minimum is not None and value is not None and value < minimum:
            problems.append(f"{name} must be >= {minimum}, got {value}")
        values[spec.name] = value
    if problems:
        return None  # type: ignore[return-value]  # the caller raises; a partial object is never returned
    return cls(**values)


def _convert(name: str, kind: Any, raw: str, problems: list[str]) -> Any:
    try:
        if kind is bool:
            return _flag(raw)
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
        if kind == tuple[str, ...]:
            return tuple(item.strip().lower() for item in raw.split(",") if item.strip())
        if isinstance(kind, type) and issubclass(kind, StrEnum):
            return kind(raw)
        if kind is str:
            return raw.rstrip("/") if name.endswith("_URL") else raw
    except ValueError:
        problems.append(f"{name}: {raw!r} is not a valid {_describe(kind)}")
        return None
    raise TypeError(f"no conversion for {kind}")  # a programming error in this module, not a configuration one


def _flag(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"", "false", "0", "no"}:
        return False
    if lowered in {"true", "1", "yes"}:
        return True
    raise ValueError(raw)


def _describe(kind: Any) -> str:
    if isinstance(kind, type) and issubclass(kind, StrEnum):
        return "value (one of " + ", ".join(member.value for member in kind) + ")"
    if isinstance(kind, types.GenericAlias):
        return "list"
    return {bool: "flag (true or false)", int: "integer", float: "number"}.get(kind, str(kind))
