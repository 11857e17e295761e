"""Webhook and copy path under faults: duplicated callbacks, racing writers, broken or oversized outputs.

A callback is answered from the durable record (SUBMITTED → COPYING); the copy runs from the copy queue. Whoever
loses a race gets a clean answer (200 duplicate or 409), never an exception, and exactly one event is published.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest

from denoise_pipeline import wiring
from denoise_pipeline.adapters.event_bus import EventPublishError
from denoise_pipeline.adapters.secrets import SecretUnavailable
from denoise_pipeline.domain.job import Job
from denoise_pipeline.domain.outcome import read_outcome
from denoise_pipeline.workflows.copy import Attempt, CopyReport, copy_outputs
from tests.conftest import Stack
from tests.faults.harness import (
    assert_settled,
    by_id,
    deliver,
    job_by_key,
    output_keys,
    put_object,
    race,
    serve_outputs,
    slot_holders,
)
from tests.file_server import FileSpec, OutputFileServer
from tests.integration.pipeline import callback_payload, post_callback, run_queue, run_reconciler
from tests.provider_double import ProviderDouble

KEY = "uploads/race.wav"


def submitted(stack: Stack) -> dict[str, Any]:
    deliver(put_object(stack, KEY))
    item = job_by_key(stack, KEY)
    assert item["status"] == "SUBMITTED"
    return item


def event_types(stack: Stack) -> list[str]:
    return [event["detail-type"] for event in stack.published_events()]


# ---------------------------------------------------------------- 4. the same webhook five times at once


def test_webhook_duplicated_five_times_concurrently_completes_once(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer
) -> None:
    item = submitted(stack)
    payload = callback_payload(item["task_id"], serve_outputs(files))

    answers = race(5, lambda _: post_callback(item["job_id"], payload))

    assert not [answer for answer in answers if isinstance(answer, BaseException)]
    codes = Counter(answer["statusCode"] for answer in answers if isinstance(answer, dict))
    assert codes == {202: 1, 200: 4}
    assert all(a["json"]["duplicate"] for a in answers if isinstance(a, dict) and a["statusCode"] == 200)
    copying = job_by_key(stack, KEY)
    assert copying["status"] == "COPYING"

    processed = run_queue(stack, "CopyQueue", rounds=5)

    assert len(processed) == 1  # one copy message for five callbacks
    assert job_by_key(stack, KEY)["status"] == "COMPLETED"
    late = race(5, lambda _: post_callback(item["job_id"], payload))
    assert {a["statusCode"] for a in late if isinstance(a, dict)} == {200}
    done = job_by_key(stack, KEY)
    assert done["status"] == "COMPLETED"
    assert "event_pending" not in done  # the reconciler published it and cleared the mark
    assert event_types(stack) == ["Denoise Job Completed"]
    assert_settled(stack)


# ---------------------------------------------------------------- 6. two writers, one transition


def test_two_writers_racing_the_copying_transition_have_one_winner(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer
) -> None:
    item = submitted(stack)
    payload = callback_payload(item["task_id"], serve_outputs(files))
    outcome = read_outcome(json.loads(json.dumps(payload), parse_float=Decimal))
    store = wiring.callback_deps().recorder.store

    results = race(2, lambda _: store.mark_copying(item["job_id"], outcome))

    assert sorted(type(result).__name__ for result in results) == ["NoneType", "TransitionRejected"]
    assert stack.job_items()[0]["status"] == "COPYING"


def test_reconciler_and_webhook_completing_the_same_job_at_once_publish_one_event(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer
) -> None:
    item = submitted(stack)
    urls = serve_outputs(files)
    provider.default_status = by_id("COMPLETED", urls)
    time.sleep(1.1)  # stale for the reconciler

    def act(index: int) -> Any:
        if index == 0:
            return post_callback(item["job_id"], callback_payload(item["task_id"], urls))
        return run_reconciler()

    webhook_answer, report = race(2, act)

    assert isinstance(webhook_answer, dict), webhook_answer
    assert isinstance(report, dict), report
    assert webhook_answer["statusCode"] in (200, 202)
    assert job_by_key(stack, KEY)["status"] == "COPYING"
    run_queue(stack, "CopyQueue", rounds=5)
    assert job_by_key(stack, KEY)["status"] == "COMPLETED"
    assert event_types(stack) == ["Denoise Job Completed"]
    assert_settled(stack)


def test_success_and_failure_callbacks_racing_leave_one_final_state(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer
) -> None:
    item = submitted(stack)
    success = callback_payload(item["task_id"], serve_outputs(files))
    failure = {"success": False, "conversion_type": "Denoise", "task_id": item["task_id"], "message": "boom"}

    answers = race(2, lambda i: post_callback(item["job_id"], success if i == 0 else failure))

    assert all(isinstance(answer, dict) for answer in answers), answers
    codes = sorted(answer["statusCode"] for answer in answers if isinstance(answer, dict))
    # The winner is answered 200 (failure recorded) or 202 (copy queued); the contradicting loser changes nothing
    # and is answered either as a duplicate of the final state (200) or as a conflict (409), never with an error.
    assert codes[0] == 200 or codes == [202, 409]
    assert set(codes) <= {200, 202, 409}
    run_queue(stack, "CopyQueue", rounds=3)
    assert job_by_key(stack, KEY)["status"] in ("COMPLETED", "FAILED")
    assert len(event_types(stack)) == 1
    assert_settled(stack)


def test_two_copy_workers_on_the_same_job_complete_it_once(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer
) -> None:
    item = submitted(stack)
    post_callback(item["job_id"], callback_payload(item["task_id"], serve_outputs(files)))
    stack.drain("CopyQueue")
    deps = wiring.copy_deps()

    results = race(2, lambda _: copy_outputs(item["job_id"], Attempt(uuid.uuid4().hex, time.monotonic() + 30), deps))

    assert not [result for result in results if isinstance(result, BaseException)], results
    reports = [result for result in results if isinstance(result, CopyReport)]
    assert len(reports) == 1
    assert reports[0].job.status.value == "COMPLETED"
    assert event_types(stack) == ["Denoise Job Completed"]
    assert len(stack.drain("AdmissionQueue")) == 1  # the slot was freed once: one wake-up
    assert slot_holders(stack) == set()
    assert_settled(stack)


# ---------------------------------------------------------------- 5. broken outputs


def big_outputs(files: OutputFileServer, noise_wav: FileSpec) -> dict[str, str]:
    """Small mp3/wav outputs plus a noise_wav chosen by the test, copied last (after the others were written)."""
    urls = serve_outputs(files)
    urls["noise_wav"] = files.add("/out/big_noise_wav", noise_wav)
    return urls


def test_download_cut_at_half_is_retried_then_failed_leaving_no_partial_output(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer
) -> None:
    item = submitted(stack)
    # 20 MiB cut after 10 MiB: past the 8 MiB multipart threshold, so a part is uploaded before the cut.
    urls = big_outputs(files, FileSpec(20 * 1024 * 1024, "cut"))
    post_callback(item["job_id"], callback_payload(item["task_id"], urls))

    answers = run_queue(stack, "CopyQueue", rounds=5)

    assert len(answers) == 3  # MAX_COPY_ATTEMPTS: two redeliveries, then the final verdict
    # Attempts are counted on the job: a failed one is queued again by the workflow, never handed back to SQS.
    assert [a["batchItemFailures"] for a in answers] == [[], [], []]
    failed = job_by_key(stack, KEY)
    assert failed["status"] == "FAILED"
    assert failed["error_code"] == "COPY_FAILED"
    assert "after 3 attempts" in failed["error_message"]
    assert "download" in failed["error_message"]
    assert failed["copy_attempts"] == 3
    assert files.hits.count("/out/big_noise_wav") == 3
    assert event_types(stack) == ["Denoise Job Failed"]
    assert stack.drain("CopyQueue") == []
    assert stack.drain("CopyDeadLetterQueue") == []
    assert_settled(stack)  # the three outputs copied before the cut are not left behind


def test_output_404_is_retried_and_a_recovered_url_completes(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer
) -> None:
    item = submitted(stack)
    post_callback(item["job_id"], callback_payload(item["task_id"], serve_outputs(files, noise="404")))

    first = run_queue(stack, "CopyQueue")
    assert first == [{"batchItemFailures": []}]  # recorded on the job and queued again, not handed back to SQS
    assert job_by_key(stack, KEY)["status"] == "COPYING"
    assert "404" in job_by_key(stack, KEY)["last_copy_error"]

    files.files["/out/noise"].mode = "ok"
    run_queue(stack, "CopyQueue")

    assert job_by_key(stack, KEY)["status"] == "COMPLETED"
    assert event_types(stack) == ["Denoise Job Completed"]
    assert_settled(stack)


def test_output_404_on_every_attempt_fails_with_the_reason(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer
) -> None:
    item = submitted(stack)
    post_callback(item["job_id"], callback_payload(item["task_id"], serve_outputs(files, noise="404")))

    answers = run_queue(stack, "CopyQueue", rounds=5)

    assert len(answers) == 3
    failed = job_by_key(stack, KEY)
    assert failed["status"] == "FAILED"
    assert failed["error_code"] == "COPY_FAILED"
    assert "HTTP 404" in failed["error_message"]
    assert event_types(stack) == ["Denoise Job Failed"]
    assert_settled(stack)


def test_output_over_the_cap_fails_at_once_without_retry(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Retrying cannot make a file smaller: OUTPUT_TOO_LARGE is final on the first attempt (current design)."""
    monkeypatch.setenv("COPY_MAX_BYTES", str(1024 * 1024))
    item = submitted(stack)
    urls = big_outputs(files, FileSpec(2 * 1024 * 1024))
    post_callback(item["job_id"], callback_payload(item["task_id"], urls))

    answers = run_queue(stack, "CopyQueue", rounds=5)

    assert len(answers) == 1
    assert answers[0]["batchItemFailures"] == []
    failed = job_by_key(stack, KEY)
    assert failed["status"] == "FAILED"
    assert failed["error_code"] == "OUTPUT_TOO_LARGE"
    assert "1048576-byte cap" in failed["error_message"]
    assert failed["copy_attempts"] == 1  # the one attempt, counted; no retry
    assert event_types(stack) == ["Denoise Job Failed"]
    assert_settled(stack)


def test_failed_copy_keeps_the_outputs_of_another_job_for_the_same_key(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer
) -> None:
    """Output keys come from the input key, so a re-upload writes to the same keys: cleaning up after a failed
    copy removes only what that job wrote, and an earlier completed job's outputs stay visible."""
    first = submitted(stack)
    post_callback(first["job_id"], callback_payload(first["task_id"], serve_outputs(files, "/v1")))
    run_queue(stack, "CopyQueue")
    completed = job_by_key(stack, KEY)
    assert completed["status"] == "COMPLETED"
    before = {key: _body(stack, key) for key in output_keys(stack)}

    deliver(put_object(stack, KEY, b"RIFF" + bytes(9000)))  # a changed re-upload: a new job, same output keys
    (second,) = [i for i in stack.job_items() if i["job_id"] != first["job_id"]]
    post_callback(
        second["job_id"], callback_payload(second["task_id"], serve_outputs(files, "/v2", seed=100, noise="404"))
    )
    run_queue(stack, "CopyQueue", rounds=5)

    statuses = {i["job_id"]: i["status"] for i in stack.job_items()}
    assert statuses == {first["job_id"]: "COMPLETED", second["job_id"]: "FAILED"}
    assert {key: _body(stack, key) for key in output_keys(stack)} == before
    assert_settled(stack)


def _body(stack: Stack, key: str) -> bytes:
    body: bytes = stack.client("s3").get_object(Bucket=stack.output_bucket, Key=key)["Body"].read()
    return body


def test_lost_copy_message_is_requeued_by_the_reconciler(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer
) -> None:
    item = submitted(stack)
    post_callback(item["job_id"], callback_payload(item["task_id"], serve_outputs(files)))
    assert len(stack.drain("CopyQueue")) == 1  # the copy message is lost (e.g. purged)
    time.sleep(1.1)

    assert run_reconciler()["copies_requeued"] == 1
    run_queue(stack, "CopyQueue")

    assert job_by_key(stack, KEY)["status"] == "COMPLETED"
    assert event_types(stack) == ["Denoise Job Completed"]
    assert_settled(stack)


def test_signing_secret_unavailable_at_cold_start_refuses_the_callback_without_a_state_change(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer
) -> None:
    """The webhook function cannot verify a token without its secret: the invocation fails (API Gateway answers
    500, so a retrying sender tries again), the error names the secret, and nothing is recorded or fetched."""
    item = submitted(stack)
    payload = callback_payload(item["task_id"], serve_outputs(files))
    secrets = stack.client("secretsmanager")
    secret_id = stack.resources.ref("WebhookSigningSecret")
    secrets.delete_secret(SecretId=secret_id, RecoveryWindowInDays=7)
    wiring.reset()  # a new container: nothing cached from the submit that read the same secret

    with pytest.raises(SecretUnavailable, match=secret_id):
        post_callback(item["job_id"], payload)

    assert job_by_key(stack, KEY) == item
    assert files.hits == []
    secrets.restore_secret(SecretId=secret_id)
    assert post_callback(item["job_id"], payload)["statusCode"] == 202
    run_queue(stack, "CopyQueue")
    assert job_by_key(stack, KEY)["status"] == "COMPLETED"
    assert_settled(stack)


def test_event_bus_failure_after_completion_does_not_lose_the_event(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    item = submitted(stack)
    post_callback(item["job_id"], callback_payload(item["task_id"], serve_outputs(files)))
    publisher = wiring.copy_deps().lifecycle.events
    real = publisher.job_finished
    failures = [EventPublishError("EventBridge refused the event")]

    def flaky(job: Job) -> None:
        if failures:
            raise failures.pop()
        real(job)

    monkeypatch.setattr(publisher, "job_finished", flaky)

    run_queue(stack, "CopyQueue", rounds=3)
    time.sleep(1.1)
    run_reconciler()
    run_queue(stack, "CopyQueue", rounds=3)

    assert job_by_key(stack, KEY)["status"] == "COMPLETED"
    assert event_types(stack) == ["Denoise Job Completed"]
