"""Parse and verify provider callbacks. Verification fails closed and happens before anything is fetched or written."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from . import tokens
from .models import ConversionOutcome, OutputName, is_job_id

DENOISE_CONVERSION_TYPE = "denoise"


class CallbackRejected(Exception):
    """A callback we will not act on; `status_code` is what the sender gets back."""

    status_code = 400
    code = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownCallback(CallbackRejected):
    """Wrong token or unknown job: the same answer for both, so the API does not reveal which jobs exist."""

    status_code = 404
    code = "not_found"

    def __init__(self) -> None:
        super().__init__("no such webhook")


class InvalidCallback(CallbackRejected):
    status_code = 422
    code = "invalid_payload"


class ConflictingCallback(CallbackRejected):
    status_code = 409
    code = "conflict"


def verify_token(secrets: Callable[[], Sequence[str]], job_id: str, token: str) -> None:
    if not is_job_id(job_id) or not tokens.verify(secrets(), job_id, token):
        raise UnknownCallback


def decode_body(body: str | None, is_base64: bool) -> dict[str, Any]:
    if not body:
        raise CallbackRejected("empty body")
    try:
        raw = base64.b64decode(body, validate=True) if is_base64 else body.encode("utf-8")
        payload = json.loads(raw, parse_float=Decimal)
    except (binascii.Error, UnicodeError, ValueError, RecursionError) as exc:
        raise CallbackRejected(f"body is not valid JSON: {type(exc).__name__}") from exc
    if not isinstance(payload, dict):
        raise CallbackRejected("body must be a JSON object")
    return payload


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
    missing = [name.value for name in (OutputName.NO_NOISE_WAV, OutputName.NOISE_WAV) if name not in outputs]
    succeeded = success and not missing
    if success and missing:
        message = f"callback reported success without {', '.join(missing)}" + (f": {message}" if message else "")
    return ConversionOutcome(
        task_id=task_id,
        finished=True,
        succeeded=succeeded,
        message=message or ("conversion failed" if not succeeded else "completed"),
        outputs=outputs if succeeded else {},
        conversion_cost=_cost(payload.get("conversion_cost")),
        conversion_duration=_duration(payload.get("conversion_duration")),
        conversion_id=payload.get("conversion_id") if isinstance(payload.get("conversion_id"), str) else None,
    )


def _cost(value: Any) -> str | None:
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


def _duration(value: Any) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise InvalidCallback("conversion_duration must be a number")
    duration = Decimal(value)
    if not duration.is_finite() or duration < 0:
        raise InvalidCallback("conversion_duration must be a finite, non-negative number")
    return duration
