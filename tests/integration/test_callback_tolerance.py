"""Property: a callback with a valid token and the job's own task id, whatever its other fields hold (any JSON
value, any encoding, any size), is never answered with a 5xx; a refusal changes nothing; an acceptance leaves the
job in a state the callback may lead to, with every stored value one DynamoDB accepts."""

from __future__ import annotations

import json
from itertools import count
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.conftest import Stack
from tests.contract import WEBHOOK_FIELDS
from tests.integration.pipeline import job, post_callback, upload
from tests.provider_double import ProviderDouble

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**40, max_value=10**60)
    | st.floats()
    | st.text(max_size=40)
    | st.sampled_from(["true", "false", "NaN", "1e200", "-1", "COMPLETED", "IN_PROGRESS", "ERROR", "https://x/y.wav"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)
FIELDS = [name for name in WEBHOOK_FIELDS if name != "task_id"] + ["status", "status_msg", "conversion", "eta"]
changes = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=len(FIELDS))
DOCUMENTED = {
    "success": True,
    "conversion_type": "Denoise",
    **{
        name: f"https://lalals.s3.amazonaws.com/out/{name}"
        for name in ("no_noise", "no_noise_wav", "noise", "noise_wav")
    },
    "message": "de_noising conversion Completed",
    "conversion_duration": 136.8,
    "conversion_cost": "0.48",
}
payloads = changes | changes.map(lambda change: DOCUMENTED | dict(list(change.items())[:3]))
keys = count()
ALLOWED_AFTER = {"SUBMITTED", "COPYING", "FAILED"}


@pytest.fixture
def stack_overrides(stack_overrides: dict[str, str]) -> dict[str, str]:
    """Every example submits a job of its own, which keeps a provider slot: room for all of them."""
    return stack_overrides | {"MaxParallelJobs": "100"}


def encoded(payload: dict[str, Any], encoding: str) -> tuple[bytes, str]:
    if encoding == "json":
        return json.dumps(payload, default=str).encode(), "application/json"
    flat = {key: json.dumps(value) if not isinstance(value, str) else value for key, value in payload.items()}
    return urlencode(flat).encode(), "application/x-www-form-urlencoded"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=payloads, encoding=st.sampled_from(["json", "form"]), padding=st.sampled_from([0, 0, 0, 400_000]))
def test_any_callback_for_the_real_task_is_answered_and_stored_cleanly(
    stack: Stack, provider: ProviderDouble, payload: dict[str, Any], encoding: str, padding: int
) -> None:
    key = f"uploads/tolerance-{next(keys)}.wav"
    upload(stack, key, b"RIFF" + bytes(1000))
    before = job(stack, key)
    assert before["status"] == "SUBMITTED"
    payload = payload | {"task_id": before["task_id"]} | ({"padding": "x" * padding} if padding else {})
    body, content_type = encoded(payload, encoding)

    answer = post_callback(before["job_id"], None, raw=body, content_type=content_type)

    assert answer["statusCode"] < 500, answer
    after = job(stack, key)
    event(f"{encoding} → {answer['statusCode']} {after['status']}")
    if answer["statusCode"] >= 400:
        assert after == before
        return
    assert after["status"] in ALLOWED_AFTER, after
    if after["status"] == "FAILED":
        assert after["error_code"] == "CONVERSION_FAILED"
