"""Callback and status-lookup answers, read by the one outcome mapper: the shapes real integrations show, each with
the verdict it must get, and the body reader for every encoding a callback arrives in."""

from __future__ import annotations

import base64
import contextlib
import json
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import pytest
from boto3.dynamodb.types import TypeSerializer
from hypothesis import given
from hypothesis import strategies as st

from denoise_pipeline.domain.outcome import ConversionOutcome, Verdict, read_outcome
from denoise_pipeline.domain.outputs import OutputName
from denoise_pipeline.domain.refusals import CallbackRefused, InvalidCallback, OversizedCallback
from denoise_pipeline.handlers.callback_body import MAX_BODY_BYTES, read_payload

FILES = "https://lalals.s3.amazonaws.com/files"
URLS = {
    "no_noise": f"{FILES}/x_nonoise.mp3",
    "no_noise_wav": f"{FILES}/x_nonoise.wav",
    "noise": f"{FILES}/x_noise.mp3",
    "noise_wav": f"{FILES}/x_noise.wav",
}
DOCUMENTED = {
    "success": True,
    "conversion_type": "Denoise",
    "task_id": "t-1",
    "conversion_id": "c-1",
    "audio_path": "files/x.wav",
    **URLS,
    "message": "de_noising conversion Completed",
    "conversion_duration": 136.8,
    "conversion_cost": "0.48",
}
ALL = set(OutputName)
CLEANED = {OutputName.NO_NOISE, OutputName.NO_NOISE_WAV}
MP3 = {OutputName.NO_NOISE, OutputName.NOISE}
WAVS = {OutputName.NO_NOISE_WAV, OutputName.NOISE_WAV}


def without(*names: str, **changes: Any) -> dict[str, Any]:
    return {key: value for key, value in DOCUMENTED.items() if key not in names} | changes


def lookup(**conversion: Any) -> dict[str, Any]:
    """The documented `/byId` shape: the request's own `success`, the conversion nested."""
    return {"success": True, "conversion": {"task_id": "t-1", "conversion_id": "c-1", **conversion}}


STATUS_PATHS = {"conversion_path": URLS["no_noise"], "conversion_path_wav": URLS["no_noise_wav"]}

# (name, answer, verdict, outputs, surprised)
VARIANTS: list[tuple[str, dict[str, Any], Verdict, set[OutputName], bool]] = [
    ("documented", DOCUMENTED, Verdict.SUCCEEDED, ALL, False),
    ("extra fields", DOCUMENTED | {"extra": {"nested": [1]}, "audio_path": None}, Verdict.SUCCEEDED, ALL, False),
    ("success missing, all outputs", without("success"), Verdict.SUCCEEDED, ALL, False),
    ('success "true"', without(success="true"), Verdict.SUCCEEDED, ALL, False),
    ('success "TRUE " with spaces', without(success="TRUE "), Verdict.SUCCEEDED, ALL, False),
    ("success 1", without(success=1), Verdict.SUCCEEDED, ALL, False),
    ('conversion_type "DENOISING"', without(conversion_type="DENOISING"), Verdict.SUCCEEDED, ALL, False),
    ('conversion_type "de-noise"', without(conversion_type="de-noise"), Verdict.SUCCEEDED, ALL, False),
    ('conversion_type "Stems" (advisory)', without(conversion_type="Stems"), Verdict.SUCCEEDED, ALL, True),
    ("conversion_type missing", without("conversion_type"), Verdict.SUCCEEDED, ALL, False),
    ('cost ""', without(conversion_cost=""), Verdict.SUCCEEDED, ALL, False),
    ('cost "cheap"', without(conversion_cost="cheap"), Verdict.SUCCEEDED, ALL, True),
    ("cost true", without(conversion_cost=True), Verdict.SUCCEEDED, ALL, True),
    ("cost a list", without(conversion_cost=["0.48"]), Verdict.SUCCEEDED, ALL, True),
    ('duration "136.8" (text)', without(conversion_duration="136.8"), Verdict.SUCCEEDED, ALL, False),
    ("duration 1e200", without(conversion_duration=Decimal("1e200")), Verdict.SUCCEEDED, ALL, False),
    ("duration 41 digits", without(conversion_duration=Decimal("9" * 41)), Verdict.SUCCEEDED, ALL, False),
    ('duration "NaN"', without(conversion_duration="NaN"), Verdict.SUCCEEDED, ALL, True),
    ("duration -1", without(conversion_duration=-1), Verdict.SUCCEEDED, ALL, True),
    ("task_id a number", without(task_id=12345), Verdict.SUCCEEDED, ALL, False),
    ("success false", {"success": False, "task_id": "t-1", "message": "bad audio"}, Verdict.FAILED, set(), False),
    ('success "false"', without(success="false"), Verdict.FAILED, set(), False),
    (
        "status FAILED, no success",
        {"task_id": "t-1", "status": "FAILED", "status_msg": "x"},
        Verdict.FAILED,
        set(),
        False,
    ),
    ("status ERROR", {"task_id": "t-1", "status": "error"}, Verdict.FAILED, set(), False),
    (
        "progress: success, no URLs",
        {"success": True, "task_id": "t-1", "message": "queued"},
        Verdict.PENDING,
        set(),
        False,
    ),
    ("progress: IN_QUEUE", {"success": True, "task_id": "t-1", "status": "IN_QUEUE"}, Verdict.PENDING, set(), False),
    ("progress: PROCESSING", {"task_id": "t-1", "status": "PROCESSING"}, Verdict.PENDING, set(), False),
    ("IN_PROGRESS with all URLs", DOCUMENTED | {"status": "IN_PROGRESS"}, Verdict.PENDING, set(), False),
    (
        "PENDING, success as text",
        {"task_id": "t-1", "status": "PENDING", "success": "true"},
        Verdict.PENDING,
        set(),
        False,
    ),
    ("mp3 only, no status", without("no_noise_wav", "noise_wav"), Verdict.UNCLEAR, set(), True),
    ("wav only", without("no_noise", "noise"), Verdict.SUCCEEDED, WAVS, False),
    ("noise_wav missing", without("noise_wav"), Verdict.UNCLEAR, set(), True),
    ("noise_wav not a URL", without(noise_wav=7), Verdict.UNCLEAR, set(), True),
    (
        "mp3 only, status COMPLETED",
        without("no_noise_wav", "noise_wav", status="COMPLETED"),
        Verdict.SUCCEEDED,
        MP3,
        False,
    ),
    ("COMPLETED without any URL", {"task_id": "t-1", "status": "COMPLETED"}, Verdict.UNCLEAR, set(), True),
    ("unknown status, all URLs", DOCUMENTED | {"status": "ARCHIVED"}, Verdict.SUCCEEDED, ALL, True),
    (
        "status-only callback",
        {"task_id": "t-1", "status": "COMPLETED", **STATUS_PATHS},
        Verdict.SUCCEEDED,
        CLEANED,
        False,
    ),
    ("lookup, webhook names", lookup(status="COMPLETED", **URLS), Verdict.SUCCEEDED, ALL, False),
    ("lookup, conversion_path*", lookup(status="COMPLETED", **STATUS_PATHS), Verdict.SUCCEEDED, CLEANED, False),
    (
        "lookup, audio_url only",
        lookup(status="COMPLETED", audio_url=URLS["no_noise"]),
        Verdict.SUCCEEDED,
        {OutputName.NO_NOISE},
        False,
    ),
    (
        "lookup, mp3 only",
        lookup(status="COMPLETED", no_noise=URLS["no_noise"], noise=URLS["noise"]),
        Verdict.SUCCEEDED,
        MP3,
        False,
    ),
    ("lookup, in progress", lookup(status="IN_PROGRESS"), Verdict.PENDING, set(), False),
    ("lookup, failed", lookup(status="FAILED", status_msg="Audio too short"), Verdict.FAILED, set(), False),
    (
        "lookup, numbers as text",
        lookup(status="COMPLETED", conversion_cost="0.48", **URLS),
        Verdict.SUCCEEDED,
        ALL,
        False,
    ),
    (
        "lookup, its own success false ignored",
        {"success": False, "conversion": {"task_id": "t-1", "status": "PENDING"}},
        Verdict.PENDING,
        set(),
        False,
    ),
    ("flat status answer with URLs", {"task_id": "t-1", "status": "SUCCEEDED", **URLS}, Verdict.SUCCEEDED, ALL, False),
]


@pytest.mark.parametrize(
    ("answer", "verdict", "outputs", "surprised"), [v[1:] for v in VARIANTS], ids=[v[0] for v in VARIANTS]
)
def test_every_shape_gets_its_verdict(
    answer: dict[str, Any], verdict: Verdict, outputs: set[OutputName], surprised: bool
) -> None:
    outcome = read_outcome(answer, task_id=None if "task_id" in answer else "t-1")

    assert outcome.verdict is verdict
    assert set(outcome.outputs) == outputs
    assert bool(outcome.surprises) is surprised, outcome.surprises
    assert bool(outcome.raw) is surprised
    _storable(outcome)


def _storable(outcome: ConversionOutcome) -> None:
    """Every number the mapper hands on fits DynamoDB (boto3's serializer refuses what DynamoDB would)."""
    serializer = TypeSerializer()
    if outcome.conversion_duration is not None:
        serializer.serialize(outcome.conversion_duration)
    if outcome.conversion_cost is not None:
        serializer.serialize(Decimal(outcome.conversion_cost))


def test_documented_numbers_and_ids_are_kept() -> None:
    outcome = read_outcome(DOCUMENTED)
    assert outcome.task_id == "t-1"
    assert outcome.conversion_id == "c-1"
    assert outcome.conversion_cost == "0.48"
    assert outcome.conversion_duration == Decimal("136.8")


def test_unreadable_numbers_are_null_with_their_raw_text() -> None:
    outcome = read_outcome(without(conversion_cost="cheap", conversion_duration="NaN"))
    assert outcome.conversion_cost is None
    assert outcome.conversion_duration is None
    assert outcome.unreadable == {"conversion_cost": "cheap", "conversion_duration": "NaN"}


def test_out_of_range_numbers_are_clamped_into_what_dynamodb_stores() -> None:
    assert read_outcome(without(conversion_duration=Decimal("1e200"))).conversion_duration == Decimal(
        "9." + "9" * 37 + "E+125"
    )
    assert read_outcome(without(conversion_duration=Decimal("1e-200"))).conversion_duration == 0
    long = read_outcome(without(conversion_duration=Decimal("1" * 41))).conversion_duration
    assert long is not None
    assert len(long.as_tuple().digits) == 38


def test_failure_keeps_the_provider_message() -> None:
    outcome = read_outcome({"success": False, "conversion_type": "Denoise", "task_id": "t", "message": "bad audio"})
    assert outcome.verdict is Verdict.FAILED
    assert outcome.message == "bad audio"
    assert outcome.outputs == {}


def test_messages_and_kept_answers_are_scrubbed_of_credentials() -> None:
    presigned = "https://in.s3.amazonaws.com/a.wav?X-Amz-Signature=abc123&X-Amz-Credential=AKIA"
    webhook = "https://api.example/webhooks/0123456789abcdef0123456789abcdef/SeCrEtToKeN_-x"
    outcome = read_outcome(
        {
            "task_id": "t",
            "status": "ERROR",
            "message": f"cannot fetch {presigned} for {webhook}",
            "odd": 1,
            "success": "maybe",
        }
    )
    for text in (outcome.message, outcome.raw):
        assert "abc123" not in text
        assert "AKIA" not in text
        assert "SeCrEtToKeN" not in text
        assert "/webhooks/0123456789abcdef0123456789abcdef/" in text


@pytest.mark.parametrize(
    ("answer", "refusal"),
    [
        ({"success": True}, "task_id is missing"),
        ({"task_id": ""}, "task_id is missing"),
        ({"task_id": ["t"]}, "task_id is missing"),
        ({"task_id": "t" * 257}, "task_id is longer"),
        (without(noise_wav="https://x/" + "a" * 9000), "noise_wav is longer"),
    ],
)
def test_answers_that_cannot_be_tied_to_a_task_or_are_oversized_are_refused(
    answer: dict[str, Any], refusal: str
) -> None:
    with pytest.raises(InvalidCallback, match=refusal):
        read_outcome(answer)


# ---------------------------------------------------------------- the body, in every encoding a callback comes in


def event(body: str, is_base64: bool = False, content_type: str = "application/json") -> dict[str, Any]:
    return {"body": body, "isBase64Encoded": is_base64, "headers": {"content-type": content_type}}


def decode_body(body: str, is_base64: bool) -> dict[str, Any]:
    """The route's body reader on an HTTP API event carrying `body`."""
    return read_payload(event(body, is_base64))


def test_json_numbers_stay_exact() -> None:
    payload = decode_body(json.dumps(DOCUMENTED), False)
    assert payload["conversion_duration"] == Decimal("136.8")
    assert read_outcome(payload).verdict is Verdict.SUCCEEDED


def test_base64_body_is_decoded() -> None:
    body = base64.b64encode(json.dumps(DOCUMENTED).encode()).decode()
    assert read_outcome(decode_body(body, True)).task_id == "t-1"


def as_text(value: Any) -> str:
    """How a form carries a JSON value: `true`, `136.8`."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def test_a_form_encoded_callback_reads_like_the_json_one() -> None:
    form = urlencode({key: as_text(value) for key, value in DOCUMENTED.items()})
    body = base64.b64encode(form.encode()).decode()

    outcome = read_outcome(read_payload(event(body, True, "application/x-www-form-urlencoded; charset=utf-8")))

    assert outcome.verdict is Verdict.SUCCEEDED
    assert set(outcome.outputs) == ALL
    assert outcome.conversion_duration == Decimal("136.8")


def test_header_names_are_read_in_any_case() -> None:
    """API Gateway lower-cases them; an invoker that does not (a local emulator, a replay) gets the same reading."""
    form = urlencode({key: as_text(value) for key, value in DOCUMENTED.items()})
    data = {"body": form, "isBase64Encoded": False, "headers": {"Content-Type": "application/x-www-form-urlencoded"}}

    assert read_outcome(read_payload(data)).verdict is Verdict.SUCCEEDED


def test_a_multipart_callback_reads_like_the_json_one() -> None:
    boundary = "b0undary"
    parts = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{as_text(value)}\r\n'
        for key, value in DOCUMENTED.items()
    )
    file_part = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="task_id"; filename="x.bin"\r\n\r\nnot a field\r\n'
    )
    body = base64.b64encode(f"{parts}{file_part}--{boundary}--\r\n".encode()).decode()

    payload = read_payload(event(body, True, f"multipart/form-data; boundary={boundary}"))

    assert payload["task_id"] == "t-1"  # a file part never stands in for a field
    assert read_outcome(payload).verdict is Verdict.SUCCEEDED


def test_an_oversized_body_is_refused_before_it_is_read() -> None:
    with pytest.raises(OversizedCallback):
        decode_body(json.dumps(DOCUMENTED | {"padding": "x" * MAX_BODY_BYTES}), False)


@pytest.mark.parametrize("body", ["", "{", "[1]", "null", '"text"', "NaN"])
def test_bodies_that_are_not_objects(body: str) -> None:
    with pytest.raises(CallbackRefused):
        read_outcome(decode_body(body, False))


def test_invalid_base64() -> None:
    with pytest.raises(CallbackRefused):
        decode_body("%%%not-base64", True)


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x"])
def test_invalid_forms(content_type: str) -> None:
    with pytest.raises(CallbackRefused):
        read_payload(event(base64.b64encode(b"\xff\xfe not utf-8 &&").decode(), True, content_type))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.decimals() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@given(
    st.dictionaries(
        st.sampled_from([*DOCUMENTED, "status", "status_msg", "conversion", "conversion_path"]), json_values
    )
)
def test_any_value_in_any_field_maps_or_is_refused_cleanly(changes: dict[str, Any]) -> None:
    with contextlib.suppress(CallbackRefused):
        outcome = read_outcome(DOCUMENTED | changes)
        assert outcome.verdict in Verdict
        _storable(outcome)
        assert len(outcome.raw) <= 4096
