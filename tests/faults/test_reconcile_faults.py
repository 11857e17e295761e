"""A lost webhook, a provider-side failure, a job that never finishes, a crashed submit, and a webhook that
arrives before the submit recorded SUBMITTED: the reconciler brings every one of them to a final state."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from werkzeug import Request, Response

from denoise_pipeline import wiring
from denoise_pipeline.clock import utc_now
from denoise_pipeline.domain.source import SourceObject
from denoise_pipeline.workflows.reconcile import ReconcileReport, reconcile
from tests.conftest import Stack
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
from tests.file_server import OutputFileServer
from tests.integration.pipeline import callback_payload, post_callback, run_queue, run_reconciler
from tests.provider_double import ProviderDouble, ok_submit

KEY = "uploads/lost webhook.wav"


def reconcile_at(seconds_from_now: float) -> ReconcileReport:
    """The reconciler's service with a clock moved forward (the handler always uses the real time)."""
    now = utc_now() + timedelta(seconds=seconds_from_now)
    return reconcile(now, wiring.reconcile_deps())


def lookups(provider: ProviderDouble) -> list[dict[str, str]]:
    return [call.query for call in provider.calls if call.path.endswith("/byId")]


def test_lost_webhook_is_completed_by_the_reconciler(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer
) -> None:
    item = submitted(stack, KEY)
    provider.status_script.append(by_id("COMPLETED", serve_outputs(files), conversion_duration=136.8))

    assert run_reconciler()["looked_up"] == 0  # not stale yet: no lookup spent
    wait_until_stale()
    report = run_reconciler()

    assert report["looked_up"] == 1
    assert report["completed_by_lookup"] == 1
    assert lookups(provider) == [{"conversionType": "DENOISING", "task_id": item["task_id"]}]
    assert job_by_key(stack, KEY)["status"] == "COPYING"
    assert slot_holders(stack) == {item["job_id"]}  # held until the copy starts

    run_queue(stack, "CopyQueue", rounds=3)

    done = job_by_key(stack, KEY)
    assert done["status"] == "COMPLETED"
    assert done["conversion_cost"] == "0.48"
    assert set(done["output_keys"]) == {"no_noise", "no_noise_wav", "noise", "noise_wav"}
    assert slot_holders(stack) == set()
    wait_until_stale()
    run_reconciler()  # a later sweep changes nothing
    assert job_by_key(stack, KEY) == done
    (event,) = stack.published_events()
    assert event["detail-type"] == "Denoise Job Completed"
    assert event["detail"]["job_id"] == item["job_id"]
    assert_settled(stack)


def test_provider_reported_failure_fails_the_job_with_its_reason(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer
) -> None:
    item = submitted(stack, KEY)
    provider.status_script.append(by_id("FAILED", status_msg="Audio file could not be decoded"))
    wait_until_stale()

    report = run_reconciler()

    assert report["failed_by_lookup"] == 1
    failed = job_by_key(stack, KEY)
    assert failed["status"] == "FAILED"
    assert failed["error_code"] == "CONVERSION_FAILED"
    assert failed["error_message"] == "Audio file could not be decoded"
    assert slot_holders(stack) == set()
    assert [json.loads(m["Body"])["job_id"] for m in stack.drain("AdmissionQueue")] == [item["job_id"]]
    (event,) = stack.published_events()
    assert event["detail-type"] == "Denoise Job Failed"
    assert event["detail"]["error"]["message"] == "Audio file could not be decoded"
    assert files.hits == []
    assert_settled(stack)


def test_job_still_processing_past_max_age_times_out_once(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer
) -> None:
    item = submitted(stack, KEY)
    provider.default_status = by_id("PROCESSING")

    early = reconcile_at(30)  # stale, still within MAX_JOB_AGE_SECONDS=60: keep waiting
    assert (early.looked_up, early.timed_out) == (1, 0)
    assert job_by_key(stack, KEY)["status"] == "SUBMITTED"
    assert stack.published_events() == []

    late = reconcile_at(61)
    again = reconcile_at(62)

    assert (late.looked_up, late.timed_out) == (1, 1)
    assert again.timed_out == 0
    timed_out = job_by_key(stack, KEY)
    assert timed_out["status"] == "TIMED_OUT"
    assert timed_out["error_code"] == "TIMED_OUT"
    assert "no result from the provider" in timed_out["error_message"]
    assert slot_holders(stack) == set()
    (event,) = stack.published_events()
    assert event["detail-type"] == "Denoise Job Failed"
    assert event["detail"]["status"] == "TIMED_OUT"
    assert event["detail"]["job_id"] == item["job_id"]
    assert_settled(stack)


def test_received_job_whose_submit_crashed_is_redriven(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer
) -> None:
    record = put_object(stack, KEY)
    obj = record["s3"]["object"]
    source = SourceObject(stack.input_bucket, KEY, obj["size"], obj["eTag"], obj.get("versionId", ""))
    # The submit created the job (with its lease) 200 s ago and died before calling the provider.
    wiring.submit_deps().store.create_claimed(source, now=utc_now() - timedelta(seconds=200))
    assert provider.submissions == []

    report = run_reconciler()

    assert report["redriven"] == 1
    item = job_by_key(stack, KEY)
    assert item["status"] == "SUBMITTED"
    assert len(provider.submissions) == 1
    assert deliver(record)["results"][0]["outcome"] == "DUPLICATE"  # S3's late retry changes nothing
    assert len(provider.submissions) == 1

    answer = post_callback(item["job_id"], callback_payload(item["task_id"], serve_outputs(files)))
    assert answer["statusCode"] == 202
    run_queue(stack, "CopyQueue")
    assert job_by_key(stack, KEY)["status"] == "COMPLETED"
    assert len(stack.published_events()) == 1
    assert_settled(stack)


# ---------------------------------------------------------------- 4. webhook before the SUBMITTED write


def calling_back_before_answering(stack: Stack, files: OutputFileServer, seen: dict[str, Any]) -> Any:
    """A provider that finishes so fast that its webhook arrives before its answer to POST /denoise."""

    def respond(request: Request) -> Response:
        response = ok_submit(request)
        task_id = json.loads(response.get_data())["task_id"]
        job_id = request.form["webhook_url"].split("/webhooks/", 1)[1].split("/")[0]
        seen["job_id"] = job_id
        seen["status_before"] = stack.table.get_item(Key={"job_id": job_id})["Item"]["status"]
        seen["answer"] = post_callback(job_id, callback_payload(task_id, serve_outputs(files)))
        seen["status_after"] = stack.table.get_item(Key={"job_id": job_id})["Item"]["status"]
        return response

    return respond


def test_a_final_callback_replaces_a_kept_progress_callback(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer
) -> None:
    """Progress first, then the final callback, both before our SUBMITTED write (the local stack's "everything at
    once" run found it): the final one replaces the kept progress callback instead of being dropped as if a final
    one were kept already, and the submit applies it at once (it used to wait for the reconciler's stale sweep)."""
    seen: dict[str, Any] = {}

    def respond(request: Request) -> Response:
        response = ok_submit(request)
        task_id = json.loads(response.get_data())["task_id"]
        job_id = request.form["webhook_url"].split("/webhooks/", 1)[1].split("/")[0]
        progress = {"success": True, "task_id": task_id, "status": "IN_PROGRESS", "conversion_type": "Denoise"}
        seen["progress"] = post_callback(job_id, progress)
        seen["final"] = post_callback(job_id, callback_payload(task_id, serve_outputs(files)))
        seen["kept"] = stack.table.get_item(Key={"job_id": job_id})["Item"]["early_callback"]["verdict"]
        return response

    provider.then(respond)
    deliver(put_object(stack, KEY))

    assert seen["progress"]["statusCode"] == 202
    assert seen["final"]["statusCode"] == 202
    assert seen["kept"] == "SUCCEEDED"
    assert job_by_key(stack, KEY)["status"] == "COPYING"  # applied as SUBMITTED was recorded
    run_queue(stack, "AdmissionQueue")
    run_queue(stack, "CopyQueue", rounds=3)
    assert job_by_key(stack, KEY)["status"] == "COMPLETED"
    assert len(provider.submissions) == 1


@pytest.mark.parametrize("waiting_state", ["RECEIVED", "QUEUED"])
def test_webhook_before_the_submitted_write_is_kept_and_applied_when_the_submit_records(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer, waiting_state: str
) -> None:
    """The callback finds the job still RECEIVED (fresh upload) or QUEUED (admitted from the queue): it is kept on
    the job (202), nothing is fetched, and the submit applies it the moment it records SUBMITTED: no wait for the
    reconciler, no lost completion."""
    seen: dict[str, Any] = {}
    if waiting_state == "QUEUED":
        first, second = submitted(stack, "uploads/a.wav"), submitted(stack, "uploads/b.wav")  # both slots taken
        deliver(put_object(stack, KEY))
        assert job_by_key(stack, KEY)["status"] == "QUEUED"
        provider.then(calling_back_before_answering(stack, files, seen))
        for other in (first, second):
            post_callback(other["job_id"], callback_payload(other["task_id"], serve_outputs(files, "/other")))
        run_queue(stack, "CopyQueue", rounds=3)  # the copies free both slots and wake the admission
        run_queue(stack, "AdmissionQueue")
    else:
        provider.then(calling_back_before_answering(stack, files, seen))
        deliver(put_object(stack, KEY))

    assert seen["status_before"] == waiting_state
    assert seen["answer"]["statusCode"] == 202
    assert seen["answer"]["json"] == {"job_id": seen["job_id"], "status": waiting_state, "kept": True}
    assert seen["status_after"] == waiting_state  # kept, not applied: the job has no task id yet
    assert files.hits == [] or all(hit.startswith("/other") for hit in files.hits)
    item = job_by_key(stack, KEY)
    assert item["status"] == "COPYING"  # applied as SUBMITTED was recorded
    assert "early_callback" not in item

    run_queue(stack, "AdmissionQueue")  # the resume the kept callback asked for finds nothing left to do
    run_queue(stack, "CopyQueue", rounds=3)

    assert job_by_key(stack, KEY)["status"] == "COMPLETED"
    assert len(provider.submissions) == (3 if waiting_state == "QUEUED" else 1)
    completed = [e for e in stack.published_events() if e["detail"]["job_id"] == item["job_id"]]
    assert [e["detail-type"] for e in completed] == ["Denoise Job Completed"]
    assert_settled(stack)
