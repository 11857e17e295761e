"""What the behaviours change on the wire: value types, callback encodings, and answers from outside the API."""

from __future__ import annotations

import json
from http.client import responses
from typing import Any, Final

from flask import Response

STRING_CONVERSION_TYPE: Final[str] = "DENOISING"
"""``conversion_type`` under behaviour ``strings`` (the status lookup's spelling, as some callbacks carry it)."""

_ERROR_BODIES: Final[dict[int, dict[str, Any]]] = {
    402: {"success": False, "message": "Insufficient credits"},
    403: {"detail": "Not authenticated"},
    429: {"success": False, "error": "Rate limit exceeded"},
}
"""Scripted 4xx bodies: each of the keys the contract says to read (``message``, ``detail``, ``error``) appears."""


def as_text(value: bool | int | float | str) -> str:
    """A scalar as a form field or a stringly-typed JSON value carries it: ``true``/``false``, ``136.8``, ``10``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def stringify(value: Any) -> Any:
    """Behaviour ``strings``: every number and boolean (in nested objects too) as its text, ``conversion_type`` as
    ``DENOISING``; strings and nulls unchanged."""
    if isinstance(value, dict):
        return {
            key: STRING_CONVERSION_TYPE if key == "conversion_type" else stringify(item) for key, item in value.items()
        }
    if isinstance(value, bool | int | float):
        return as_text(value)
    return value


def form_fields(payload: dict[str, Any]) -> dict[str, str]:
    """A flat callback as form fields (behaviours ``form``, ``multipart``); null fields are left out, as a form has no
    null."""
    return {key: as_text(value) for key, value in payload.items() if value is not None}


def outage(status: int, retry_after: int | None) -> Response:
    """Behaviour ``flaky``: an answer from in front of the API. 5xx comes as a load balancer's HTML page; 4xx as a
    JSON error body (402/403/429 each in their own shape, others ``{success: false, message}``)."""
    reason = responses.get(status, "Error")
    if status >= 500:
        page = (
            f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
            f"<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
        )
        answer = Response(page, status=status, mimetype="text/html")
    else:
        body = _ERROR_BODIES.get(status, {"success": False, "message": reason})
        answer = Response(json.dumps(body), status=status, mimetype="application/json")
    if retry_after is not None:
        answer.headers["Retry-After"] = str(retry_after)
    return answer
