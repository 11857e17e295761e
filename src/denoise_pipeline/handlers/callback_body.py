"""The body of a provider callback as the HTTP API delivers it (text or base64), read into a JSON object."""

from __future__ import annotations

import binascii
import json
from decimal import Decimal
from functools import partial
from typing import Any

from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

from ..domain.callback import CallbackRefused

JSON_DESERIALIZER = partial(json.loads, parse_float=Decimal)
"""Numbers keep their decimal text (DynamoDB stores Decimal, never float)."""


class UnreadableBody(CallbackRefused):
    """The body is not a JSON object."""


def read_payload(event: APIGatewayProxyEventV2) -> dict[str, Any]:
    """The callback's JSON object (numbers as Decimal, through the resolver's deserializer)."""
    try:
        payload = event.json_body
    except (binascii.Error, UnicodeError, ValueError, RecursionError) as exc:
        raise UnreadableBody(f"body is not valid JSON: {type(exc).__name__}") from exc
    if not isinstance(payload, dict):
        raise UnreadableBody("body must be a JSON object")
    return payload
