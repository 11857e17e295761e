"""Provider capacity (decision 12) with MaxParallelJobs=2: a burst becomes a queue that drains at the limit,
a slot leaked by a crash is recovered, and a provider answering 429 with free slots pauses admission."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from werkzeug import Request, Response

from denoise_pipeline import wiring
from denoise_pipeline.adapters import capacity
from denoise_pipeline.clock import utc_now
from denoise_pipeline.domain.job import ErrorCode
from denoise_pipeline.domain.source import SourceObject
from denoise_pipeline.workflows.reconcile import ReconcileReport, reconcile
from tests.conftest import Stack
from tests.faults.harness import (
    assert_settled,
    capacity_item,
    deliver,
    job_by_key,
    parse_time,
    put_object,
    race,
    serve_outputs,
    slot_holders,
)
from tests.file_server import OutputFileServer
from tests.integration.pipeline import callback_payload, post_callback, run_queue, run_reconciler
from tests.provider_double import ProviderDouble, ok_submit, status

LIMIT = 2
DEAD_LETTERS = ("SubmitFailureQueue", "CopyDeadLetterQueue", "AdmissionDeadLetterQueue")


@pytest.fixture
def stack_overrides(files: OutputFileServer) -> dict[str, str]:
    return {"OutputHostAllowlist": f"lalals.s3.amazonaws.com,{files.origin}", "MaxParallelJobs": str(LIMIT)}


class InFlight:
    """The provider's side of the count: a job is in flight from its accepted POST /denoise until its callback.

    It accepts everything (it does not enforce the limit, so exceeding it shows up in `peak` instead of being
    hidden by a 429) and remembers the order in which jobs reached it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.tasks: dict[str, str] = {}  # task_id -> job_id, while in flight
        self.peak = 0
        self.order: list[str] = []  # job ids, in submission order
        self.task_of: dict[str, str] = {}

    def __call__(self, request: Request) -> Response:
        response = ok_submit(request)
        task_id = json.loads(response.get_data())["task_id"]
        job_id = request.form["webhook_url"].split("/webhooks/", 1)[1].split("/")[0]
        with self._lock:
            self.tasks[task_id] = job_id
            self.peak = max(self.peak, len(self.tasks))
            self.order.append(job_id)
            self.task_of[job_id] = task_id
        return response

    def call_back(self, task_id: str) -> None:
        with self._lock:
            del self.tasks[task_id]


def deliver_callbacks(stack: Stack, in_flight: InFlight, urls: dict[str, str]) -> int:
    """The provider finishes every job it holds and calls back."""
    delivered = 0
    for item in stack.job_items():
        if item["status"] != "SUBMITTED":
            continue
        in_flight.call_back(item["task_id"])
        answer = post_callback(item["job_id"], callback_payload(item["task_id"], urls))
        assert answer["statusCode"] == 202, answer
        delivered += 1
    return delivered


def drain_everything(stack: Stack, in_flight: InFlight, urls: dict[str, str], *, max_rounds: int = 60) -> int:
    """Callbacks, then the copy queue (frees slots, wakes admission), then the admission queue, until quiet."""
    for rounds in range(1, max_rounds + 1):
        delivered = deliver_callbacks(stack, in_flight, urls)
        copies = run_queue(stack, "CopyQueue", rounds=20)
        admissions = run_queue(stack, "AdmissionQueue", rounds=20)
        if not (delivered or copies or admissions):
            return rounds
    raise AssertionError(f"still busy after {max_rounds} rounds")


def statuses(stack: Stack) -> Counter[str]:
    return Counter(item["status"] for item in stack.job_items())


def assert_no_dead_letters(stack: Stack) -> None:
    for queue in DEAD_LETTERS:
        assert stack.drain(queue) == [], queue


def source_of(stack: Stack, record: dict[str, Any]) -> SourceObject:
    obj = record["s3"]["object"]
    key = obj["key"].replace("+", " ")
    return SourceObject(stack.input_bucket, key, obj["size"], obj["eTag"], obj.get("versionId", ""))


# ---------------------------------------------------------------- 8. a burst of 50


def test_fifty_uploads_at_once_never_exceed_the_limit_and_all_complete(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer
) -> None:
    in_flight = InFlight()
    provider.default_submit = in_flight
    urls = serve_outputs(files)
    records = [put_object(stack, f"uploads/burst/{i:02d}.wav") for i in range(50)]

    results = race(50, lambda i: deliver(records[i]))

    failures = [result for result in results if isinstance(result, BaseException)]
    assert failures == []  # an invocation that raised would be retried and could end on the failure destination
    outcomes = Counter(result["results"][0]["outcome"] for result in results if isinstance(result, dict))
    assert outcomes == {"SUBMITTED": LIMIT, "QUEUED": 50 - LIMIT}
    assert all(item["queue_reason"] for item in stack.job_items() if item["status"] == "QUEUED")

    drain_everything(stack, in_flight, urls)

    assert statuses(stack) == {"COMPLETED": 50}
    assert in_flight.peak == LIMIT  # the limit was used, and never exceeded
    assert len(in_flight.order) == len(set(in_flight.order)) == 50  # 0 duplicate submissions
    assert len(provider.submissions) == 50
    assert all(item["submit_attempts"] == 1 for item in stack.job_items())
    completed = [event for event in stack.published_events() if event["detail-type"] == "Denoise Job Completed"]
    assert len({event["detail"]["job_id"] for event in completed}) == len(completed) == 50
    assert slot_holders(stack) == set()
    assert_no_dead_letters(stack)
    assert_settled(stack)


# ---------------------------------------------------------------- 9. leaked slots


@pytest.mark.parametrize("leak", ["crash between acquire and submit", "job already final", "job missing"])
def test_leaked_slot_is_recovered_by_the_reconciler_and_the_queue_drains(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer, leak: str
) -> None:
    in_flight = InFlight()
    provider.default_submit = in_flight
    urls = serve_outputs(files)
    deps = wiring.submit_deps()
    deliver(put_object(stack, "uploads/legit.wav"))  # holds the other slot, legitimately
    legit = job_by_key(stack, "uploads/legit.wav")

    leaked_job_id = "f" * 32
    if leak != "job missing":
        source = source_of(stack, put_object(stack, "uploads/leaked.wav"))
        leaked_job_id = source.job_id
        assert deps.store.create_claimed(source, now=utc_now() - timedelta(seconds=200)) is not None
    assert deps.lifecycle.gate.try_acquire(leaked_job_id)
    if leak == "job already final":  # e.g. rejected by the provider, then the process died before the release
        deps.store.mark_failed(leaked_job_id, ErrorCode.PROVIDER_REJECTED, "HTTP 422: bad audio")
    # ... and the process died here: nothing will ever release that slot but the reconciler.

    queued_keys = [f"uploads/queued/{i}.wav" for i in range(3)]
    for key in queued_keys:
        deliver(put_object(stack, key))
    assert {job_by_key(stack, key)["status"] for key in queued_keys} == {"QUEUED"}
    assert slot_holders(stack) == {legit["job_id"], leaked_job_id}

    report = run_reconciler()

    assert report["slots_released"] == 1
    assert legit["job_id"] in slot_holders(stack)  # a SUBMITTED job's slot is never taken away
    if leak == "crash between acquire and submit":
        assert report["redriven"] == 1  # the crashed job itself is submitted again, in the freed slot
        assert job_by_key(stack, "uploads/leaked.wav")["status"] == "SUBMITTED"
    else:
        assert report["admitted"] == 1  # the oldest queued job takes the freed slot
        assert job_by_key(stack, queued_keys[0])["status"] == "SUBMITTED"
    assert len(slot_holders(stack)) == LIMIT

    drain_everything(stack, in_flight, urls)

    expected = {"COMPLETED": 5} if leak == "crash between acquire and submit" else {"COMPLETED": 4}
    if leak == "job already final":
        expected["FAILED"] = 1
    assert statuses(stack) == expected
    assert in_flight.peak <= LIMIT
    assert len(in_flight.order) == len(set(in_flight.order))
    assert slot_holders(stack) == set()
    assert_no_dead_letters(stack)
    assert_settled(stack)


# ---------------------------------------------------------------- 10. 429 although slots are free


class Clock:
    """Moves the capacity gate's clock (and the reconciler's `now`) forward, as a scheduler run later would."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.offset = timedelta(0)
        monkeypatch.setattr(capacity, "utc_now", self.now)

    def now(self) -> datetime:
        return utc_now() + self.offset

    def advance_past(self, stamp: str) -> None:
        self.offset += parse_time(stamp) - self.now() + timedelta(seconds=0.01)


def reconcile_at(clock: Clock) -> ReconcileReport:
    return reconcile(clock.now(), wiring.reconcile_deps())


def test_429_with_free_slots_pauses_admission_exponentially_then_drains_oldest_first(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The account may be shared: the provider can say 429 while our own count shows free slots. Jobs wait as
    QUEUED with the reason, admission pauses with a growing back-off (no Retry-After), a rate-limited job is
    not failed for it, and when the provider recovers the queue drains in upload order."""
    clock = Clock(monkeypatch)
    in_flight = InFlight()
    provider.default_submit = in_flight
    busy: Callable[[Request], Response] = status(429, {"message": "Too many parallel jobs on this account"})
    rate_limited = 7
    provider.then(*[busy] * rate_limited)
    keys = [f"uploads/shared/{i}.wav" for i in range(5)]

    for key in keys:  # one after the other: the upload order is the queue order
        assert deliver(put_object(stack, key))["results"][0]["outcome"] == "QUEUED"

    assert len(provider.submissions) == 1  # the first met the 429; the rest waited behind the pause
    items = [job_by_key(stack, key) for key in keys]
    assert "Too many parallel jobs" in items[0]["queue_reason"]
    assert all("paused" in item["queue_reason"] for item in items[1:])
    assert slot_holders(stack) == set()  # slots are free: this is the provider's limit, not ours

    assert reconcile_at(clock).admitted == 0  # still paused: the scheduler does not knock
    assert len(provider.submissions) == 1

    pauses = [(parse_time(capacity_item(stack)["paused_until"]) - clock.now()).total_seconds()]
    while len(provider.submissions) < rate_limited:
        clock.advance_past(capacity_item(stack)["paused_until"])
        report = reconcile_at(clock)
        assert report.admitted == 0
        pauses.append((parse_time(capacity_item(stack)["paused_until"]) - clock.now()).total_seconds())
        assert {job_by_key(stack, key)["status"] for key in keys} == {"QUEUED"}
    for streak, paused in enumerate(pauses):
        ceiling = min(capacity.MAX_BACKOFF_SECONDS, capacity.BASE_BACKOFF_SECONDS * 2**streak)
        assert ceiling / 2 - 0.5 <= paused <= ceiling, pauses
    assert capacity_item(stack)["consecutive_rate_limits"] == rate_limited

    clock.advance_past(capacity_item(stack)["paused_until"])  # the provider has room again
    assert reconcile_at(clock).admitted == LIMIT
    assert "consecutive_rate_limits" not in capacity_item(stack)
    drain_everything(stack, in_flight, serve_outputs(files))

    assert statuses(stack) == {"COMPLETED": len(keys)}
    job_ids = [job_by_key(stack, key)["job_id"] for key in keys]
    assert in_flight.order == job_ids  # oldest first, each once
    assert in_flight.peak <= LIMIT
    assert_no_dead_letters(stack)
    assert_settled(stack)
