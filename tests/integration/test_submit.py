"""Submit path against moto (S3, DynamoDB, Secrets Manager, EventBridge) and a provider on a real local socket."""

from __future__ import annotations

import copy
import re
import threading
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import requests

from denoise_pipeline.domain.source import SourceObject
from denoise_pipeline.domain.tokens import sign
from denoise_pipeline.handlers import submit
from tests.conftest import API_KEY, SIGNING_SECRET, WEBHOOK_BASE_URL, FakeContext, Stack, load_event
from tests.provider_double import ProviderDouble, status

SAMPLE_KEY = "uploads/My Song+(1) é.wav"
AUDIO = b"RIFF" + bytes(range(256)) * 64


def put_sample(stack: Stack, key: str = SAMPLE_KEY, body: bytes = AUDIO) -> None:
    stack.client("s3").put_object(Bucket=stack.input_bucket, Key=key, Body=body)


def sample_job_id(event: dict[str, Any]) -> str:
    obj = event["Records"][0]["s3"]["object"]
    return SourceObject(event["Records"][0]["s3"]["bucket"]["name"], SAMPLE_KEY, obj["size"], obj["eTag"]).job_id


def test_event_delivered_three_times_once_concurrently_submits_once(stack: Stack, provider: ProviderDouble) -> None:
    put_sample(stack)
    event = load_event("s3-put.json")

    submit.handler(copy.deepcopy(event), FakeContext())
    threads = [threading.Thread(target=submit.handler, args=(copy.deepcopy(event), FakeContext())) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(provider.submissions) == 1
    call = provider.submissions[0]
    assert call.headers["Authorization"] == API_KEY
    assert call.headers["Content-Type"].startswith("multipart/form-data")
    assert set(call.form) == {"audio_url", "webhook_url"}
    fetched = requests.get(call.form["audio_url"], timeout=5)
    assert fetched.status_code == 200
    assert fetched.content == AUDIO
    assert unquote(urlsplit(call.form["audio_url"]).path).endswith(SAMPLE_KEY)
    job_id = sample_job_id(event)
    assert call.form["webhook_url"] == f"{WEBHOOK_BASE_URL}/webhooks/{job_id}/{sign(SIGNING_SECRET, job_id)}"
    assert re.fullmatch(r".*/webhooks/[0-9a-f]{32}/[A-Za-z0-9_-]{43}", call.form["webhook_url"])

    items = stack.job_items()
    assert len(items) == 1
    item = items[0]
    assert item["job_id"] == job_id
    assert item["status"] == "SUBMITTED"
    assert item["source_key"] == SAMPLE_KEY
    assert item["source_bucket"] == stack.input_bucket
    assert item["source_size"] == 524_288
    assert item["task_id"]
    assert float(item["credit_estimate"]) == pytest.approx(0.48)
    assert item["eta"] == 71
    assert {"received_at", "submitted_at", "created_at"} <= set(item)


def test_every_record_is_handled_and_non_audio_is_skipped(stack: Stack, provider: ProviderDouble) -> None:
    event = load_event("s3-put-multiple.json")
    for record in event["Records"]:
        key = unquote(record["s3"]["object"]["key"].replace("+", " "))
        put_sample(stack, key)

    result = submit.handler(event, FakeContext())

    outcomes = {entry["key"]: entry["outcome"] for entry in result["results"]}
    assert outcomes == {
        "uploads/interview take 2.mp3": "SUBMITTED",
        "uploads/LOUD ROOM.WAV": "SUBMITTED",
        "uploads/notes.txt": "SKIPPED",
        "uploads/empty.flac": "SKIPPED",
        "uploads/folder/": "SKIPPED",
    }
    assert len(provider.submissions) == 2
    assert sorted(item["source_key"] for item in stack.job_items()) == [
        "uploads/LOUD ROOM.WAV",
        "uploads/interview take 2.mp3",
    ]


def test_provider_422_fails_the_job_with_its_message_and_publishes_it(stack: Stack, provider: ProviderDouble) -> None:
    put_sample(stack)
    provider.then(status(422, {"detail": "audio_url is not a supported audio file"}))

    submit.handler(load_event("s3-put.json"), FakeContext())

    (item,) = stack.job_items()
    assert item["status"] == "FAILED"
    assert item["error_code"] == "PROVIDER_REJECTED"
    assert "audio_url is not a supported audio file" in item["error_message"]
    (event,) = stack.published_events()
    assert event["detail-type"] == "Denoise Job Failed"
    assert event["detail"]["job_id"] == item["job_id"]
    assert event["detail"]["error"]["code"] == "PROVIDER_REJECTED"


def test_provider_503_raises_and_a_later_retry_succeeds_without_a_second_job(
    stack: Stack, provider: ProviderDouble
) -> None:
    put_sample(stack)
    provider.then(status(503), status(503))  # the first attempt and its one quick retry

    with pytest.raises(submit.SubmitRetryLater, match="503"):
        submit.handler(load_event("s3-put.json"), FakeContext())
    (item,) = stack.job_items()
    assert item["status"] == "RECEIVED"
    assert "lease_until" not in item

    submit.handler(load_event("s3-put.json"), FakeContext())

    (item,) = stack.job_items()
    assert item["status"] == "SUBMITTED"
    assert len(provider.submissions) == 3
    assert item["submit_attempts"] == 2


@pytest.mark.parametrize(
    ("code", "error_code"),
    [(400, "PROVIDER_REJECTED"), (401, "PROVIDER_AUTH"), (403, "PROVIDER_AUTH"), (402, "INSUFFICIENT_CREDITS")],
)
def test_permanent_provider_errors_fail_without_retry(
    stack: Stack, provider: ProviderDouble, code: int, error_code: str
) -> None:
    put_sample(stack)
    provider.then(status(code, {"error": f"provider says {code}"}))

    submit.handler(load_event("s3-put.json"), FakeContext())

    (item,) = stack.job_items()
    assert item["status"] == "FAILED"
    assert item["error_code"] == error_code
    assert f"provider says {code}" in item["error_message"]
    assert len(provider.submissions) == 1


def test_changed_reupload_is_a_new_job(stack: Stack, provider: ProviderDouble) -> None:
    put_sample(stack)
    event = load_event("s3-put.json")
    submit.handler(copy.deepcopy(event), FakeContext())
    event["Records"][0]["s3"]["object"]["eTag"] = "ffffffffffffffffffffffffffffffff"
    submit.handler(event, FakeContext())

    assert len(provider.submissions) == 2
    assert len(stack.job_items()) == 2


def test_audio_file_mode_streams_the_object(stack: Stack, provider: ProviderDouble, monkeypatch: Any) -> None:
    monkeypatch.setenv("SUBMIT_MODE", "audio_file")
    put_sample(stack)
    event = load_event("s3-put.json")
    event["Records"][0]["s3"]["object"]["size"] = len(AUDIO)

    submit.handler(event, FakeContext())

    (call,) = provider.submissions
    assert call.files["audio_file"] == AUDIO
    assert set(call.form) == {"webhook_url"}
    assert stack.job_items()[0]["status"] == "SUBMITTED"


def test_missing_setting_fails_loudly_at_start(stack: Stack, monkeypatch: Any) -> None:
    monkeypatch.delenv("JOBS_TABLE_NAME")
    from denoise_pipeline import wiring
    from denoise_pipeline.settings import SettingsError

    wiring.reset()
    with pytest.raises(SettingsError, match="JOBS_TABLE_NAME is required"):
        submit.handler(load_event("s3-put.json"), FakeContext())


def test_eventbridge_object_created_event_submits_the_object_whatever_the_suffix_case(
    stack: Stack, provider: ProviderDouble
) -> None:
    event = load_event("eventbridge-object-created.json")  # what the upload rule delivers: key "uploads/Take 2.Mp3"
    obj = event["detail"]["object"]
    put = stack.client("s3").put_object(Bucket=stack.input_bucket, Key=obj["key"], Body=AUDIO)
    event["detail"]["bucket"]["name"] = stack.input_bucket
    obj["version-id"], obj["etag"] = put["VersionId"], put["ETag"].strip('"')

    submit.handler(event, FakeContext())

    assert len(provider.submissions) == 1
    (item,) = stack.job_items()
    assert item["source_key"] == "uploads/Take 2.Mp3"
    assert item["status"] == "SUBMITTED"
    assert (
        item["job_id"]
        == SourceObject(stack.input_bucket, obj["key"], obj["size"], obj["etag"], put["VersionId"]).job_id
    )
