from __future__ import annotations

import base64
import contextlib
import json
from decimal import Decimal
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2
from hypothesis import given
from hypothesis import strategies as st

from denoise_pipeline.domain.callback import CallbackRefused, InvalidCallback
from denoise_pipeline.domain.outcome import parse_callback
from denoise_pipeline.domain.outputs import OutputName
from denoise_pipeline.handlers.callback_body import JSON_DESERIALIZER, read_payload

DOCUMENTED = {
    "success": True,
    "conversion_type": "Denoise",
    "task_id": "t-1",
    "conversion_id": "c-1",
    "audio_path": "files/x.wav",
    "no_noise": "https://lalals.s3.amazonaws.com/x_nonoise.mp3",
    "no_noise_wav": "https://lalals.s3.amazonaws.com/x_nonoise.wav",
    "noise": "https://lalals.s3.amazonaws.com/x_noise.mp3",
    "noise_wav": "https://lalals.s3.amazonaws.com/x_noise.wav",
    "message": "de_noising conversion Completed",
    "conversion_duration": 136.8,
    "conversion_cost": "0.48",
}


def decode_body(body: str, is_base64: bool) -> dict[str, Any]:
    """The route's body reader on an HTTP API event carrying `body`."""
    return read_payload(APIGatewayProxyEventV2({"body": body, "isBase64Encoded": is_base64}, JSON_DESERIALIZER))


def parsed(payload: dict[str, Any]) -> Any:
    return parse_callback(decode_body(json.dumps(payload), False))


def test_documented_payload() -> None:
    outcome = parsed(DOCUMENTED | {"unexpected_extra": {"nested": 1}})
    assert outcome.succeeded
    assert outcome.task_id == "t-1"
    assert outcome.conversion_cost == "0.48"
    assert outcome.conversion_duration == Decimal("136.8")
    assert set(outcome.outputs) == set(OutputName)


def test_base64_body_is_decoded() -> None:
    body = base64.b64encode(json.dumps(DOCUMENTED).encode()).decode()
    assert parse_callback(decode_body(body, True)).task_id == "t-1"


def test_failure_keeps_the_provider_message() -> None:
    outcome = parsed({"success": False, "conversion_type": "Denoise", "task_id": "t", "message": "bad audio"})
    assert not outcome.succeeded
    assert outcome.message == "bad audio"
    assert outcome.outputs == {}


def test_numeric_cost_is_kept_as_its_decimal_text() -> None:
    assert parsed(DOCUMENTED | {"conversion_cost": 0.5}).conversion_cost == "0.5"


@pytest.mark.parametrize(
    "change",
    [
        {"task_id": 5},
        {"task_id": ""},
        {"success": "true"},
        {"conversion_type": "Stems"},
        {"conversion_cost": "cheap"},
        {"conversion_cost": True},
        {"conversion_duration": "136"},
        {"conversion_duration": -1},
        {"noise_wav": 7},
    ],
)
def test_wrong_types_are_rejected(change: dict[str, Any]) -> None:
    with pytest.raises(InvalidCallback):
        parsed(DOCUMENTED | change)


@pytest.mark.parametrize("body", ["", "{", "[1]", "null", '"text"', "NaN"])
def test_bodies_that_are_not_objects(body: str) -> None:
    with pytest.raises(CallbackRefused):
        parse_callback(decode_body(body, False))


def test_invalid_base64() -> None:
    with pytest.raises(CallbackRefused):
        decode_body("%%%not-base64", True)


@given(st.dictionaries(st.text(max_size=15), st.none() | st.booleans() | st.integers() | st.text(max_size=20)))
def test_arbitrary_objects_parse_or_are_rejected_cleanly(payload: dict[str, Any]) -> None:
    with contextlib.suppress(CallbackRefused):
        parse_callback(payload)
