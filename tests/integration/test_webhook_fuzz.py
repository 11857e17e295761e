"""Property: whatever arrives at the webhook, the answer is never a 5xx and a bad callback never changes state."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from denoise_pipeline.domain.tokens import sign
from tests.conftest import SIGNING_SECRET, Stack
from tests.contract import WEBHOOK_FIELDS
from tests.integration.pipeline import job, post_callback, upload
from tests.provider_double import ProviderDouble

KEY = "uploads/fuzz.wav"
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
payloads = st.dictionaries(st.sampled_from(WEBHOOK_FIELDS) | st.text(max_size=10), json_values, max_size=12)
urlish = st.sampled_from(
    ["https://lalals.s3.amazonaws.com/a.wav", "http://127.0.0.1/x", "https://169.254.169.254/", "file:///etc/passwd"]
)
plausible = st.fixed_dictionaries(
    {"success": st.booleans(), "conversion_type": st.sampled_from(["Denoise", "denoise", "Stems", ""])},
    optional=dict.fromkeys(("no_noise", "no_noise_wav", "noise", "noise_wav"), urlish)
    | {"task_id": st.text(max_size=40), "conversion_cost": json_values},
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.data(),
    body=st.one_of(payloads.map(lambda p: json.dumps(p).encode()), plausible.map(lambda p: json.dumps(p).encode())),
    raw=st.binary(max_size=200),
    use_raw=st.booleans(),
)
def test_webhook_never_5xx_and_never_changes_state_on_bad_input(
    stack: Stack, provider: ProviderDouble, data: Any, body: bytes, raw: bytes, use_raw: bool
) -> None:
    if not any(item["source_key"] == KEY for item in stack.job_items()):
        upload(stack, KEY, b"RIFF" + bytes(1000))
    before = job(stack, KEY)
    job_id = data.draw(st.sampled_from([before["job_id"], "0" * 32]) | st.text(min_size=1, max_size=40))
    token = data.draw(st.sampled_from([sign(SIGNING_SECRET, str(job_id))]) | st.text(min_size=1, max_size=60))
    payload = raw if use_raw else body
    parsed = None
    with contextlib.suppress(ValueError):
        parsed = json.loads(payload)
    if isinstance(parsed, dict) and parsed.get("task_id") == before["task_id"]:
        return  # that would be the real callback; this test is about everything else

    answer = post_callback(str(job_id), None, token=str(token), raw=payload)

    assert answer["statusCode"] < 500, answer
    assert job(stack, KEY) == before
