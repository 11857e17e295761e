"""The submit workflow with its collaborators replaced by autospec fakes: a fake cannot accept a call the real
interface lacks, so these tests break when the workflow and its adapters drift apart."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from unittest.mock import create_autospec

import pytest

from denoise_pipeline.capacity import CapacityGate, Pause, Slot
from denoise_pipeline.events import EventPublisher
from denoise_pipeline.jobs import JobStore
from denoise_pipeline.models import ErrorCode, Job, JobStatus, SourceObject, SubmitResult
from denoise_pipeline.musicgpt import (
    MusicGptClient,
    ProviderAuthError,
    ProviderCreditsError,
    ProviderRateLimited,
    ProviderRejectedError,
    ProviderRetryableError,
)
from denoise_pipeline.queues import JobQueue
from denoise_pipeline.settings import SubmitMode
from denoise_pipeline.sources import InputObjects, WebhookLinks
from denoise_pipeline.submit import Outcome, SubmitDeps, admit_queued, handle_new_object, submit_claimed

SOURCE = SourceObject("in-bucket", "uploads/take 1.wav", 1000, "etag")
RESULT = SubmitResult("task-1", "conv-1", 71, Decimal("0.48"), "IN_QUEUE", "")


def job(status: JobStatus = JobStatus.RECEIVED, attempts: int = 1) -> Job:
    return Job(SOURCE.job_id, status, SOURCE.bucket, SOURCE.key, SOURCE.size, SOURCE.etag, submit_attempts=attempts)


def failed(code: str, message: str) -> Job:
    return Job(
        SOURCE.job_id, JobStatus.FAILED, SOURCE.bucket, SOURCE.key, SOURCE.size, error_code=code, error_message=message
    )


@pytest.fixture
def deps() -> Any:
    fakes = SubmitDeps(
        store=create_autospec(JobStore, instance=True),
        gate=create_autospec(CapacityGate, instance=True),
        provider=create_autospec(MusicGptClient, instance=True),
        inputs=create_autospec(InputObjects, instance=True),
        links=create_autospec(WebhookLinks, instance=True),
        events=create_autospec(EventPublisher, instance=True),
        admission=create_autospec(JobQueue, instance=True),
        mode=SubmitMode.AUDIO_URL,
        max_attempts=3,
    )
    fakes.store.create_claimed.return_value = job()
    fakes.store.create_queued.return_value = job(JobStatus.QUEUED, attempts=0)
    fakes.gate.wait_reason.return_value = None
    fakes.gate.try_acquire.return_value = Slot(rate_limit_streak=0)
    fakes.inputs.presigned_url.return_value = "https://in-bucket.s3.amazonaws.com/uploads/take%201.wav?sig"
    fakes.links.url_for.return_value = "https://api.example/webhooks/j/t"
    fakes.provider.submit_denoise.return_value = RESULT
    return fakes


def test_new_object_is_submitted_once_with_its_links(deps: Any) -> None:
    report = handle_new_object(SOURCE, deps)

    assert report.outcome is Outcome.SUBMITTED
    deps.provider.submit_denoise.assert_called_once_with(
        audio_url="https://in-bucket.s3.amazonaws.com/uploads/take%201.wav?sig",
        webhook_url="https://api.example/webhooks/j/t",
    )
    deps.store.mark_submitted.assert_called_once_with(SOURCE.job_id, RESULT)
    deps.gate.record_success.assert_not_called()  # no back-off streak to reset: no extra write


def test_a_twin_that_cannot_claim_the_job_submits_nothing(deps: Any) -> None:
    deps.store.create_claimed.return_value = None
    deps.store.claim.return_value = None
    deps.store.find.return_value = job(JobStatus.SUBMITTED)

    report = handle_new_object(SOURCE, deps)

    assert report.outcome is Outcome.DUPLICATE
    deps.provider.submit_denoise.assert_not_called()
    deps.gate.try_acquire.assert_not_called()


def test_skipped_objects_create_no_job(deps: Any) -> None:
    report = handle_new_object(SourceObject("b", "notes.txt", 10), deps)

    assert report.outcome is Outcome.SKIPPED
    deps.store.create_claimed.assert_not_called()


def test_no_free_slot_creates_the_job_queued_in_one_write(deps: Any) -> None:
    deps.gate.wait_reason.return_value = "waiting for a free provider slot"

    report = handle_new_object(SOURCE, deps)

    assert report.outcome is Outcome.QUEUED
    deps.store.create_queued.assert_called_once_with(SOURCE, "waiting for a free provider slot")
    deps.store.create_claimed.assert_not_called()
    deps.store.mark_queued.assert_not_called()
    deps.gate.try_acquire.assert_not_called()  # no write on the capacity record either
    deps.provider.submit_denoise.assert_not_called()


def test_a_redelivered_event_of_a_queued_job_leaves_it_queued(deps: Any) -> None:
    deps.gate.wait_reason.return_value = "waiting for a free provider slot"
    deps.store.create_queued.return_value = None
    deps.store.claim.return_value = job(JobStatus.QUEUED)

    report = handle_new_object(SOURCE, deps)

    assert report.outcome is Outcome.QUEUED
    deps.store.mark_queued.assert_called_once_with(SOURCE.job_id, "waiting for a free provider slot")
    deps.provider.submit_denoise.assert_not_called()


def test_losing_the_last_slot_to_a_twin_queues(deps: Any) -> None:
    deps.gate.try_acquire.return_value = None

    report = handle_new_object(SOURCE, deps)

    assert report.outcome is Outcome.QUEUED
    deps.provider.submit_denoise.assert_not_called()


def test_rate_limit_queues_pauses_and_schedules_a_wake_up(deps: Any) -> None:
    deps.provider.submit_denoise.side_effect = ProviderRateLimited("HTTP 429: busy", retry_after=7.0)
    deps.gate.pause.return_value = Pause("2026-11-24T10:00:07.000000Z", 7.0)

    report = handle_new_object(SOURCE, deps)

    assert report.outcome is Outcome.QUEUED
    deps.gate.release.assert_called_once_with(SOURCE.job_id)
    deps.gate.pause.assert_called_once_with("HTTP 429: busy", 7.0)
    deps.admission.enqueue.assert_called_once_with(SOURCE.job_id, delay_seconds=7.0)
    assert "429" in deps.store.mark_queued.call_args.args[1]


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ProviderRejectedError("HTTP 422: bad audio", status_code=422), ErrorCode.PROVIDER_REJECTED),
        (ProviderAuthError("HTTP 401: bad key", status_code=401), ErrorCode.PROVIDER_AUTH),
        (ProviderCreditsError("HTTP 402: no credits", status_code=402), ErrorCode.INSUFFICIENT_CREDITS),
    ],
)
def test_permanent_refusal_fails_the_job_frees_the_slot_and_announces(deps: Any, error: Exception, code: str) -> None:
    deps.provider.submit_denoise.side_effect = error
    deps.gate.release.return_value = True
    deps.store.mark_failed.return_value = failed(code, str(error))

    report = handle_new_object(SOURCE, deps)

    assert report.outcome is Outcome.FAILED
    assert deps.store.mark_failed.call_args.args[1] == code
    deps.gate.release.assert_called_once_with(SOURCE.job_id)
    deps.events.job_finished.assert_called_once_with(deps.store.mark_failed.return_value)
    deps.store.mark_event_published.assert_called_once_with(SOURCE.job_id)


def test_a_file_the_provider_refuses_lets_the_next_job_in(deps: Any) -> None:
    deps.provider.submit_denoise.side_effect = ProviderRejectedError("HTTP 422: bad audio", status_code=422)
    deps.gate.release.return_value = True
    deps.store.mark_failed.return_value = failed(ErrorCode.PROVIDER_REJECTED, "bad audio")

    handle_new_object(SOURCE, deps)

    deps.admission.enqueue.assert_called_once_with(SOURCE.job_id)
    deps.gate.pause.assert_not_called()


@pytest.mark.parametrize(
    "error",
    [ProviderAuthError("HTTP 401: bad key", status_code=401), ProviderCreditsError("HTTP 402: none", status_code=402)],
)
def test_an_account_problem_holds_the_queue_instead_of_failing_it(deps: Any, error: Exception) -> None:
    deps.provider.submit_denoise.side_effect = error
    deps.gate.release.return_value = True
    deps.store.mark_failed.return_value = failed(ErrorCode.PROVIDER_AUTH, str(error))

    handle_new_object(SOURCE, deps)

    deps.admission.enqueue.assert_not_called()  # waking the queue would fail the next job the same way
    assert deps.gate.pause.call_args.args[1] == 300.0


def test_transient_failure_gives_everything_back_and_raises(deps: Any) -> None:
    deps.provider.submit_denoise.side_effect = ProviderRetryableError("HTTP 503: down", status_code=503)

    with pytest.raises(ProviderRetryableError):
        handle_new_object(SOURCE, deps)

    deps.gate.release.assert_called_once_with(SOURCE.job_id)
    deps.store.release_lease.assert_called_once_with(SOURCE.job_id)
    deps.store.mark_failed.assert_not_called()
    deps.admission.enqueue.assert_not_called()  # no wake-up loop while the provider is down


def test_too_many_attempts_fail_the_job_without_calling_the_provider(deps: Any) -> None:
    deps.store.mark_failed.return_value = failed(ErrorCode.SUBMIT_ATTEMPTS_EXHAUSTED, "gave up")

    report = submit_claimed(job(attempts=4), deps)

    assert report.outcome is Outcome.FAILED
    assert deps.store.mark_failed.call_args.args[1] == ErrorCode.SUBMIT_ATTEMPTS_EXHAUSTED
    deps.provider.submit_denoise.assert_not_called()


def test_admission_stops_at_the_first_job_that_has_to_wait(deps: Any) -> None:
    queued = [job(JobStatus.QUEUED) for _ in range(3)]
    deps.gate.free_slots.return_value = 2
    deps.store.list_by_status.return_value = iter(queued)
    deps.store.claim.side_effect = queued
    deps.gate.wait_reason.side_effect = [None, "waiting for a free provider slot"]

    assert admit_queued(deps) == 1
    assert deps.provider.submit_denoise.call_count == 1
    assert deps.store.claim.call_count == 2


def test_admission_claims_no_more_jobs_than_it_has_slots(deps: Any) -> None:
    queued = [job(JobStatus.QUEUED) for _ in range(2)]
    deps.gate.free_slots.return_value = 1
    deps.store.list_by_status.return_value = iter(queued)
    deps.store.claim.side_effect = queued

    assert admit_queued(deps) == 1
    assert deps.store.claim.call_count == 1
    deps.store.mark_queued.assert_not_called()


def test_admission_does_nothing_without_a_free_slot(deps: Any) -> None:
    deps.gate.free_slots.return_value = 0

    assert admit_queued(deps) == 0
    deps.store.list_by_status.assert_not_called()
