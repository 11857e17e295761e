"""Webhook path: verification, durable acceptance, streamed copy into S3, final state and event."""

from __future__ import annotations

import base64
from decimal import Decimal
from typing import Any

import pytest

from denoise_pipeline.domain.outputs import OutputName
from denoise_pipeline.domain.tokens import sign
from tests.conftest import SIGNING_SECRET, Stack
from tests.faults.harness import by_id
from tests.file_server import FileSpec, OutputFileServer
from tests.integration.pipeline import callback_payload, job, post_callback, run_queue, upload
from tests.provider_double import ProviderDouble

KEY = "uploads/My Song+(1) é.wav"
SIZES = {
    OutputName.NO_NOISE: 40_000,
    OutputName.NO_NOISE_WAV: 300_000,
    OutputName.NOISE: 40_001,
    OutputName.NOISE_WAV: 9 * 1024 * 1024 + 17,
}


def serve_outputs(files: OutputFileServer, **modes: str) -> dict[str, str]:
    return {
        name.value: files.add(f"/out/{name.value}", FileSpec(SIZES[name], modes.get(name.value, "ok"), seed=i))
        for i, name in enumerate(OutputName)
    }


def submitted(stack: Stack) -> tuple[str, str]:
    upload(stack, KEY, b"ID3" + bytes(4000))
    item = job(stack, KEY)
    assert item["status"] == "SUBMITTED"
    return item["job_id"], item["task_id"]


def test_valid_webhook_acks_before_copy_then_completes_with_four_objects(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer
) -> None:
    job_id, task_id = submitted(stack)
    urls = serve_outputs(files)

    answer = post_callback(job_id, callback_payload(task_id, urls))

    assert answer["statusCode"] == 202
    assert answer["json"] == {"job_id": job_id, "status": "COPYING"}
    assert files.hits == []  # answered before anything was fetched
    assert job(stack, KEY)["status"] == "COPYING"

    run_queue(stack, "CopyQueue")

    item = job(stack, KEY)
    assert item["status"] == "COMPLETED"
    assert item["conversion_cost"] == "0.48"
    assert float(item["conversion_duration"]) == pytest.approx(136.8)
    s3 = stack.client("s3")
    expected_keys = {
        "no_noise": "denoised/uploads/My Song+(1) é/no_noise.mp3",
        "no_noise_wav": "denoised/uploads/My Song+(1) é/no_noise.wav",
        "noise": "denoised/uploads/My Song+(1) é/noise.mp3",
        "noise_wav": "denoised/uploads/My Song+(1) é/noise.wav",
    }
    assert item["output_keys"] == expected_keys
    for i, name in enumerate(OutputName):
        obj = s3.get_object(Bucket=stack.output_bucket, Key=expected_keys[name.value])
        assert obj["Body"].read() == FileSpec(SIZES[name], seed=i).content()
        assert obj["ContentType"] == ("audio/wav" if name.is_wav else "audio/mpeg")
        assert obj["Metadata"]["job-id"] == job_id
        assert obj["Metadata"]["task-id"] == task_id
        # Not printable ASCII: kept compactly, as base64url of its UTF-8 (S3 metadata values are ASCII).
        assert base64.urlsafe_b64decode(obj["Metadata"]["source-key-b64"]).decode() == KEY
    (event,) = stack.published_events()
    assert event["source"] == "denoise.pipeline"
    assert event["detail-type"] == "Denoise Job Completed"
    assert event["detail"]["job_id"] == job_id
    assert event["detail"]["output"]["bucket"] == stack.output_bucket
    assert event["detail"]["output"]["keys"] == expected_keys
    assert event["detail"]["conversion_cost"] == "0.48"


def test_duplicate_webhook_while_copying_and_after_completion_changes_nothing(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer
) -> None:
    job_id, task_id = submitted(stack)
    payload = callback_payload(task_id, serve_outputs(files))
    assert post_callback(job_id, payload)["statusCode"] == 202
    copying = job(stack, KEY)

    again = post_callback(job_id, payload)
    assert again["statusCode"] == 200
    assert again["json"]["duplicate"] is True
    assert job(stack, KEY) == copying

    run_queue(stack, "CopyQueue")
    completed = job(stack, KEY)
    assert post_callback(job_id, payload)["statusCode"] == 200
    assert job(stack, KEY) == completed
    run_queue(stack, "CopyQueue")
    assert len(stack.published_events()) == 1


def test_failure_payload_marks_failed_with_the_provider_message(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer
) -> None:
    job_id, task_id = submitted(stack)
    payload = {"success": False, "conversion_type": "Denoise", "task_id": task_id, "message": "Audio too short"}

    answer = post_callback(job_id, payload)

    assert answer["statusCode"] == 200
    item = job(stack, KEY)
    assert item["status"] == "FAILED"
    assert item["error_code"] == "CONVERSION_FAILED"
    assert item["error_message"] == "Audio too short"
    (event,) = stack.published_events()
    assert event["detail-type"] == "Denoise Job Failed"
    assert files.hits == []


@pytest.mark.parametrize("lookup_says", ["COMPLETED", "FAILED"])
def test_success_without_both_wavs_is_confirmed_by_the_status_lookup(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer, lookup_says: str
) -> None:
    """Not a failure (it used to be): the callback is noted and the status lookup, off the request path, decides."""
    job_id, task_id = submitted(stack)
    urls = serve_outputs(files)
    del urls["noise_wav"]

    answer = post_callback(job_id, callback_payload(task_id, urls))

    assert answer["statusCode"] == 202
    assert answer["json"] == {"job_id": job_id, "status": "SUBMITTED", "confirming": True}
    item = job(stack, KEY)
    assert item["status"] == "SUBMITTED"
    assert item["last_surprise"]["where"] == "callback"
    assert files.hits == []

    provider.status_script.append(by_id(lookup_says, urls, status_msg="lookup verdict"))
    run_queue(stack, "AdmissionQueue")

    (lookup,) = [call for call in provider.calls if call.path.endswith("/byId")]
    assert lookup.query == {"conversionType": "DENOISING", "task_id": task_id}
    if lookup_says == "FAILED":
        assert job(stack, KEY)["status"] == "FAILED"
        assert job(stack, KEY)["error_message"] == "lookup verdict"
        return
    run_queue(stack, "CopyQueue")
    item = job(stack, KEY)
    assert item["status"] == "COMPLETED"
    assert set(item["output_keys"]) == {"no_noise", "no_noise_wav", "noise"}


def test_a_tolerated_callback_completes_and_keeps_what_it_could_not_read(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer
) -> None:
    job_id, task_id = submitted(stack)
    payload = callback_payload(task_id, serve_outputs(files), success="true", conversion_type="DENOISING")
    payload |= {"conversion_cost": ["0.48"], "conversion_duration": "136.8"}

    answer = post_callback(job_id, payload)
    run_queue(stack, "CopyQueue")

    assert answer["statusCode"] == 202
    item = job(stack, KEY)
    assert item["status"] == "COMPLETED"
    assert "conversion_cost" not in item
    assert item["conversion_cost_raw"] == "['0.48']"
    assert item["conversion_duration"] == Decimal("136.8")
    assert item["last_surprise"]["reasons"] == ["conversion_cost is not a number: ['0.48']"]


def test_progress_callbacks_are_noted_and_never_fail_the_job(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer
) -> None:
    job_id, task_id = submitted(stack)
    for progress in (
        {"success": True, "task_id": task_id, "status": "IN_QUEUE", "message": "queued"},
        {"success": "true", "task_id": task_id, "message": "de_noising in progress"},
    ):
        answer = post_callback(job_id, progress)
        assert answer["statusCode"] == 200
        assert answer["json"] == {"job_id": job_id, "status": "SUBMITTED", "progress": True}
    item = job(stack, KEY)
    assert item["status"] == "SUBMITTED"
    assert item["provider_message"] == "de_noising in progress"
    assert item["last_callback_at"]

    assert post_callback(job_id, callback_payload(task_id, serve_outputs(files)))["statusCode"] == 202
    run_queue(stack, "CopyQueue")
    assert job(stack, KEY)["status"] == "COMPLETED"


def test_missing_mp3_variant_is_tolerated(stack: Stack, provider: ProviderDouble, files: OutputFileServer) -> None:
    job_id, task_id = submitted(stack)
    urls = serve_outputs(files)
    del urls["no_noise"]

    post_callback(job_id, callback_payload(task_id, urls))
    run_queue(stack, "CopyQueue")

    item = job(stack, KEY)
    assert item["status"] == "COMPLETED"
    assert set(item["output_keys"]) == {"no_noise_wav", "noise", "noise_wav"}


def _assert_untouched(stack: Stack, before: dict[str, Any], files: OutputFileServer) -> None:
    assert job(stack, KEY) == before
    assert files.hits == []
    assert stack.drain("CopyQueue") == []
    assert stack.published_events() == []


class BadCallback:
    """One way a callback goes wrong: what it changes in the job id, the payload and the request."""

    def __init__(self, target: str | None = None, kwargs: dict[str, Any] | None = None, **payload: Any) -> None:
        self.target, self.kwargs, self.payload = target, kwargs or {}, payload


BAD_CALLBACKS = {
    "forged token": (BadCallback(kwargs={"token": "A" * 43}), 404),
    "token of another job": (BadCallback(kwargs={"token": sign(SIGNING_SECRET, "0" * 32)}), 404),
    "unknown job": (BadCallback(target="f" * 32), 404),
    "not a job id": (BadCallback(target="../../etc"), 404),
    "a 64 KB job id": (BadCallback(target="a" * 65536), 404),
    "wrong task_id": (BadCallback(task_id="someone-elses-task"), 409),
    "wrong conversion_id": (BadCallback(conversion_id="someone-elses-conversion"), 409),
    "malformed json": (BadCallback(kwargs={"raw": b'{"success": true, "task_id": '}), 400),
    "json array": (BadCallback(kwargs={"raw": b"[1, 2, 3]"}), 400),
    "no task_id": (BadCallback(task_id=None), 422),
    "task_id too long": (BadCallback(task_id="t" * 300), 422),
    "output URL too long": (BadCallback(noise="https://lalals.s3.amazonaws.com/" + "a" * 9000), 422),
    "body too large": (BadCallback(padding="x" * 300_000), 413),
    "form body not a form": (
        BadCallback(kwargs={"raw": b"\xff\xfe" * 10, "content_type": "application/x-www-form-urlencoded"}),
        400,
    ),
}


@pytest.mark.parametrize(("bad", "expected_status"), BAD_CALLBACKS.values(), ids=BAD_CALLBACKS)
def test_bad_callbacks_change_nothing(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer, bad: BadCallback, expected_status: int
) -> None:
    job_id, task_id = submitted(stack)
    payload = callback_payload(task_id, serve_outputs(files)) | bad.payload
    payload = {key: value for key, value in payload.items() if value is not None}
    before = job(stack, KEY)

    answer = post_callback(bad.target or job_id, payload, **bad.kwargs)

    assert answer["statusCode"] == expected_status
    assert answer["json"]["error"]
    _assert_untouched(stack, before, files)


@pytest.mark.parametrize(
    "url",
    [
        "http://lalals.s3.amazonaws.com/out/x.wav",
        "https://127.0.0.1/out/x.wav",
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.7/out/x.wav",
        "https://192.168.1.20/out/x.wav",
        "https://evil.example.com/out/x.wav",
        "https://lalals.s3.amazonaws.com:8443/out/x.wav",
        "ftp://lalals.s3.amazonaws.com/out/x.wav",
        "https://user:pw@lalals.s3.amazonaws.com/out/x.wav",
    ],
)
def test_ssrf_urls_are_refused_before_anything_changes(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer, url: str
) -> None:
    job_id, task_id = submitted(stack)
    urls = serve_outputs(files)
    urls["noise_wav"] = url
    before = job(stack, KEY)

    answer = post_callback(job_id, callback_payload(task_id, urls))

    assert answer["statusCode"] == 422
    assert "refused" in answer["json"]["message"]
    _assert_untouched(stack, before, files)


def test_redirect_off_the_allowlist_is_not_followed(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_COPY_ATTEMPTS", "1")
    job_id, task_id = submitted(stack)
    urls = serve_outputs(files)
    urls["noise_wav"] = files.add("/out/redirect", FileSpec(0, "redirect", location="https://evil.example.com/steal"))

    assert post_callback(job_id, callback_payload(task_id, urls))["statusCode"] == 202
    run_queue(stack, "CopyQueue")

    item = job(stack, KEY)
    assert item["status"] == "FAILED"
    assert item["error_code"] == "OUTPUT_REFUSED"
    assert "evil.example.com" in item["error_message"]


def test_connection_dropped_at_half_leaves_no_partial_object_and_is_retried(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer
) -> None:
    job_id, task_id = submitted(stack)
    urls = serve_outputs(files, noise_wav="cut")
    post_callback(job_id, callback_payload(task_id, urls))

    answers = run_queue(stack, "CopyQueue")

    assert answers == [{"batchItemFailures": []}]  # recorded on the job and queued again by the workflow
    item = job(stack, KEY)
    assert item["status"] == "COPYING"
    assert item["copy_attempts"] == 1
    listed = stack.client("s3").list_objects_v2(Bucket=stack.output_bucket).get("Contents", [])
    assert not any(obj["Key"].endswith("/noise.wav") for obj in listed)
    uploads = stack.client("s3").list_multipart_uploads(Bucket=stack.output_bucket).get("Uploads", [])
    assert uploads == []

    files.files["/out/noise_wav"].mode = "ok"  # the provider's file is whole again
    run_queue(stack, "CopyQueue")
    assert job(stack, KEY)["status"] == "COMPLETED"


def test_copy_failing_every_attempt_ends_failed_with_the_reason(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_COPY_ATTEMPTS", "3")
    job_id, task_id = submitted(stack)
    post_callback(job_id, callback_payload(task_id, serve_outputs(files, noise="404")))

    run_queue(stack, "CopyQueue", rounds=5)

    item = job(stack, KEY)
    assert item["status"] == "FAILED"
    assert item["error_code"] == "COPY_FAILED"
    assert "after 3 attempts" in item["error_message"]
    assert "404" in item["error_message"]
    assert stack.published_events()[0]["detail-type"] == "Denoise Job Failed"
    assert stack.drain("CopyQueue") == []


def test_output_over_the_byte_cap_fails_without_fetching_the_body(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COPY_MAX_BYTES", str(1024 * 1024))
    job_id, task_id = submitted(stack)
    post_callback(job_id, callback_payload(task_id, serve_outputs(files)))

    run_queue(stack, "CopyQueue")

    item = job(stack, KEY)
    assert item["status"] == "FAILED"
    assert item["error_code"] == "OUTPUT_TOO_LARGE"
