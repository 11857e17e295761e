"""Submitting a job: how the audio reaches the provider, and the provider's answer in our terms."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from .numbers import read_number


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
    if isinstance(task_id, int | Decimal) and not isinstance(task_id, bool):
        task_id = str(task_id)
    if not isinstance(task_id, str) or not task_id.strip() or len(task_id) > 256:
        return None
    eta = read_number(body.get("eta"))
    status, message = body.get("status"), body.get("message")
    return SubmitResult(
        task_id=task_id.strip(),
        conversion_id=str(body.get("conversion_id") or ""),
        eta=int(eta) if eta is not None and abs(eta) < 10**9 else None,
        credit_estimate=read_number(body.get("credit_estimate")),
        status=status if isinstance(status, str) else None,
        message=message if isinstance(message, str) else None,
    )
