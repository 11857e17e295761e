"""How the webhook answers over HTTP: one table for what recording a callback came to, one for every refusal."""

from __future__ import annotations

from typing import Any

from ..domain import callback as results
from ..domain import refusals
from .callback_body import UnreadableBody

ANSWERS: dict[type[Any], tuple[int, str | None, str | None]] = {  # result → status code, flag in the body, metric
    results.Accepted: (202, None, None),
    results.Duplicate: (200, "duplicate", "DuplicateCallbacks"),
    results.Failed: (200, None, "JobsFailed"),
    results.Progress: (200, "progress", "ProgressCallbacks"),
    results.Confirming: (202, "confirming", "CallbacksToConfirm"),
    results.Kept: (202, "kept", "CallbacksKept"),
}
REFUSALS: dict[type[refusals.CallbackRefused], tuple[int, str]] = {
    UnreadableBody: (400, "bad_request"),
    refusals.UnknownCallback: (404, "not_found"),
    refusals.ConflictingCallback: (409, "conflict"),
    refusals.OversizedCallback: (413, "too_large"),
    refusals.InvalidCallback: (422, "invalid_payload"),
}


def answer(job_id: str, result: results.CallbackResult) -> tuple[int, dict[str, Any], str | None]:
    """Status code, JSON body and the metric to count, for a recorded callback."""
    status_code, flag, metric = ANSWERS[type(result)]
    body: dict[str, Any] = {"job_id": job_id, "status": result.status.value}
    return status_code, body | ({flag: True} if flag else {}), metric


def refusal(exc: refusals.CallbackRefused) -> tuple[int, dict[str, str]]:
    status_code, code = REFUSALS[type(exc)]
    return status_code, {"error": code, "message": exc.message}
