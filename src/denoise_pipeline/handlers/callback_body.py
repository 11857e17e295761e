"""The body of a provider callback as the HTTP API delivers it (text or base64), read into a flat mapping.

JSON is the documented form; form-encoded and multipart bodies (seen from real integrations) are read too, their
values as text. Numbers in JSON stay exact (Decimal) and NaN/Infinity stay text, for the outcome mapper to judge.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from decimal import Decimal
from functools import partial
from typing import Any

from ..domain.refusals import CallbackRefused, OversizedCallback
from .form_body import read_form, read_multipart

JSON_DESERIALIZER = partial(json.loads, parse_float=Decimal, parse_int=Decimal, parse_constant=str)
MAX_BODY_BYTES = 256 * 1024


class UnreadableBody(CallbackRefused):
    """The body is not a JSON object, a form or a multipart form."""


def read_payload(event: Mapping[str, Any]) -> dict[str, Any]:
    """`event`: an HTTP API (payload 2.0) event. API Gateway lower-cases header names; other invokers may not."""
    body = event.get("body") or ""
    encoded = bool(event.get("isBase64Encoded"))
    if len(body) > (MAX_BODY_BYTES * 4 // 3 + 4 if encoded else MAX_BODY_BYTES):
        raise OversizedCallback(f"body is larger than {MAX_BODY_BYTES} bytes")
    headers = {str(name).lower(): value for name, value in (event.get("headers") or {}).items()}
    content_type = str(headers.get("content-type") or "")
    media_type = content_type.split(";")[0].strip().lower()
    try:
        if media_type == "application/x-www-form-urlencoded":
            payload: Any = read_form(_raw(body, encoded))
        elif media_type == "multipart/form-data":
            payload = read_multipart(content_type, _raw(body, encoded))
        else:  # JSON, whatever the declared type (some senders declare none)
            payload = JSON_DESERIALIZER(_raw(body, encoded).decode("utf-8") if encoded else body)
    except (binascii.Error, UnicodeError, ValueError, RecursionError) as exc:
        raise UnreadableBody(f"body cannot be read as {media_type or 'JSON'}: {type(exc).__name__}") from exc
    if not isinstance(payload, dict):
        raise UnreadableBody("body must be a JSON object or a form")
    return payload


def _raw(body: str, encoded: bool) -> bytes:
    return base64.b64decode(body, validate=True) if encoded else body.encode("utf-8")
