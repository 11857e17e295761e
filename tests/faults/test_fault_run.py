"""A fault run: 50 uploads whose copies meet S3 refusals, cut bodies, trickling bodies and timeouts, with a
poisoned status lookup and an EventBridge outage on the way. Every job must end COMPLETED or FAILED with a reason,
none may stay COPYING, no partial output may be visible, and the reconciler's sweep must never stop."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from denoise_pipeline import wiring
from denoise_pipeline.adapters.event_bus import EventPublishError
from tests.conftest import FakeContext, Stack
from tests.faults.harness import assert_settled, by_id, deliver, put_object, serve_outputs
from tests.file_server import OutputFileServer
from tests.integration.pipeline import callback_payload, post_callback, run_queue, run_reconciler
from tests.provider_double import ProviderDouble

UPLOADS = 50
FAULTS = {"ok": 24, "cut": 5, "404": 5, "s3-refusal": 5, "trickle": 2, "timeout": 2, "recovers": 7}


@pytest.fixture
def stack_overrides(stack_overrides: dict[str, str]) -> dict[str, str]:
    return stack_overrides | {"MaxParallelJobs": "100"}


@pytest.fixture
def env_overrides(env_overrides: dict[str, str]) -> dict[str, str]:
    return env_overrides | {"COPY_CONNECT_TIMEOUT_SECONDS": "0.3"}


@pytest.fixture
def s3_refusals(stack: Stack) -> Iterator[set[str]]:
    """Staging keys whose upload S3 refuses with a 500 (InternalError), as real S3 sometimes does."""
    refused: set[str] = set()

    def refuse(params: dict[str, Any], **kwargs: Any) -> None:
        if params.get("Key") in refused:
            raise ClientError(
                {"Error": {"Code": "InternalError", "Message": "We encountered an internal error"}}, "PutObject"
            )

    s3 = wiring.copy_deps().copier._s3  # noqa: SLF001 - the copier's own client, as S3 would answer it
    s3.meta.events.register("before-parameter-build.s3.PutObject", refuse)
    s3.meta.events.register("before-parameter-build.s3.CreateMultipartUpload", refuse)
    yield refused
    s3.meta.events.unregister("before-parameter-build.s3.PutObject", refuse)
    s3.meta.events.unregister("before-parameter-build.s3.CreateMultipartUpload", refuse)


def test_fifty_uploads_under_faults_all_end_in_a_defined_state(
    stack: Stack,
    provider: ProviderDouble,
    files: OutputFileServer,
    s3_refusals: set[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(FakeContext, "get_remaining_time_in_millis", staticmethod(lambda: 31_000))  # 1 s a copy
    drawn = [fault for fault, count in FAULTS.items() for _ in range(count)]
    random.Random(20261130).shuffle(drawn)
    fault_of_key: dict[str, str] = {}
    for index, fault in enumerate(drawn):
        key = (
            f"uploads/run-{index:02d}-"
            + ("長" * 300 if index % 7 == 0 else "k" * (990 if index % 11 == 0 else 5))
            + ".wav"
        )
        deliver(put_object(stack, key))
        fault_of_key[key] = fault
    submitted = {item["job_id"]: item for item in stack.job_items()}
    jobs = {job_id: item["source_key"] for job_id, item in submitted.items()}
    faults = {job_id: fault_of_key[key] for job_id, key in jobs.items()}
    assert len(jobs) == UPLOADS

    lost = sorted(jobs)[:4]  # their webhooks never come: the reconciler looks them up, one answer is poisoned
    provider.default_status = by_id("COMPLETED", serve_outputs(files, "/lookup"), conversion_duration=float("nan"))
    for job_id, fault in faults.items():
        if job_id in lost:
            continue
        item = submitted[job_id]
        urls = serve_outputs(files, f"/{job_id}", **_modes(fault))
        if fault == "s3-refusal":
            s3_refusals.add(f".staging/{job_id}/noise.wav")
        assert post_callback(job_id, callback_payload(item["task_id"], urls))["statusCode"] == 202

    reports = _settle(stack, _event_bus_down(monkeypatch))

    final = stack.job_items()
    statuses = Counter(item["status"] for item in final)
    reasons = Counter(item.get("error_code") for item in final if item["status"] == "FAILED")
    by_fault = Counter(
        (faults[item["job_id"]] if item["job_id"] not in lost else "lost webhook", item["status"]) for item in final
    )
    attempts = Counter(int(item.get("copy_attempts", 0)) for item in final)
    long_keys = sum(len(key.encode()) > 900 for key in jobs.values())
    print(
        f"\nfault run: {dict(by_fault)}; statuses {dict(statuses)}; reasons {dict(reasons)}; copy attempts "
        f"{dict(attempts)}; input keys over 900 bytes {long_keys}; sweeps {len(reports)} (none raised), "
        f"job errors isolated {sum(r['job_errors'] for r in reports)}"
    )
    assert set(statuses) <= {"COMPLETED", "FAILED"}, statuses
    assert statuses["COMPLETED"] + statuses["FAILED"] == UPLOADS
    assert max(attempts) <= 3
    for (fault, status), count in by_fault.items():
        expected = "COMPLETED" if fault in ("ok", "recovers", "lost webhook") else "FAILED"
        assert status == expected, (fault, status, count)
    assert sum(report["job_errors"] for report in reports) > 0  # the outage was met, and the sweep went on
    assert_settled(stack)
    events = Counter(event["detail"]["job_id"] for event in stack.published_events())
    assert set(events) == set(jobs)
    assert set(events.values()) == {1}


def _modes(fault: str) -> dict[str, str]:
    if fault in ("cut", "404", "trickle"):
        return {"noise_wav": fault}
    if fault == "timeout":  # headers, then nothing: the read times out (or the attempt's deadline comes first)
        return {"noise": "gated"}
    if fault == "recovers":  # cut on the first attempt, whole on the next
        return {"noise_wav": "cut-once"}
    return {}


def _event_bus_down(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Every publish fails until the returned function brings the bus back."""
    publishers = [wiring.copy_deps().lifecycle.events, wiring.reconcile_deps().submit.lifecycle.events]
    working = [publisher.job_finished for publisher in publishers]

    def outage(job: Any) -> None:
        raise EventPublishError("EventBridge is down")

    for publisher in publishers:
        monkeypatch.setattr(publisher, "job_finished", outage)

    def back() -> None:
        for publisher, job_finished in zip(publishers, working, strict=True):
            monkeypatch.setattr(publisher, "job_finished", job_finished)

    return back


def _settle(stack: Stack, event_bus_back: Callable[[], None]) -> list[dict[str, int]]:
    """Run the copy queue and the reconciler until nothing is left to do; the event bus comes back half way."""
    reports: list[dict[str, int]] = []
    deadline = time.monotonic() + 150
    for round_number in range(40):
        run_queue(stack, "CopyQueue", rounds=10)
        time.sleep(1.1)  # STALE_AFTER_SECONDS is 1 in this suite
        reports.append(run_reconciler())
        if round_number == 2:
            event_bus_back()
        items = stack.job_items()
        pending = [item for item in items if item["status"] not in ("COMPLETED", "FAILED")]
        if not pending and not any("event_pending" in item for item in items):
            break
        assert time.monotonic() < deadline, pending
    return reports
