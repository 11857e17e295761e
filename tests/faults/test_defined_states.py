"""Every failure ends in a defined state: the eight ways a job used to hang, or the pipeline to stall, with nothing
recorded. S3's real limits are enforced on top of moto (tests/s3_limits.py, session-wide in tests/conftest.py)."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import io
import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from denoise_pipeline import wiring
from denoise_pipeline.adapters.event_bus import EventPublishError
from denoise_pipeline.adapters.output_copier import CopyDeadlineExceeded
from denoise_pipeline.domain.outputs import OutputName
from denoise_pipeline.domain.tokens import sign
from denoise_pipeline.handlers import copy_worker
from denoise_pipeline.workflows.copy import OutputTransfer, stage_and_promote
from local.lambdas.events import s3_put_record
from tests.conftest import SIGNING_SECRET, STACK_NAME, FakeContext, Stack
from tests.faults.harness import (
    assert_settled,
    by_id,
    deliver,
    job_by_key,
    put_object,
    serve_outputs,
    slot_holders,
    submitted,
    wait_until_stale,
)
from tests.file_server import FileSpec, OutputFileServer
from tests.integration.pipeline import callback_payload, post_callback, run_queue, run_reconciler
from tests.provider_double import ProviderDouble

KEY = "uploads/defined.wav"
MAX_KEY_BYTES = 1024  # S3's limits, written here independently of the code under test
MAX_METADATA_BYTES = 2048


def metadata_bytes(metadata: dict[str, str]) -> int:
    return sum(len(name.encode()) + len(value.encode()) for name, value in metadata.items())


def copying(stack: Stack, files: OutputFileServer, key: str = KEY, **modes: str) -> dict[str, Any]:
    item = submitted(stack, key)
    assert (
        post_callback(item["job_id"], callback_payload(item["task_id"], serve_outputs(files, **modes)))["statusCode"]
        == 202
    )
    return item


# ---------------------------------------------------------------- 1. S3's own refusals are counted, or avoided


def test_a_1012_byte_input_key_completes_with_outputs_under_s3s_key_limit(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer
) -> None:
    """Used to fail with KeyTooLongError (a ClientError, never counted) and stay COPYING forever."""
    key = "uploads/" + "k" * 1000 + ".wav"
    assert len(key.encode()) == 1012  # its outputs' keys would be 1,030 bytes
    copying(stack, files, key)

    run_queue(stack, "CopyQueue")

    item = job_by_key(stack, key)
    assert item["status"] == "COMPLETED"
    assert item["source_key"] == key
    assert all(len(output.encode()) <= MAX_KEY_BYTES for output in item["output_keys"].values())
    assert len(set(item["output_keys"].values())) == 4
    assert_settled(stack)


def test_a_cjk_input_key_keeps_its_metadata_under_s3s_limit(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer
) -> None:
    """Used to quote ~220 CJK characters into 1,980 bytes of metadata: MetadataTooLarge, job stuck COPYING."""
    key = "uploads/" + "音" * 220 + ".wav"
    copying(stack, files, key)

    run_queue(stack, "CopyQueue")

    item = job_by_key(stack, key)
    assert item["status"] == "COMPLETED"
    head = stack.client("s3").head_object(Bucket=stack.output_bucket, Key=item["output_keys"]["noise_wav"])
    assert metadata_bytes(head["Metadata"]) <= MAX_METADATA_BYTES
    assert base64.urlsafe_b64decode(head["Metadata"]["source-key-b64"]).decode() == key


def test_any_exception_in_a_copy_is_counted_and_ends_failed_with_it(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    item = copying(stack, files)
    copier = wiring.copy_deps().copier

    def broken(*args: Any, **kwargs: Any) -> int:
        raise RuntimeError("a bug in the copy path")

    monkeypatch.setattr(copier, "copy", broken)
    run_queue(stack, "CopyQueue", rounds=5)

    failed = job_by_key(stack, KEY)
    assert failed["status"] == "FAILED"
    assert failed["copy_attempts"] == 3
    assert "RuntimeError: a bug in the copy path" in failed["error_message"]
    assert item["job_id"] == failed["job_id"]
    assert_settled(stack)


# ---------------------------------------------------------------- 2. MaxCopyAttempts holds across re-queues


def test_requeues_never_buy_more_attempts_than_max_copy_attempts(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer
) -> None:
    """Each re-queue used to start again at receive count 1 (seven attempts seen with a limit of three)."""
    copying(stack, files, noise="404")
    for _ in range(4):
        run_queue(stack, "CopyQueue")
        wait_until_stale()
        run_reconciler()  # re-queues the copy whenever no attempt is running

    item = job_by_key(stack, KEY)
    assert item["status"] == "FAILED"
    assert item["copy_attempts"] == 3
    assert files.hits.count("/out/noise") == 3
    assert_settled(stack)


def test_the_reconciler_leaves_a_failed_copy_alone_until_its_retry_is_due(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    deps = dataclasses.replace(wiring.copy_deps(), retry_delay_seconds=600)
    monkeypatch.setattr(copy_worker, "copy_deps", lambda: deps)
    copying(stack, files, noise_wav="404")
    run_queue(stack, "CopyQueue")  # attempt 1 fails; its retry is due in 10 minutes
    assert job_by_key(stack, KEY)["copy_attempts"] == 1
    wait_until_stale()

    report = run_reconciler()

    assert report["copies_requeued"] == 0  # the back-off holds: no attempt is spent before the retry is due
    assert job_by_key(stack, KEY)["copy_attempts"] == 1


def test_no_output_is_visible_before_all_of_a_jobs_outputs_are_in_place(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer
) -> None:
    item = submitted(stack, KEY)
    urls = serve_outputs(files)
    urls["noise_wav"] = files.add("/out/gated", FileSpec(300_000, "gated"))
    post_callback(item["job_id"], callback_payload(item["task_id"], urls))
    seen: list[list[str]] = []

    def look_while_copying() -> None:
        while not files.hits.count("/out/gated"):
            time.sleep(0.02)
        time.sleep(0.3)  # three outputs are written by now; the fourth waits at the gate
        listed = stack.client("s3").list_objects_v2(Bucket=stack.output_bucket).get("Contents", [])
        seen.append([obj["Key"] for obj in listed])
        files.files["/out/gated"].gate.set()

    import threading

    watcher = threading.Thread(target=look_while_copying)
    watcher.start()
    run_queue(stack, "CopyQueue")
    watcher.join(10)

    (during,) = seen
    assert during
    assert all(key.startswith(".staging/") for key in during), during
    assert job_by_key(stack, KEY)["status"] == "COMPLETED"
    assert_settled(stack)  # and nothing staged is left


# ---------------------------------------------------------------- 3. one bad job never stops the sweep


def test_a_job_the_sweep_fails_on_is_isolated_then_failed_and_frees_its_slot(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    poisoned, healthy = submitted(stack, "uploads/poisoned.wav"), submitted(stack, "uploads/healthy.wav")
    urls = serve_outputs(files)
    provider.default_status = by_id("COMPLETED", urls)
    lookups = wiring.reconcile_deps().submit.provider
    real = lookups.get_status

    def poisoned_lookup(*, task_id: str | None = None, conversion_id: str | None = None) -> Any:
        if task_id == poisoned["task_id"]:
            raise ValueError("an answer nothing in the pipeline expected")
        return real(task_id=task_id)

    monkeypatch.setattr(lookups, "get_status", poisoned_lookup)
    wait_until_stale()

    first = run_reconciler()

    assert first["job_errors"] == 1
    assert first["completed_by_lookup"] == 1  # the healthy job behind it was still swept
    assert job_by_key(stack, "uploads/healthy.wav")["status"] == "COPYING"
    assert job_by_key(stack, "uploads/poisoned.wav")["sweep_failures"] == 1
    run_reconciler()
    third = run_reconciler()

    assert third["failed_by_sweep"] == 1
    failed = job_by_key(stack, "uploads/poisoned.wav")
    assert failed["status"] == "FAILED"
    assert failed["error_code"] == "SWEEP_FAILED"
    assert "ValueError" in failed["error_message"]
    assert poisoned["job_id"] not in slot_holders(stack)
    assert healthy["job_id"] in {job["job_id"] for job in stack.job_items()}


def test_a_sweep_failing_beside_a_running_copy_never_counts_against_it(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer
) -> None:
    item = submitted(stack, KEY)
    assert post_callback(item["job_id"], callback_payload(item["task_id"], serve_outputs(files)))["statusCode"] == 202
    store = wiring.copy_deps().store
    now = datetime.now(UTC)
    assert store.claim_copy(item["job_id"], "worker-1", now + timedelta(minutes=10), 3, now) is not None

    counts = [store.record_sweep_failure(item["job_id"], "SQS throttled", now) for _ in range(3)]

    assert counts == [0, 0, 0]  # the copy holds its lease: the sweep's trouble is not this job's
    assert "sweep_failures" not in job_by_key(stack, KEY)
    later = now + timedelta(minutes=11)  # the lease expired: the worker died, failures count again
    assert store.record_sweep_failure(item["job_id"], "SQS throttled", later) == 1


@pytest.mark.parametrize("duration", [float("nan"), 1e200, 10**41])
def test_a_lookup_answer_with_an_unstorable_duration_completes_the_job(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer, duration: float
) -> None:
    """NaN, 1e200 or 41 digits used to raise inside the sweep (DynamoDB cannot store them) on every sweep."""
    submitted(stack, KEY)
    provider.default_status = by_id("COMPLETED", serve_outputs(files), conversion_duration=duration)
    wait_until_stale()

    report = run_reconciler()

    assert report["job_errors"] == 0
    assert report["completed_by_lookup"] == 1
    run_queue(stack, "CopyQueue")
    assert job_by_key(stack, KEY)["status"] == "COMPLETED"


def test_an_event_bus_outage_is_isolated_and_the_event_goes_out_later(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    copying(stack, files)

    def outage(job: Any) -> None:
        raise EventPublishError("EventBridge is down")

    monkeypatch.setattr(wiring.copy_deps().lifecycle.events, "job_finished", outage)
    run_queue(stack, "CopyQueue")  # completes; the event stays pending
    publisher = wiring.reconcile_deps().submit.lifecycle.events
    working = publisher.job_finished
    monkeypatch.setattr(publisher, "job_finished", outage)
    wait_until_stale()

    report = run_reconciler()

    assert report["job_errors"] == 1
    assert report["failed_by_sweep"] == 0
    assert job_by_key(stack, KEY)["status"] == "COMPLETED"
    monkeypatch.setattr(publisher, "job_finished", working)
    assert run_reconciler()["events_republished"] == 1
    assert [event["detail-type"] for event in stack.published_events()] == ["Denoise Job Completed"]


def test_a_deleted_input_in_audio_file_mode_is_isolated_and_ends_failed(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUBMIT_MODE", "audio_file")
    wiring.reset()
    record = put_object(stack, KEY)
    stack.client("s3").delete_object(Bucket=stack.input_bucket, Key=KEY, VersionId=record["s3"]["object"]["versionId"])
    with pytest.raises(Exception, match="NoSuchVersion|NoSuchKey|404"):
        deliver(record)
    healthy = submitted(stack, "uploads/healthy.wav")
    provider.default_status = by_id("COMPLETED", serve_outputs(files))
    wait_until_stale()

    reports = [run_reconciler() for _ in range(3)]

    assert [report["job_errors"] for report in reports] == [1, 1, 1]
    assert reports[0]["completed_by_lookup"] == 1
    failed = job_by_key(stack, KEY)
    assert failed["status"] == "FAILED"
    assert failed["error_code"] == "SWEEP_FAILED"
    assert healthy["job_id"] != failed["job_id"]
    assert slot_holders(stack) <= {healthy["job_id"]}


# ---------------------------------------------------------------- 4. failed copies are visible


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """The functions' log lines as Lambda would write them (Powertools' JSON formatter), for the test to read."""
    service = logging.getLogger(STACK_NAME)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(service.handlers[0].formatter)
    service.addHandler(handler)
    yield stream
    service.removeHandler(handler)


def test_every_failed_copy_attempt_is_logged_with_job_attempt_and_reason(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer, json_logs: io.StringIO
) -> None:
    """Nine failed attempts used to produce no WARNING or ERROR line at all."""
    item = copying(stack, files, noise="404")
    with contextlib.redirect_stdout(io.StringIO()) as emitted:  # metrics are EMF lines on stdout, as in Lambda
        run_queue(stack, "CopyQueue", rounds=5)

    lines = [json.loads(line) for line in json_logs.getvalue().splitlines()]
    failures = [line for line in lines if line["level"] in ("WARNING", "ERROR") and "copy" in line["message"]]
    assert [(line["level"], line["attempt"]) for line in failures] == [("WARNING", 1), ("WARNING", 2), ("ERROR", 3)]
    assert {line["correlation_id"] for line in failures} == {item["job_id"]}
    assert all("HTTP 404" in line["reason"] for line in failures)
    out = emitted.getvalue().splitlines()
    counted = [json.loads(line) for line in out if '"CopyFailures"' in line and line.startswith('{"_aws"')]
    assert sum(sum(metric["CopyFailures"]) for metric in counted) == 3


# ---------------------------------------------------------------- 5. a copy ends by its deadline


def test_a_trickling_output_ends_at_the_attempts_deadline_counted_and_retried(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body at 1 byte/s stays inside every read timeout; the invocation's deadline stops it and it counts."""
    monkeypatch.setattr(FakeContext, "get_remaining_time_in_millis", staticmethod(lambda: 33_000))  # 3 s to copy
    copying(stack, files, noise_wav="trickle")
    started = time.monotonic()

    run_queue(stack, "CopyQueue")

    assert time.monotonic() - started < 10
    item = job_by_key(stack, KEY)
    assert item["status"] == "COPYING"
    assert item["copy_attempts"] == 1
    assert "deadline" in item["last_copy_error"]
    assert "copy_owner" not in item  # the attempt let go; its lease only covers the back-off (0 s in this suite)
    assert datetime.fromisoformat(item["copy_lease_until"]) <= datetime.now(UTC)
    assert len(stack.drain("CopyQueue")) == 1  # queued again
    assert_settled(stack, allowed=frozenset({"COPYING"}))


# ---------------------------------------------------------------- 6. S3 inputs are judged one record at a time


def test_records_for_another_bucket_removals_and_malformed_ones_are_set_aside(
    stack: Stack, provider: ProviderDouble, caplog: pytest.LogCaptureFixture
) -> None:
    good = put_object(stack, "uploads/good.wav")
    other_bucket = s3_put_record("someone-elses-bucket", "uploads/x.wav", 10, "etag")
    removal = s3_put_record(stack.input_bucket, "uploads/gone.wav", 10, "etag", event_name="ObjectRemoved:Delete")
    malformed = {"eventSource": "aws:s3", "s3": {"object": {"key": "no bucket here"}}}
    event = {"Records": [other_bucket, malformed, removal, good]}

    with caplog.at_level(logging.WARNING):
        from denoise_pipeline.handlers import submit

        answer = submit.handler(event, FakeContext())

    outcomes = [result["outcome"] for result in answer["results"]]
    assert outcomes == ["SKIPPED", "MALFORMED", "SKIPPED", "SUBMITTED"]
    assert "not the input bucket" in answer["results"][0]["detail"]
    assert "not an object creation" in answer["results"][2]["detail"]
    assert [item["source_key"] for item in stack.job_items()] == ["uploads/good.wav"]
    assert len(provider.submissions) == 1
    assert any(record.levelno == logging.ERROR and "malformed" in str(record.__dict__) for record in caplog.records)


# ---------------------------------------------------------------- 8. an unauthenticated job id is never logged


def test_a_64_kb_job_id_is_refused_before_it_is_logged_or_used(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer, caplog: pytest.LogCaptureFixture
) -> None:
    huge = "a" * 65536
    item = submitted(stack, KEY)
    token = sign(SIGNING_SECRET, item["job_id"])

    with caplog.at_level(logging.DEBUG):
        answer = post_callback(huge, callback_payload("t", {}), token="x" * 43)
        copy_answer = run_copy_message({"job_id": huge})
        genuine = post_callback(item["job_id"], callback_payload(item["task_id"], serve_outputs(files)))

    assert answer["statusCode"] == 404
    assert copy_answer == {"batchItemFailures": []}
    assert genuine["statusCode"] == 202
    logged = [str(record.__dict__) for record in caplog.records]
    assert not any(huge in text for text in logged)
    assert not any(token in text for text in logged)  # not even at DEBUG


def run_copy_message(body: dict[str, Any]) -> Any:
    from denoise_pipeline.handlers import webhook
    from local.lambdas.events import sqs_event

    arn = f"arn:aws:sqs:us-east-1:123456789012:{STACK_NAME}-CopyQueue"
    return webhook.handler(sqs_event(arn, [("m-1", json.dumps(body), 1)]), FakeContext())


def test_promotion_never_starts_when_it_could_not_end_before_the_invocation(
    stack: Stack, files: OutputFileServer
) -> None:
    urls = serve_outputs(files)
    deps = wiring.copy_deps()
    transfers = [
        OutputTransfer(urls[name.value], f".staging/job/{name.file_name}", f"denoised/x/{name.file_name}", "audio/wav")
        for name in OutputName
    ]
    soon = time.monotonic() + 0.001  # a promotion of these bytes at 100 MiB/s needs longer than that

    with pytest.raises(CopyDeadlineExceeded, match="too little time to promote"):
        stage_and_promote(deps.copier, deps.output_bucket, transfers, {"job-id": "j"}, time.monotonic() + 30, soon)

    final_keys = [
        obj["Key"] for obj in stack.client("s3").list_objects_v2(Bucket=deps.output_bucket).get("Contents", [])
    ]
    assert not any(key.startswith("denoised/") for key in final_keys)  # nothing promoted, so nothing half-visible
