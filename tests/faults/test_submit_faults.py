"""Submit path under faults: duplicated events, every kind of provider failure, Secrets Manager down at cold start.

Each test ends with the job in a known state (SUBMITTED, QUEUED on purpose, or FAILED with a reason), no slot held
by a job that is not at the provider, and never a second job item for the same object.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from werkzeug import Request, Response

from denoise_pipeline import wiring
from denoise_pipeline.clock import utc_now
from denoise_pipeline.handlers import SubmitRetryLater
from tests.conftest import Stack
from tests.faults.harness import (
    assert_settled,
    closed_port,
    deliver,
    frontend,
    job_by_key,
    parse_time,
    put_object,
    race,
    serve_outputs,
    slot_holders,
    unresponsive_port,
)
from tests.file_server import OutputFileServer
from tests.integration.pipeline import callback_payload, post_callback, run_queue
from tests.provider_double import API_PREFIX, ProviderDouble, ok_submit, status

KEY = "uploads/fault take 1.wav"


def assert_waiting_and_free(stack: Stack) -> dict[str, Any]:
    """The failed attempt left the job claimable at once and gave its provider slot back."""
    item = job_by_key(stack, KEY)
    assert item["status"] == "RECEIVED"
    assert "lease_until" not in item
    assert slot_holders(stack) == set()
    return item


def assert_submitted_once(stack: Stack, provider: ProviderDouble) -> dict[str, Any]:
    (item,) = stack.job_items()
    assert item["status"] == "SUBMITTED"
    assert item["task_id"]
    assert slot_holders(stack) == {item["job_id"]}
    return item


# ---------------------------------------------------------------- 1. the same event, ten times at once


def test_same_s3_event_ten_times_concurrently_submits_once(stack: Stack, provider: ProviderDouble) -> None:
    record = put_object(stack, KEY)

    results = race(10, lambda _: deliver(record))

    errors = [result for result in results if isinstance(result, BaseException)]
    assert errors == []
    outcomes = Counter(result["results"][0]["outcome"] for result in results if isinstance(result, dict))
    assert outcomes == {"SUBMITTED": 1, "DUPLICATE": 9}
    assert len(provider.submissions) == 1
    item = assert_submitted_once(stack, provider)
    assert item["submit_attempts"] == 1


# ---------------------------------------------------------------- 2. provider failures


def test_provider_500_then_200_is_retried_inside_the_client(stack: Stack, provider: ProviderDouble) -> None:
    record = put_object(stack, KEY)
    provider.then(status(500, {"message": "internal error"}))

    result = deliver(record)

    assert result["results"][0]["outcome"] == "SUBMITTED"
    assert len(provider.submissions) == 2  # the 500 and its one in-client retry
    assert_submitted_once(stack, provider)


def test_429_with_retry_after_queues_the_job_and_pauses_admission_for_that_long(
    stack: Stack, provider: ProviderDouble
) -> None:
    record = put_object(stack, KEY)
    provider.then(status(429, {"message": "Too many parallel jobs"}, headers={"Retry-After": "7"}))
    before = utc_now()

    started = time.monotonic()
    result = deliver(record)  # returns: capacity is a queue, not an error
    elapsed = time.monotonic() - started

    assert result["results"][0]["outcome"] == "QUEUED"
    assert elapsed < 5, "the Lambda must not sit out the Retry-After itself"
    assert len(provider.submissions) == 1
    item = job_by_key(stack, KEY)
    assert item["status"] == "QUEUED"
    assert "429" in item["queue_reason"]
    assert "Too many parallel jobs" in item["queue_reason"]
    assert "lease_until" not in item
    capacity = _capacity(stack)
    assert slot_holders(stack) == set()
    paused_for = (parse_time(capacity["paused_until"]) - before).total_seconds()
    assert 7 <= paused_for <= 7 + elapsed + 1
    assert "429" in capacity["pause_reason"]
    wake_up = stack.client("sqs").get_queue_attributes(
        QueueUrl=stack.resources.ref("AdmissionQueue"), AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )["Attributes"]
    assert wake_up["ApproximateNumberOfMessagesDelayed"] == "1"  # admission resumes when the pause ends


def test_429_without_retry_after_queues_with_an_exponential_back_off(stack: Stack, provider: ProviderDouble) -> None:
    record = put_object(stack, KEY)
    provider.then(status(429, {"error": "rate limited"}))
    before = utc_now()

    result = deliver(record)
    elapsed = utc_now() - before

    assert result["results"][0]["outcome"] == "QUEUED"
    assert len(provider.submissions) == 1
    item = job_by_key(stack, KEY)
    assert item["status"] == "QUEUED"
    assert "rate limited" in item["queue_reason"]
    capacity = _capacity(stack)
    assert capacity["consecutive_rate_limits"] == 1
    paused_for = parse_time(capacity["paused_until"]) - before
    # base 5 s with jitter in [0.5, 1], counted from the moment the 429 came back (within `elapsed` of `before`)
    assert timedelta(seconds=2.5) <= paused_for <= timedelta(seconds=5) + elapsed


def _capacity(stack: Stack) -> dict[str, Any]:
    from tests.faults.harness import capacity_item

    return capacity_item(stack)


def test_connect_timeout_raises_releases_the_lease_and_a_later_delivery_submits_once(
    stack: Stack, provider: ProviderDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = put_object(stack, KEY)
    with unresponsive_port() as port:
        monkeypatch.setenv("MUSICGPT_API_URL", f"http://127.0.0.1:{port}{API_PREFIX}")
        wiring.reset()
        started = time.monotonic()
        with pytest.raises(SubmitRetryLater, match="ConnectTimeout"):
            deliver(record)
        assert time.monotonic() - started < 5  # 0.5 s connect timeout, one retry

    assert_waiting_and_free(stack)
    assert provider.submissions == []

    monkeypatch.setenv("MUSICGPT_API_URL", provider.base_url)
    wiring.reset()  # Lambda's retry lands in a container that reaches the provider
    assert deliver(record)["results"][0]["outcome"] == "SUBMITTED"
    assert len(provider.submissions) == 1
    assert assert_submitted_once(stack, provider)["submit_attempts"] == 2


def test_connection_refused_raises_and_a_later_delivery_submits_once(
    stack: Stack, provider: ProviderDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = put_object(stack, KEY)
    with closed_port() as port:
        monkeypatch.setenv("MUSICGPT_API_URL", f"http://127.0.0.1:{port}{API_PREFIX}")
        wiring.reset()
        with pytest.raises(SubmitRetryLater, match="provider unreachable"):
            deliver(record)

    assert_waiting_and_free(stack)
    monkeypatch.setenv("MUSICGPT_API_URL", provider.base_url)
    wiring.reset()
    deliver(record)
    assert len(provider.submissions) == 1
    assert_submitted_once(stack, provider)


def test_read_timeout_is_not_retried_in_the_client_and_the_next_delivery_resubmits(
    stack: Stack, provider: ProviderDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read timeout on POST /denoise is deliberately not retried inside the client: the provider may have
    created the job. The invocation raises, the job stays RECEIVED with its lease released, and Lambda's retry
    submits again. If the first request did create a provider task, that task is an orphan: it costs credits,
    and its webhook is refused with 409 because its task_id is not the one the job recorded (nothing changes).
    MusicGPT offers no idempotency key, so this at-least-once window is accepted and kept this narrow.
    """
    monkeypatch.setenv("PROVIDER_READ_TIMEOUT_SECONDS", "0.4")
    wiring.reset()
    record = put_object(stack, KEY)
    orphan: dict[str, str] = {}

    def slow(request: Request) -> Response:
        time.sleep(1.0)
        response = ok_submit(request)
        orphan["task_id"] = __import__("json").loads(response.get_data())["task_id"]
        return response

    provider.then(slow)

    with pytest.raises(SubmitRetryLater, match="ReadTimeout"):
        deliver(record)

    assert len(provider.submissions) == 1  # not retried inside the client
    item = assert_waiting_and_free(stack)
    job_id = item["job_id"]

    time.sleep(0.8)  # the slow answer goes out to nobody
    assert deliver(record)["results"][0]["outcome"] == "SUBMITTED"
    assert len(provider.submissions) == 2  # the documented at-least-once window
    item = assert_submitted_once(stack, provider)
    assert item["task_id"] != orphan["task_id"]

    answer = post_callback(job_id, callback_payload(orphan["task_id"], {}))
    assert answer["statusCode"] == 409
    assert job_by_key(stack, KEY) == item


def test_read_timeout_then_the_providers_callback_adopts_its_task_instead_of_submitting_again(
    stack: Stack, provider: ProviderDouble, files: OutputFileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other order of the window above: the provider took the job, our read timed out, and its callback
    arrives before any retry. The callback is kept, the job adopts its task and completes: nothing is paid twice."""
    monkeypatch.setenv("PROVIDER_READ_TIMEOUT_SECONDS", "0.4")
    wiring.reset()
    record = put_object(stack, KEY)
    taken: dict[str, str] = {}

    def slow(request: Request) -> Response:
        time.sleep(1.0)
        response = ok_submit(request)
        taken["task_id"] = json.loads(response.get_data())["task_id"]
        return response

    provider.then(slow)
    with pytest.raises(SubmitRetryLater, match="ReadTimeout"):
        deliver(record)
    job_id = assert_waiting_and_free(stack)["job_id"]
    time.sleep(0.8)  # the provider's answer went out to nobody; now it calls back

    answer = post_callback(job_id, callback_payload(taken["task_id"], serve_outputs(files)))

    assert answer["statusCode"] == 202
    assert answer["json"]["kept"] is True
    run_queue(stack, "AdmissionQueue")  # the kept callback resumes the job at once
    item = job_by_key(stack, KEY)
    assert item["status"] == "COPYING"
    assert item["task_id"] == taken["task_id"]
    assert deliver(record)["results"][0]["outcome"] == "DUPLICATE"  # Lambda's own retry changes nothing
    run_queue(stack, "CopyQueue")
    assert job_by_key(stack, KEY)["status"] == "COMPLETED"
    assert len(provider.submissions) == 1
    assert_settled(stack)


@pytest.mark.parametrize(
    ("case", "answer", "message"),
    [
        ("malformed json", status(200, "{'task_id': oops"), "non-JSON"),
        ("json without task_id", status(200, {"success": True}), "no task_id"),
        ("a redirect", status(302, "moved", headers={"Location": "https://elsewhere.example/denoise"}), "HTTP 302"),
    ],
)
def test_a_yes_we_cannot_read_fails_the_job_instead_of_paying_twice(
    stack: Stack, provider: ProviderDouble, case: str, answer: Any, message: str
) -> None:
    """The provider may have created the job: it is not sent again; it fails with the answer kept on it."""
    record = put_object(stack, KEY)
    provider.then(answer)

    result = deliver(record)

    assert result["results"][0]["outcome"] == "FAILED"
    item = job_by_key(stack, KEY)
    assert item["status"] == "FAILED"
    assert item["error_code"] == "PROVIDER_ANSWER_UNREADABLE"
    assert re.search(message, item["error_message"])
    assert item["last_surprise"]["where"] == "submit"
    assert item["last_surprise"]["answer"]
    assert slot_holders(stack) == set()
    assert deliver(record)["results"][0]["outcome"] == "DUPLICATE"
    assert len(provider.submissions) == 1


def test_an_html_error_page_is_retryable_and_the_job_is_not_lost(stack: Stack, provider: ProviderDouble) -> None:
    record = put_object(stack, KEY)
    page = "<html><body><h1>502 Bad Gateway</h1></body></html>"
    provider.then(*[lambda _: Response(page, 502, content_type="text/html")] * 2)

    with pytest.raises(SubmitRetryLater, match="HTTP 502: .*502 Bad Gateway"):
        deliver(record)

    assert len(provider.submissions) == 2
    assert_waiting_and_free(stack)
    deliver(record)
    assert len(provider.submissions) == 3
    assert assert_submitted_once(stack, provider)["submit_attempts"] == 2


def test_connection_reset_is_retryable_and_the_same_container_recovers(
    stack: Stack, provider: ProviderDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = put_object(stack, KEY)
    with frontend(provider.base_url) as front:
        monkeypatch.setenv("MUSICGPT_API_URL", f"http://127.0.0.1:{front.port}{API_PREFIX}")
        wiring.reset()
        with pytest.raises(SubmitRetryLater, match="provider unreachable"):
            deliver(record)
        assert front.connections >= 1
        assert_waiting_and_free(stack)
        assert provider.submissions == []

        front.mode = "forward"
        deliver(record)

    assert len(provider.submissions) == 1
    assert_submitted_once(stack, provider)


def test_401_fails_the_job_at_once_without_a_retry_storm(stack: Stack, provider: ProviderDouble) -> None:
    record = put_object(stack, KEY)
    provider.default_submit = status(401, {"message": "Invalid API key"})

    result = deliver(record)
    again = deliver(record)  # a duplicate delivery does not try again either

    assert result["results"][0]["outcome"] == "FAILED"
    assert again["results"][0]["outcome"] == "DUPLICATE"
    assert len(provider.submissions) == 1
    item = job_by_key(stack, KEY)
    assert item["status"] == "FAILED"
    assert item["error_code"] == "PROVIDER_AUTH"
    assert "Invalid API key" in item["error_message"]
    assert slot_holders(stack) == set()
    (event,) = stack.published_events()
    assert event["detail-type"] == "Denoise Job Failed"
    assert event["detail"]["error"]["code"] == "PROVIDER_AUTH"


# ---------------------------------------------------------------- 7. Secrets Manager down at cold start


def test_api_key_secret_unavailable_at_cold_start_raises_clearly_and_the_retry_submits_once(
    stack: Stack, provider: ProviderDouble
) -> None:
    secrets = stack.client("secretsmanager")
    secret_id = stack.resources.ref("MusicGptApiKeySecret")
    secrets.delete_secret(SecretId=secret_id, RecoveryWindowInDays=7)  # unreadable until restored
    record = put_object(stack, KEY)

    with pytest.raises(SubmitRetryLater) as raised:
        deliver(record)

    message = str(raised.value)
    assert secret_id in message
    assert "deleted" in message.lower() or "marked for deletion" in message.lower()
    assert provider.submissions == []
    assert_waiting_and_free(stack)

    secrets.restore_secret(SecretId=secret_id)
    assert deliver(record)["results"][0]["outcome"] == "SUBMITTED"
    assert len(provider.submissions) == 1
    assert provider.submissions[0].headers["Authorization"] == "test-api-key-0123456789"
    assert_submitted_once(stack, provider)
