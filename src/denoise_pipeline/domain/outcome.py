"""What the provider says about a conversion, read tolerantly, in one place, for callbacks and status lookups.

The documented webhook is one shape among several: integrations see progress callbacks without URLs, status-style
answers (`status`, `status_msg`) without `success`, `/byId` answers naming outputs `conversion_path*` or
`audio_url`, and numbers or booleans sent as text. `read_outcome` turns any of them into a verdict:

- FAILED: `success` is false, or the status is FAILED / ERROR / CANCELLED. Nothing else fails a job.
- PENDING: the status says not finished, or nothing says finished and no output is offered (a progress callback).
- SUCCEEDED: the status says finished and offers the cleaned track, or, with no status, both wav outputs are there.
- UNCLEAR: anything else (finished without a cleaned track, some outputs without a status): the job is confirmed
  with the status lookup before anything is copied.

What we could not read (an unknown status, an unreadable number, a non-URL output...) is listed in `surprises`,
with a scrubbed excerpt of the answer in `raw`, so it can be kept on the job and counted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

from .numbers import read_number
from .outputs import REQUIRED_OUTPUTS, OutputName
from .redaction import excerpt, scrub
from .refusals import InvalidCallback

SUCCESS_STATUSES = frozenset({"COMPLETED", "COMPLETE", "SUCCESS", "SUCCEEDED", "DONE", "FINISHED"})
FAILURE_STATUSES = frozenset({"FAILED", "FAILURE", "ERROR", "CANCELLED", "CANCELED"})
PENDING_STATUSES = frozenset({"IN_QUEUE", "QUEUED", "PENDING", "PROCESSING", "IN_PROGRESS", "RUNNING", "STARTED"})
DENOISE_TYPES = frozenset({"denoise", "denoising"})
FALLBACK_OUTPUTS = (  # names a status lookup uses instead of the webhook's, in order of trust
    ("conversion_path", OutputName.NO_NOISE),
    ("conversion_path_wav", OutputName.NO_NOISE_WAV),
    ("audio_url", OutputName.NO_NOISE),
)
MAX_ID_CHARS = 256
MAX_URL_CHARS = 8192
MAX_MESSAGE_CHARS = 1000
MAX_RAW_NUMBER_CHARS = 100
_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://\S")
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


class Verdict(StrEnum):
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    PENDING = "PENDING"
    UNCLEAR = "UNCLEAR"

    @property
    def is_final(self) -> bool:
        return self in (Verdict.SUCCEEDED, Verdict.FAILED)


@dataclass(frozen=True)
class ConversionOutcome:
    """What a callback or a status lookup says about one task."""

    task_id: str
    verdict: Verdict
    message: str
    outputs: dict[OutputName, str] = field(default_factory=dict)
    conversion_id: str | None = None
    status: str | None = None
    conversion_cost: str | None = None
    """Decimal text ("0.48"), as the provider documents it."""
    conversion_duration: Decimal | None = None
    unreadable: dict[str, str] = field(default_factory=dict)
    """Field → the raw text of a cost or duration that is not a number we can store."""
    surprises: tuple[str, ...] = ()
    raw: str = ""
    """A scrubbed excerpt of the answer, set when there are surprises."""

    @property
    def succeeded(self) -> bool:
        return self.verdict is Verdict.SUCCEEDED

    @property
    def finished(self) -> bool:
        return self.verdict.is_final


def read_outcome(answer: Mapping[str, Any], *, task_id: str | None = None) -> ConversionOutcome:
    """Map a callback payload or a `/byId` answer to an outcome; `task_id` is the one we asked about (lookups).

    Raises InvalidCallback only when the answer cannot be tied to a task or a field is beyond any sane size.
    """
    conversion = answer.get("conversion")
    fields: Mapping[str, Any] = conversion if isinstance(conversion, Mapping) else answer
    surprises: list[str] = []
    given_task = _identifier(fields.get("task_id"), "task_id") or _identifier(answer.get("task_id"), "task_id")
    if given_task is None and task_id is None:
        raise InvalidCallback("task_id is missing")
    _check_conversion_type(fields.get("conversion_type"), surprises)
    success = None if fields is not answer else _flag(answer.get("success"), surprises)
    status = _status(fields.get("status"), surprises)
    outputs = _outputs(fields, surprises)
    cost, cost_raw = _number(fields.get("conversion_cost"), "conversion_cost", surprises)
    duration, duration_raw = _number(fields.get("conversion_duration"), "conversion_duration", surprises)
    if duration is not None and duration < 0:
        duration, duration_raw = None, str(duration)
        surprises.append("conversion_duration is negative")
    verdict = _verdict(success, status, outputs, surprises)
    unreadable = {
        name: raw for name, raw in (("conversion_cost", cost_raw), ("conversion_duration", duration_raw)) if raw
    }
    return ConversionOutcome(
        task_id=given_task or task_id or "",
        verdict=verdict,
        message=_message(fields, verdict),
        outputs=outputs if verdict is Verdict.SUCCEEDED else {},
        conversion_id=_identifier(fields.get("conversion_id"), "conversion_id"),
        status=status,
        conversion_cost=None if cost is None else str(cost),
        conversion_duration=duration,
        unreadable=unreadable,
        surprises=tuple(surprises),
        raw=excerpt(answer) if surprises else "",
    )


def _verdict(success: bool | None, status: str | None, outputs: dict[OutputName, str], surprises: list[str]) -> Verdict:
    if success is False or status in FAILURE_STATUSES:
        return Verdict.FAILED
    if status in PENDING_STATUSES:
        return Verdict.PENDING
    cleaned = OutputName.NO_NOISE in outputs or OutputName.NO_NOISE_WAV in outputs
    if status in SUCCESS_STATUSES:
        if cleaned:
            return Verdict.SUCCEEDED
        surprises.append(f"status {status} without a cleaned track")
        return Verdict.UNCLEAR
    if all(name in outputs for name in REQUIRED_OUTPUTS):
        return Verdict.SUCCEEDED
    if not outputs:
        return Verdict.PENDING
    surprises.append("some outputs but no status saying the conversion finished")
    return Verdict.UNCLEAR


def _identifier(value: Any, name: str) -> str | None:
    if value is None or isinstance(value, bool | Mapping | list):
        return None
    text = str(value).strip()
    if len(text) > MAX_ID_CHARS:
        raise InvalidCallback(f"{name} is longer than {MAX_ID_CHARS} characters")
    return text or None


def _check_conversion_type(value: Any, surprises: list[str]) -> None:
    """Advisory: the URL token already ties the callback to a denoise job; another value is noted, not refused."""
    if value is None:
        return
    if not isinstance(value, str) or re.sub(r"[^a-z]", "", value.lower()) not in DENOISE_TYPES:
        surprises.append(f"conversion_type {_short(value)}")


def _flag(value: Any, surprises: list[str]) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    surprises.append(f"success {_short(value)}")
    return None


def _status(value: Any, surprises: list[str]) -> str | None:
    if value is None or value == "":
        return None
    status = str(value).strip().upper().replace(" ", "_")[:64] if isinstance(value, str) else None
    if status not in SUCCESS_STATUSES | FAILURE_STATUSES | PENDING_STATUSES:
        surprises.append(f"status {_short(value)}")
        return None
    return status


def _outputs(fields: Mapping[str, Any], surprises: list[str]) -> dict[OutputName, str]:
    outputs: dict[OutputName, str] = {}
    for source, name in [*((name.value, name) for name in OutputName), *FALLBACK_OUTPUTS]:
        if name in outputs:
            continue
        value = fields.get(source)
        if value is None or value == "":
            continue
        if not isinstance(value, str) or not _URL.match(value.strip()):  # any scheme: the URL policy judges it
            surprises.append(f"{source} is not a URL: {_short(value)}")
            continue
        if len(value) > MAX_URL_CHARS:
            raise InvalidCallback(f"{source} is longer than {MAX_URL_CHARS} characters")
        outputs[name] = value.strip()
    return outputs


def _number(value: Any, name: str, surprises: list[str]) -> tuple[Decimal | None, str | None]:
    """A number (or its text) as a Decimal DynamoDB can store; otherwise None and the raw text."""
    if value is None or value == "":
        return None, None
    number = read_number(value)
    if number is None:
        surprises.append(f"{name} is not a number: {_short(value)}")
        return None, _short(value, MAX_RAW_NUMBER_CHARS)
    return number, None


def _message(fields: Mapping[str, Any], verdict: Verdict) -> str:
    for name in ("message", "status_msg", "error", "detail"):
        value = fields.get(name)
        if isinstance(value, str) and value.strip():
            return scrub(value.strip())[:MAX_MESSAGE_CHARS]
    return {
        Verdict.SUCCEEDED: "completed",
        Verdict.FAILED: "conversion failed",
        Verdict.PENDING: "in progress",
        Verdict.UNCLEAR: "unclear answer",
    }[verdict]


def _short(value: Any, limit: int = 60) -> str:
    return scrub(repr(value) if not isinstance(value, str) else value)[:limit]
