"""Settings parsed once from the environment variables that template.yaml declares."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

DEFAULT_API_URL = "https://api.musicgpt.com/api/public/v1"
DEFAULT_OUTPUT_HOSTS = ("lalals.s3.amazonaws.com", "musicgpt.s3.amazonaws.com")


class SettingsError(RuntimeError):
    """A required setting is missing or malformed; raised when a function starts."""


class SubmitMode(StrEnum):
    AUDIO_URL = "audio_url"
    AUDIO_FILE = "audio_file"


@dataclass(frozen=True)
class Settings:
    jobs_table: str
    api_url: str
    api_key_secret_id: str
    signing_secret_id: str
    output_bucket: str
    event_bus_name: str
    # Needed only by the functions that submit (submit, reconcile) or copy (webhook, reconcile): see `require`.
    webhook_base_url: str = ""
    copy_queue_url: str = ""
    admission_queue_url: str = ""
    submit_mode: SubmitMode = SubmitMode.AUDIO_URL
    presign_expiry_seconds: int = 3600
    provider_connect_timeout: float = 5.0
    provider_read_timeout: float = 30.0
    provider_max_retries: int = 3
    max_parallel_jobs: int = 2
    output_prefix: str = "denoised/"
    output_allowlist: tuple[str, ...] = DEFAULT_OUTPUT_HOSTS
    copy_max_bytes: int = 2 * 1024**3
    copy_connect_timeout: float = 5.0
    copy_read_timeout: float = 60.0
    max_copy_attempts: int = 5
    confirm_with_status_lookup: bool = False
    max_submit_attempts: int = 5
    stale_after_seconds: int = 900
    max_job_age_seconds: int = 6 * 3600
    reconcile_lookup_limit: int = 10
    secret_max_age_seconds: int = 300

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        reader = _Reader(env)
        settings = cls(
            jobs_table=reader.required("JOBS_TABLE_NAME"),
            api_url=reader.optional("MUSICGPT_API_URL", DEFAULT_API_URL).rstrip("/"),
            api_key_secret_id=reader.required("MUSICGPT_API_KEY_SECRET_ARN"),
            signing_secret_id=reader.required("WEBHOOK_SIGNING_SECRET_ARN"),
            output_bucket=reader.required("OUTPUT_BUCKET"),
            event_bus_name=reader.required("EVENT_BUS_NAME"),
            webhook_base_url=reader.optional("WEBHOOK_BASE_URL", "").rstrip("/"),
            copy_queue_url=reader.optional("COPY_QUEUE_URL", ""),
            admission_queue_url=reader.optional("ADMISSION_QUEUE_URL", ""),
            submit_mode=reader.choice("SUBMIT_MODE", SubmitMode, SubmitMode.AUDIO_URL),
            presign_expiry_seconds=reader.integer("PRESIGN_EXPIRY_SECONDS", 3600, minimum=60),
            provider_connect_timeout=reader.number("PROVIDER_CONNECT_TIMEOUT_SECONDS", 5.0),
            provider_read_timeout=reader.number("PROVIDER_READ_TIMEOUT_SECONDS", 30.0),
            provider_max_retries=reader.integer("PROVIDER_MAX_RETRIES", 3, minimum=0),
            max_parallel_jobs=reader.integer("MAX_PARALLEL_JOBS", 2, minimum=1),
            output_prefix=reader.optional("OUTPUT_PREFIX", "denoised/"),
            output_allowlist=reader.csv("OUTPUT_HOST_ALLOWLIST", DEFAULT_OUTPUT_HOSTS),
            copy_max_bytes=reader.integer("COPY_MAX_BYTES", 2 * 1024**3, minimum=1),
            copy_connect_timeout=reader.number("COPY_CONNECT_TIMEOUT_SECONDS", 5.0),
            copy_read_timeout=reader.number("COPY_READ_TIMEOUT_SECONDS", 60.0),
            max_copy_attempts=reader.integer("MAX_COPY_ATTEMPTS", 5, minimum=1),
            confirm_with_status_lookup=reader.flag("CONFIRM_WITH_STATUS_LOOKUP", False),
            max_submit_attempts=reader.integer("MAX_SUBMIT_ATTEMPTS", 5, minimum=1),
            stale_after_seconds=reader.integer("STALE_AFTER_SECONDS", 900, minimum=1),
            max_job_age_seconds=reader.integer("MAX_JOB_AGE_SECONDS", 6 * 3600, minimum=60),
            reconcile_lookup_limit=reader.integer("RECONCILE_LOOKUP_LIMIT", 10, minimum=1),
            secret_max_age_seconds=reader.integer("SECRET_MAX_AGE_SECONDS", 300, minimum=0),
        )
        reader.raise_if_invalid()
        return settings

    def require(self, *fields: str) -> None:
        """Fail at start-up when a function-specific setting is missing (e.g. WEBHOOK_BASE_URL for the submitter)."""
        missing = [f"{name.upper()} is required" for name in fields if not getattr(self, name)]
        if missing:
            raise SettingsError("invalid configuration: " + "; ".join(missing))


class _Reader:
    """Collects every problem so one start-up error names all of them."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        self._problems: list[str] = []

    def required(self, name: str) -> str:
        value = self._env.get(name, "").strip()
        if not value:
            self._problems.append(f"{name} is required")
        return value

    def optional(self, name: str, default: str) -> str:
        return self._env.get(name, "").strip() or default

    def integer(self, name: str, default: int, *, minimum: int) -> int:
        raw = self._env.get(name, "").strip()
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            self._problems.append(f"{name} must be an integer, got {raw!r}")
            return default
        if value < minimum:
            self._problems.append(f"{name} must be >= {minimum}, got {value}")
        return value

    def number(self, name: str, default: float) -> float:
        raw = self._env.get(name, "").strip()
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            self._problems.append(f"{name} must be a number, got {raw!r}")
            return default
        if value <= 0:
            self._problems.append(f"{name} must be > 0, got {value}")
        return value

    def flag(self, name: str, default: bool) -> bool:
        raw = self._env.get(name, "").strip().lower()
        if not raw:
            return default
        if raw in {"true", "1", "yes"}:
            return True
        if raw in {"false", "0", "no"}:
            return False
        self._problems.append(f"{name} must be true or false, got {raw!r}")
        return default

    def csv(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        raw = self._env.get(name, "").strip()
        if not raw:
            return default
        return tuple(item.strip().lower() for item in raw.split(",") if item.strip())

    def choice[E: StrEnum](self, name: str, enum: type[E], default: E) -> E:
        raw = self._env.get(name, "").strip()
        if not raw:
            return default
        try:
            return enum(raw)
        except ValueError:
            allowed = ", ".join(member.value for member in enum)
            self._problems.append(f"{name} must be one of {allowed}, got {raw!r}")
            return default

    def raise_if_invalid(self) -> None:
        if self._problems:
            raise SettingsError("invalid configuration: " + "; ".join(self._problems))
