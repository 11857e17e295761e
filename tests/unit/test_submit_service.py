"""The submit workflow with its collaborators replaced by autospec fakes: a fake cannot accept a call the real
interface lacks, so these tests break when the workflow and its adapters drift apart."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from unittest.mock import create_autospec

import pytest

from denoise_pipeline.adapters.capacity import CapacityGate, Pause, Slot
from denoise_pipeline.adapters.event_bus import EventPublisher
from denoise_pipeline.adapters.input_objects import InputObjects
from denoise_pipeline.adapters.job_store import JobStore
from denoise_pipeline.adapters.musicgpt import (
    MusicGptClient,
    ProviderAuthError,
    ProviderCreditsError,
    ProviderRateLimited,
    ProviderRejectedError,
    ProviderRetryableError,
)
from denoise_pipeline.adapters.queues import JobQueue
from denoise_pipeline.adapters.reservations import Reservations
from denoise_pipeline.domain.job import ErrorCode, Job, JobStatus
from denoise_pipeline.domain.source import SourceObject
from denoise_pipeline.domain.submission import SubmitMode, SubmitResult
from denoise_pipeline.domain.tokens import WebhookLinks
from denoise_pipeline.workflows.callback import Recorder
from denoise_pipeline.workflows.lifecycle import Lifecycle
from denoise_pipeline.workflows.submit import Outcome, SubmitDeps, admit_queued, handle_new_object, submit_claimed

SOURCE = SourceObject("in-bucket", "uploads/take 1.wav", 1000, "etag")
RESULT = SubmitResult("task-1", "conv-1", 71, Decimal("0.48"), "IN_QUEUE", "")


def job(status: JobStatus = JobStatus.RECEIVED, attempts: int = 1) -> Job:
    return Job(SOURCE.job_id, status, SOURCE.bucket, SOURCE.key, SOURCE.size, SOURCE.etag, submit_attempts=attempts)


def failed(code: str, message: str) -> Job:
    return Job(
        SOURCE.job_id, JobStatus.FAILED, SOURCE.bucket, SOURCE.key, SOURCE.size, error_code=code, error_message=message
    )


@dataclass
class Fakes:
    """Autospec fakes of the adapters, and the workflow's dependencies built on them as the wiring builds them."""

    store: Any
    gate: Any
    provider: Any
    inputs: Any
    links: Any
    events: Any
    admission: Any
    copies: Any

    @property
    def deps(self) -> SubmitDeps:
        return SubmitDeps(
            store=self.store,
            reservations=Reservations(self.store, self.gate),
            provider=self.provider,
            inputs=self.inputs,
            links=self.links,
            lifecycle=Lifecycle(self.store, self.gate, self.admission, self.events),
            recorder=Recorder(self.store, Lifecycle(self.store, self.gate, self.admission, self.events), self.copies),
            mode=SubmitMode.AUDIO_URL,
            max_attempts=3,
        )


@pytest.fixture
def fakes() -> Fakes:
    fakes = Fakes(
        store=create_autospec(JobStore, instance=True),
        gate=create_autospec(CapacityGate, instance=True),
        provider=create_autospec(MusicGptClient, instance=True),
        inputs=create_autospec(InputObjects, instance=True),
        links=create_autospec(WebhookLinks, instance=True),
        events=create_autospec(EventPublisher, instance=True),
        admission=create_autospec(JobQueue, instance=True),
        copies=create_autospec(JobQueue, instance=True),
    )
    fakes.store.mark_submitted.return_value = job(JobStatus.SUBMITTED)
    fakes.store.create_claimed.return_value = job()
    fakes.store.create_queued.return_value = job(JobStatus.QUEUED, attempts=0)
    fakes.gate.wait_reason.return_value = None
    fakes.gate.try_acquire.return_value = Slot(rate_limit_streak=0)
    fakes.inputs.presigned_url.return_value = "https://in-bucket.s3.amazonaws.com/uploads/take%201.wav?sig"
    fakes.links.url_for.return_value = "https://api.example/webhooks/j/t"
    fakes.provider.submit_denoise.return_value = RESULT
    return fakes


def test_new_object_is_submitted_once_with_its_links(fakes: Fakes) -> None:
    report = handle_new_object(SOURCE, fakes.deps)

    assert report.outcome is Outcome.SUBMITTED
    fakes.provider.submit_denoise.assert_called_once_with(
        audio_url="https://in-bucket.s3.amazonaws.com/uploads/take%201.wav?sig",
        webhook_url="https://api.example/webhooks/j/t",
    )
    fakes.store.mark_submitted.assert_called_once_with(SOURCE.job_id, RESULT)
    fakes.gate.record_success.assert_not_called()  # no back-off streak to reset: no extra write


def test_a_twin_that_cannot_claim_the_job_submits_nothing(fakes: Fakes) -> None:
    fakes.store.create_claimed.return_value = None
    fakes.store.claim.return_value = None
    fakes.store.find.return_value = job(JobStatus.SUBMITTED)

    report = handle_new_object(SOURCE, fakes.deps)

    assert report.outcome is Outcome.DUPLICATE
    fakes.provider.submit_denoise.assert_not_called()
    fakes.gate.try_acquire.assert_not_called()


def test_skipped_objects_create_no_job(fakes: Fakes) -> None:
    report = handle_new_object(SourceObject("b", "notes.txt", 10), fakes.deps)

    assert report.outcome is Outcome.SKIPPED
    fakes.store.create_claimed.assert_not_called()


def test_no_free_slot_creates_the_job_queued_in_one_write(fakes: Fakes) -> None:
    fakes.gate.wait_reason.return_value = "waiting for a free provider slot"

    report = handle_new_object(SOURCE, fakes.deps)

    assert report.outcome is Outcome.QUEUED
    fakes.store.create_queued.assert_called_once_with(SOURCE, "waiting for a free provider slot")
    fakes.store.create_claimed.assert_not_called()
    fakes.store.mark_queued.assert_not_called()
    fakes.gate.try_acquire.assert_not_called()  # no write on the capacity record either
    fakes.provider.submit_denoise.assert_not_called()


def test_a_redelivered_event_of_a_queued_job_leaves_it_queued(fakes: Fakes) -> None:
    fakes.gate.wait_reason.return_value = "waiting for a free provider slot"
    fakes.store.create_queued.return_value = None
    fakes.store.claim.return_value = job(JobStatus.QUEUED)

    report = handle_new_object(SOURCE, fakes.deps)

    assert report.outcome is Outcome.QUEUED
    fakes.store.mark_queued.assert_called_once_with(SOURCE.job_id, "waiting for a free provider slot")
    fakes.provider.submit_denoise.assert_not_called()


def test_losing_the_last_slot_to_a_twin_queues(fakes: Fakes) -> None:
    fakes.gate.try_acquire.return_value = None

    report = handle_new_object(SOURCE, fakes.deps)

    assert report.outcome is Outcome.QUEUED
    fakes.provider.submit_denoise.assert_not_called()


def test_rate_limit_queues_pauses_and_schedules_a_wake_up(fakes: Fakes) -> None:
    fakes.provider.submit_denoise.side_effect = ProviderRateLimited("HTTP 429: busy", retry_after=7.0)
    fakes.gate.pause.return_value = Pause("2026-11-24T10:00:07.000000Z", 7.0)

    report = handle_new_object(SOURCE, fakes.deps)

    assert report.outcome is Outcome.QUEUED
    fakes.gate.release.assert_called_once_with(SOURCE.job_id)
    fakes.gate.pause.assert_called_once_with("HTTP 429: busy", 7.0)
    fakes.admission.enqueue.assert_called_once_with(SOURCE.job_id, delay_seconds=7.0)
    assert "429" in fakes.store.mark_queued.call_args.args[1]


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ProviderRejectedError("HTTP 422: bad audio", status_code=422), ErrorCode.PROVIDER_REJECTED),
        (ProviderAuthError("HTTP 401: bad key", status_code=401), ErrorCode.PROVIDER_AUTH),
        (ProviderCreditsError("HTTP 402: no credits", status_code=402), ErrorCode.INSUFFICIENT_CREDITS),
    ],
)
def test_permanent_refusal_fails_the_job_frees_the_slot_and_announces(
    fakes: Fakes, error: Exception, code: str
) -> None:
    fakes.provider.submit_denoise.side_effect = error
    fakes.gate.release.return_value = True
    fakes.store.mark_failed.return_value = failed(code, str(error))

    report = handle_new_object(SOURCE, fakes.deps)

    assert report.outcome is Outcome.FAILED
    assert fakes.store.mark_failed.call_args.args[1] == code
    fakes.gate.release.assert_called_once_with(SOURCE.job_id)
    fakes.events.job_finished.assert_called_once_with(fakes.store.mark_failed.return_value)
    fakes.store.mark_event_published.assert_called_once_with(SOURCE.job_id)


def test_a_file_the_provider_refuses_lets_the_next_job_in(fakes: Fakes) -> None:
    fakes.provider.submit_denoise.side_effect = ProviderRejectedError("HTTP 422: bad audio", status_code=422)
    fakes.gate.release.return_value = True
    fakes.store.mark_failed.return_value = failed(ErrorCode.PROVIDER_REJECTED, "bad audio")

    handle_new_object(SOURCE, fakes.deps)

    fakes.admission.enqueue.assert_called_once_with(SOURCE.job_id)
    fakes.gate.pause.assert_not_called()


@pytest.mark.parametrize(
    "error",
    [ProviderAuthError("HTTP 401: bad key", status_code=401), ProviderCreditsError("HTTP 402: none", status_code=402)],
)
def test_an_account_problem_holds_the_queue_instead_of_failing_it(fakes: Fakes, error: Exception) -> None:
    fakes.provider.submit_denoise.side_effect = error
    fakes.gate.release.return_value = True
    fakes.store.mark_failed.return_value = failed(ErrorCode.PROVIDER_AUTH, str(error))

    handle_new_object(SOURCE, fakes.deps)

    fakes.admission.enqueue.assert_not_called()  # waking the queue would fail the next job the same way
    assert fakes.gate.pause.call_args.args[1] == 300.0


def test_transient_failure_gives_everything_back_and_raises(fakes: Fakes) -> None:
    fakes.provider.submit_denoise.side_effect = ProviderRetryableError("HTTP 503: down", status_code=503)

    with pytest.raises(ProviderRetryableError):
        handle_new_object(SOURCE, fakes.deps)

    fakes.gate.release.assert_called_once_with(SOURCE.job_id)
    fakes.store.release_lease.assert_called_once_with(SOURCE.job_id)
    fakes.store.mark_failed.assert_not_called()
    fakes.admission.enqueue.assert_not_called()  # no wake-up loop while the provider is down


def test_too_many_attempts_fail_the_job_without_calling_the_provider(fakes: Fakes) -> None:
    fakes.store.mark_failed.return_value = failed(ErrorCode.SUBMIT_ATTEMPTS_EXHAUSTED, "gave up")

    report = submit_claimed(job(attempts=4), fakes.deps)

    assert report.outcome is Outcome.FAILED
    assert fakes.store.mark_failed.call_args.args[1] == ErrorCode.SUBMIT_ATTEMPTS_EXHAUSTED
    fakes.provider.submit_denoise.assert_not_called()


def test_admission_stops_at_the_first_job_that_has_to_wait(fakes: Fakes) -> None:
    queued = [job(JobStatus.QUEUED) for _ in range(3)]
    fakes.gate.free_slots.return_value = 2
    fakes.store.list_by_status.return_value = iter(queued)
    fakes.store.claim.side_effect = queued
    fakes.gate.wait_reason.side_effect = [None, "waiting for a free provider slot"]

    assert admit_queued(fakes.deps) == 1
    assert fakes.provider.submit_denoise.call_count == 1
    assert fakes.store.claim.call_count == 2


def test_admission_claims_no_more_jobs_than_it_has_slots(fakes: Fakes) -> None:
    queued = [job(JobStatus.QUEUED) for _ in range(2)]
    fakes.gate.free_slots.return_value = 1
    fakes.store.list_by_status.return_value = iter(queued)
    fakes.store.claim.side_effect = queued

    assert admit_queued(fakes.deps) == 1
    assert fakes.store.claim.call_count == 1
    fakes.store.mark_queued.assert_not_called()


def test_admission_does_nothing_without_a_free_slot(fakes: Fakes) -> None:
    fakes.gate.free_slots.return_value = 0

    assert admit_queued(fakes.deps) == 0
    fakes.store.list_by_status.assert_not_called()
