"""Make moto's DynamoDB apply each request atomically, as real DynamoDB does.

moto checks a condition and writes an item in separate Python steps, and its request layer deep-copies an item
while another thread may be adding attributes to it ("dictionary changed size during iteration"). Real DynamoDB
applies every single-item request atomically, so the emulation serialises DynamoDB requests: race tests and the
local stack then measure our code, not the emulator's thread safety.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from moto.dynamodb.responses import DynamoHandler

_LOCK = threading.RLock()
_ORIGINAL_CALL_ACTION = DynamoHandler.call_action


@functools.wraps(_ORIGINAL_CALL_ACTION)
def _serialised_call_action(self: DynamoHandler) -> Any:
    with _LOCK:
        return _ORIGINAL_CALL_ACTION(self)


def serialise_dynamodb_requests() -> None:
    """Process-wide and idempotent: every DynamoDB request moto handles in this process runs under one lock."""
    DynamoHandler.call_action = _serialised_call_action  # type: ignore[method-assign]
