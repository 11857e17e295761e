"""Provider text (error messages, answers we keep for later reading) scrubbed of what must never be stored.

A provider may echo what we sent it: the presigned `audio_url` (its query string is a credential) and the
`webhook_url` (its last segment is the job's token). Both are cut before text reaches a log, an item or an event.
"""

from __future__ import annotations

import json
import re
from typing import Any

EXCERPT_CHARS = 4096
_QUERY = re.compile(r"(?i)(\bhttps?://[^\s\"'<>?#]+)\?[^\s\"'<>#]*")
_SIGNING_PARAMETER = re.compile(
    r"(?i)\b(X-Amz-(?:Signature|Credential|Security-Token)|Signature|AWSAccessKeyId)=[^&\s\"']+"
)
_WEBHOOK_TOKEN = re.compile(r"(/webhooks/[0-9a-fA-F]{1,64}/)[A-Za-z0-9_\-=%.]+")
REDACTED = "[redacted]"


def scrub(text: str) -> str:
    """`text` without URL query strings, signing parameters or webhook tokens."""
    text = _QUERY.sub(rf"\1?{REDACTED}", text)
    text = _SIGNING_PARAMETER.sub(rf"\1={REDACTED}", text)
    return _WEBHOOK_TOKEN.sub(rf"\1{REDACTED}", text)


def excerpt(answer: Any, limit: int = EXCERPT_CHARS) -> str:
    """A scrubbed, bounded text form of any answer (a JSON value, a form, plain text), for keeping on the job."""
    text = answer if isinstance(answer, str) else json.dumps(answer, default=str, ensure_ascii=False, sort_keys=True)
    return scrub(text)[:limit]
