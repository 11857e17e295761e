"""Submitting a job: how the audio reaches the provider, and the provider's answer in our terms."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from .outcome import optional_decimal


class SubmitMode(StrEnum):
    AUDIO_URL = "audio_url"
    """A presigned GET URL of the object version."""
    AUDIO_FILE = "audio_file"
    """The object streamed in the request."""


@dataclass(frozen=True)
class SubmitResult:
    """The provider's answer to POST /denoise."""

    task_id: str
    conversion_id: str
    eta: int | None
    credit_estimate: Decimal | None
    status: str | None
    message: str | None


def parse_submit(body: dict[str, Any]) -> SubmitResult | None:
    """The answer to POST /denoise; None when it carries no task id."""
    task_id = body.get("task_id")
    if not isinstance(task_id, str) or not task_id:
        return None
    eta = body.get("eta")
    status, message = body.get("status"), body.get("message")
    return SubmitResult(
        task_id=task_id,
        conversion_id=str(body.get("conversion_id") or ""),
        eta=int(eta) if isinstance(eta, int | float) and not isinstance(eta, bool) else None,
        credit_estimate=optional_decimal(body.get("credit_estimate")),
        status=status if isinstance(status, str) else None,
        message=message if isinstance(message, str) else None,
    )
