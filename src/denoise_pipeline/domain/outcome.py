"""What the provider says about a conversion, in our terms: finished or not, succeeded or not, and its outputs.

The provider's vocabulary (field names, status words, loose types) is read here, in one place, for both the
webhook payload and the status lookup.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from .callback import InvalidCallback
from .outputs import REQUIRED_OUTPUTS, OutputName

DENOISE_CONVERSION_TYPE = "denoise"
SUCCESS_STATUSES = frozenset({"COMPLETED", "SUCCESS", "SUCCEEDED"})
FAILURE_STATUSES = frozenset({"FAILED", "ERROR", "CANCELLED"})


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


def parse_callback(payload: dict[str, Any]) -> ConversionOutcome:
    """A typed view of the documented webhook payload; tolerant of extra fields, strict where types matter.

    Success needs both wav outputs; an mp3 variant may be missing (the wav is then the only copy of that output).
    `success: false` or missing wav outputs is a failed conversion with the provider's message kept.
    """
    task_id = payload.get("task_id")
    if not isinstance(task_id, str) or not task_id:
        raise InvalidCallback("task_id must be a non-empty string")
    conversion_type = payload.get("conversion_type")
    if not isinstance(conversion_type, str) or conversion_type.strip().lower() != DENOISE_CONVERSION_TYPE:
        raise InvalidCallback(f"conversion_type must be Denoise, got {str(conversion_type)[:40]!r}")
    success = payload.get("success")
    if not isinstance(success, bool):
        raise InvalidCallback("success must be a boolean")
    outputs: dict[OutputName, str] = {}
    for name in OutputName:
        value = payload.get(name.value)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise InvalidCallback(f"{name.value} must be a string URL")
        outputs[name] = value
    message = payload.get("message")
    message = message if isinstance(message, str) and message else ""
    missing = [name.value for name in REQUIRED_OUTPUTS if name not in outputs]
    succeeded = success and not missing
    if success and missing:
        message = f"callback reported success without {', '.join(missing)}" + (f": {message}" if message else "")
    return ConversionOutcome(
        task_id=task_id,
        finished=True,
        succeeded=succeeded,
        message=message or ("conversion failed" if not succeeded else "completed"),
        outputs=outputs if succeeded else {},
        conversion_cost=_callback_cost(payload.get("conversion_cost")),
        conversion_duration=_callback_duration(payload.get("conversion_duration")),
        conversion_id=payload.get("conversion_id") if isinstance(payload.get("conversion_id"), str) else None,
    )


def parse_status(body: dict[str, Any], *, task_id: str) -> ConversionOutcome:
    """Parse GET /byId defensively: its denoise shape is undocumented, so unknown means "not finished"."""
    conversion = body.get("conversion")
    if not isinstance(conversion, dict):
        conversion = body
    status = str(conversion.get("status") or "").upper()
    outputs = {name: value for name in OutputName if isinstance(value := conversion.get(name.value), str) and value}
    message = str(conversion.get("status_msg") or conversion.get("message") or status or "no status")
    cost = conversion.get("conversion_cost")
    return ConversionOutcome(
        task_id=str(conversion.get("task_id") or task_id),
        finished=status in SUCCESS_STATUSES or status in FAILURE_STATUSES,
        succeeded=status in SUCCESS_STATUSES,
        message=message,
        outputs=outputs,
        conversion_cost=None if cost is None or isinstance(cost, bool) else str(cost),
        conversion_duration=optional_decimal(conversion.get("conversion_duration")),
        conversion_id=str(conversion.get("conversion_id") or "") or None,
    )


def optional_decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _callback_cost(value: Any) -> str | None:
    """Documented as a string ("0.48"); a number is accepted and kept as its decimal text."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise InvalidCallback("conversion_cost must be a string")
    text = str(value).strip()
    try:
        Decimal(text)
    except InvalidOperation as exc:
        raise InvalidCallback("conversion_cost must be a decimal number") from exc
    return text


def _callback_duration(value: Any) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise InvalidCallback("conversion_duration must be a number")
    duration = Decimal(value)
    if not duration.is_finite() or duration < 0:
        raise InvalidCallback("conversion_duration must be a finite, non-negative number")
    return duration
