"""The SQS event source mapping (QueuePoller) against a real moto queue with a redrive policy, and the HTTP API
(Gateway) on a real socket. The functions behind them are fakes: what is tested is the event source and the API."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
import requests
from moto import mock_aws

from local import gateway as gateway_module
from local.aws.template import QueueSource
from local.gateway import Gateway
from local.lambdas.event_sources import QueuePoller
from tests.fake_functions import FakeFunction, FakeResult, error, ok

WAIT = 8.0  # deadline for what should happen within a few polls
MAX_RECEIVE_COUNT = 2
ROUTE = "/webhooks/{job_id}/{token}"


def bodies(records: list[dict[str, Any]]) -> list[str]:
    return sorted(record["body"] for record in records)


def wait_until(condition: Callable[[], bool], timeout: float = WAIT, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


# --- QueuePoller against moto ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Queues:
    sqs: Any
    url: str
    arn: str
    dlq_url: str

    def send(self, *messages: str) -> None:
        for body in messages:
            self.sqs.send_message(QueueUrl=self.url, MessageBody=body)

    def counts(self, url: str | None = None) -> tuple[int, int]:
        """(visible, in flight) messages of the queue (the main queue by default)."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=url or self.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])

    def empty(self) -> bool:
        return self.counts() == (0, 0)


@pytest.fixture
def queues(aws_credentials: None) -> Iterator[Queues]:
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        dlq_url = sqs.create_queue(QueueName="jobs-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)}
        # Longer than the pollers' retry_delay, so a failed message back within ~1 s shows the poller's change.
        url = sqs.create_queue(
            QueueName="jobs", Attributes={"VisibilityTimeout": "5", "RedrivePolicy": json.dumps(redrive)}
        )["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        yield Queues(sqs, url, arn, dlq_url)


StartPoller = Callable[..., QueuePoller]


@pytest.fixture
def start_poller(queues: Queues) -> Iterator[StartPoller]:
    stop = threading.Event()
    pollers: list[QueuePoller] = []

    def start(
        function: FakeFunction,
        *,
        batch_size: int = 10,
        batching_window_seconds: float = 0.0,
        reports_item_failures: bool = False,
        concurrency: int = 1,
        retry_delay: float = 1.0,
    ) -> QueuePoller:
        source = QueueSource(
            logical_id="JobsQueueMapping",
            function="WorkerFunction",
            queue="JobsQueue",
            batch_size=batch_size,
            batching_window_seconds=batching_window_seconds,
            reports_item_failures=reports_item_failures,
            maximum_concurrency=concurrency,
        )
        poller = QueuePoller(
            source,
            function,
            queue_url=queues.url,
            queue_arn=queues.arn,
            role_sqs=queues.sqs,
            platform_sqs=queues.sqs,
            concurrency=concurrency,
            retry_delay=retry_delay,
            stop=stop,
        )
        pollers.append(poller)
        return poller

    yield start
    stop.set()
    threads = [thread for poller in pollers for thread in poller.threads]
    # A poller sees the stop between long polls (1 s each); a message ends the current poll at once.
    queues.send(*("wake-up" for _ in threads))
    for thread in threads:
        thread.join(timeout=5)
    assert not [thread.name for thread in threads if thread.is_alive()], "pollers still running after stop"


@pytest.mark.parametrize(
    "answer",
    [None, {"batchItemFailures": [{"itemIdentifier": "ignored"}]}],
    ids=["null-answer", "item-failures-ignored-when-not-reported"],
)
def test_successful_batch_is_deleted(queues: Queues, start_poller: StartPoller, answer: Any) -> None:
    queues.send("a", "b", "c")
    function = FakeFunction(respond=lambda event, n: ok(answer))

    start_poller(function)

    assert wait_until(lambda: queues.empty() and len(function.calls) >= 1)
    records = [record for batch in function.batches() for record in batch]
    assert bodies(records) == ["a", "b", "c"]
    assert {record["attributes"]["ApproximateReceiveCount"] for record in records} == {"1"}
    assert all(record["eventSourceARN"] == queues.arn for record in records)
    assert queues.counts(queues.dlq_url) == (0, 0)


def test_reported_item_failure_comes_back_and_the_others_are_deleted(queues: Queues, start_poller: StartPoller) -> None:
    queues.send("a", "b", "c")

    def respond(event: Any, n: int) -> FakeResult:
        failing = [
            {"itemIdentifier": record["messageId"]}
            for record in event["Records"]
            if record["body"] == "b" and record["attributes"]["ApproximateReceiveCount"] == "1"
        ]
        return ok({"batchItemFailures": failing})

    function = FakeFunction(respond=respond)
    start_poller(function, reports_item_failures=True, retry_delay=1.0)

    calls = function.wait_until(lambda calls: len(calls) >= 2, timeout=WAIT)
    assert wait_until(queues.empty)
    time.sleep(0.2)  # room for a redelivery that must not come

    assert len(function.calls) == 2
    first, second = calls[0].event["Records"], calls[1].event["Records"]
    assert bodies(first) == ["a", "b", "c"]
    assert bodies(second) == ["b"]
    assert second[0]["attributes"]["ApproximateReceiveCount"] == "2"
    assert second[0]["messageId"] == next(record["messageId"] for record in first if record["body"] == "b")
    back_after = calls[1].started - calls[0].ended
    assert 0.9 <= back_after < 4.0  # retry_delay (1 s), not the queue's VisibilityTimeout (5 s)


def test_message_failing_every_time_ends_in_the_dead_letter_queue(queues: Queues, start_poller: StartPoller) -> None:
    queues.send("poison")
    function = FakeFunction(respond=lambda event, n: error())

    start_poller(function, retry_delay=1.0)

    assert wait_until(lambda: queues.counts(queues.dlq_url)[0] == 1)
    assert queues.empty()
    dead = queues.sqs.receive_message(QueueUrl=queues.dlq_url, MaxNumberOfMessages=10)["Messages"]
    assert [message["Body"] for message in dead] == ["poison"]
    records = [record for batch in function.batches() for record in batch]
    assert [record["attributes"]["ApproximateReceiveCount"] for record in records] == ["1", "2"]
    assert len(records) == MAX_RECEIVE_COUNT


def test_batch_size_is_respected(queues: Queues, start_poller: StartPoller) -> None:
    queues.send(*(f"m{n}" for n in range(7)))
    function = FakeFunction()

    start_poller(function, batch_size=3)

    assert wait_until(queues.empty)
    sizes = [len(batch) for batch in function.batches()]
    assert max(sizes) == 3
    assert sum(sizes) == 7
    assert bodies([record for batch in function.batches() for record in batch]) == sorted(f"m{n}" for n in range(7))


def test_at_most_concurrency_invocations_at_once(queues: Queues, start_poller: StartPoller) -> None:
    queues.send(*(f"m{n}" for n in range(6)))
    function = FakeFunction(sleep=0.3)

    start_poller(function, batch_size=1, concurrency=2)

    assert wait_until(queues.empty)
    seen = {record["messageId"] for batch in function.batches() for record in batch}
    assert len(seen) == 6
    assert function.max_active == 2


@pytest.mark.parametrize("idle_first", [0.0, 1.5], ids=["poller-just-started", "poller-idle-longer-than-window"])
def test_batching_window_collects_messages_sent_apart(
    queues: Queues, start_poller: StartPoller, idle_first: float
) -> None:
    """Lambda gathers records for up to MaximumBatchingWindowInSeconds before invoking: three messages sent 0.2 s
    apart make one batch, also when they arrive after the poller has waited a while on an empty queue."""
    function = FakeFunction()
    start_poller(function, batch_size=5, batching_window_seconds=1.0)
    time.sleep(idle_first)  # the queue stays empty meanwhile

    for body in ("a", "b", "c"):
        queues.send(body)
        time.sleep(0.2)

    assert wait_until(queues.empty)
    assert [bodies(batch) for batch in function.batches()] == [["a", "b", "c"]]


def test_full_batch_does_not_wait_for_the_window(queues: Queues, start_poller: StartPoller) -> None:
    queues.send(*(f"m{n}" for n in range(5)))
    function = FakeFunction()

    started = time.monotonic()
    start_poller(function, batch_size=3, batching_window_seconds=3.0)

    calls = function.wait_until(lambda calls: len(calls) >= 1, timeout=WAIT)
    assert len(calls[0].event["Records"]) == 3
    assert calls[0].started - started < 1.5  # well before the 3 s window ends


# --- Gateway: the HTTP API ------------------------------------------------------------------------------------------


@dataclass
class Routed:
    """The function the gateway's route holds for the whole module; each test puts its own fake behind it."""

    target: FakeFunction = field(default_factory=FakeFunction)

    def invoke(self, event: Any) -> FakeResult:
        return self.target.invoke(event)


@pytest.fixture(scope="module")
def routed_gateway() -> Iterator[tuple[Gateway, Routed]]:
    routed = Routed()
    api = Gateway(port=0).start({("POST", ROUTE): routed, ("POST", "/other/{x}"): None})
    yield api, routed
    api.stop()


@pytest.fixture
def gateway(routed_gateway: tuple[Gateway, Routed]) -> Gateway:
    return routed_gateway[0]


@pytest.fixture
def webhook(routed_gateway: tuple[Gateway, Routed]) -> FakeFunction:
    routed_gateway[1].target = FakeFunction(respond=lambda event, n: ok({"statusCode": 204}))
    return routed_gateway[1].target


def post(gateway: Gateway, path: str, **kwargs: Any) -> requests.Response:
    return requests.post(f"{gateway.url}{path}", timeout=5, **kwargs)


def test_route_invokes_function_with_payload_v2_event(gateway: Gateway, webhook: FakeFunction) -> None:
    webhook.respond = lambda event, n: ok(
        {"statusCode": 202, "headers": {"content-type": "application/json", "x-job": "job-1"}, "body": '{"ok":true}'}
    )
    body = json.dumps({"task_id": "t-1", "success": True})

    response = post(gateway, "/webhooks/job-1/tok-2", data=body, headers={"Content-Type": "application/json"})

    assert response.status_code == 202
    assert response.headers["x-job"] == "job-1"
    assert response.headers["content-type"] == "application/json"
    assert response.text == '{"ok":true}'
    (call,) = webhook.calls
    event = call.event
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /webhooks/{job_id}/{token}"
    assert event["rawPath"] == "/webhooks/job-1/tok-2"
    assert event["pathParameters"] == {"job_id": "job-1", "token": "tok-2"}
    assert event["body"] == body
    assert event["isBase64Encoded"] is False
    assert event["headers"]["content-type"] == "application/json"
    assert all(name == name.lower() for name in event["headers"])
    context = event["requestContext"]
    assert context["http"]["method"] == "POST"
    assert context["http"]["path"] == "/webhooks/job-1/tok-2"
    assert context["http"]["sourceIp"] == "127.0.0.1"
    assert context["routeKey"] == "POST /webhooks/{job_id}/{token}"
    assert context["stage"] == "$default"
    assert context["requestId"]
    assert isinstance(context["timeEpoch"], int)


def test_binary_request_body_arrives_base64_encoded(gateway: Gateway, webhook: FakeFunction) -> None:
    data = b"\x00\xff\xfe binary"

    response = post(gateway, "/webhooks/j/t", data=data, headers={"Content-Type": "application/octet-stream"})

    assert response.status_code == 204
    (call,) = webhook.calls
    assert call.event["isBase64Encoded"] is True
    assert base64.b64decode(call.event["body"]) == data


def test_base64_encoded_response_body_is_decoded(gateway: Gateway, webhook: FakeFunction) -> None:
    data = b"\x89PNG\r\n\x1a\n\x00\xff"
    webhook.respond = lambda event, n: ok(
        {
            "statusCode": 200,
            "headers": {"content-type": "image/png"},
            "body": base64.b64encode(data).decode(),
            "isBase64Encoded": True,
        }
    )

    response = post(gateway, "/webhooks/j/t", data=b"{}", headers={"Content-Type": "application/json"})

    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content == data


@pytest.mark.parametrize("payload", [{"accepted": True, "n": 1}, ["a", 1]], ids=["object", "list"])
def test_answer_without_status_code_is_200_with_the_answer_as_json_body(
    gateway: Gateway, webhook: FakeFunction, payload: Any
) -> None:
    """Payload format 2.0: without a statusCode, API Gateway assumes 200, application/json, and the function's
    answer as the body."""
    webhook.respond = lambda event, n: ok(payload)

    response = post(gateway, "/webhooks/j/t", data=b"{}", headers={"Content-Type": "application/json"})

    assert response.status_code == 200
    assert response.headers.get("content-type", "").startswith("application/json")
    assert response.json() == payload


def test_function_error_answers_500(gateway: Gateway, webhook: FakeFunction) -> None:
    webhook.respond = lambda event, n: error()

    response = post(gateway, "/webhooks/j/t", json={"a": 1})

    assert response.status_code == 500
    assert response.json() == {"message": "Internal Server Error"}
    assert len(webhook.calls) == 1


@pytest.mark.parametrize(
    "answer",
    [
        {"statusCode": "not-a-number", "body": "x"},
        {"statusCode": 200, "body": "!!not base64!!", "isBase64Encoded": True},
    ],
    ids=["bad-status-code", "bad-base64-body"],
)
def test_malformed_proxy_answer_is_500(gateway: Gateway, webhook: FakeFunction, answer: dict[str, Any]) -> None:
    webhook.respond = lambda event, n: ok(answer)

    response = post(gateway, "/webhooks/j/t", json={"a": 1})

    assert response.status_code == 500
    assert response.json() == {"message": "Internal Server Error"}


def test_route_without_lambda_permission_answers_500(gateway: Gateway, webhook: FakeFunction) -> None:
    response = post(gateway, "/other/x", json={"a": 1})

    assert response.status_code == 500
    assert response.json() == {"message": "Internal Server Error"}
    assert webhook.calls == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/nowhere"),
        ("POST", "/webhooks/j"),
        ("POST", "/webhooks/j/t/extra"),
        ("POST", "/webhooks//t"),
        ("GET", "/webhooks/j/t"),
        ("PUT", "/webhooks/j/t"),
        ("DELETE", "/webhooks/j/t"),
    ],
)
def test_unknown_route_answers_404(gateway: Gateway, webhook: FakeFunction, method: str, path: str) -> None:
    response = requests.request(method, f"{gateway.url}{path}", timeout=5, data=b"{}")

    assert response.status_code == 404
    assert response.json() == {"message": "Not Found"}
    assert webhook.calls == []


def test_query_string_reaches_the_event(gateway: Gateway, webhook: FakeFunction) -> None:
    response = post(gateway, "/webhooks/j/t?attempt=2&source=provider", json={"a": 1})

    assert response.status_code == 204
    (call,) = webhook.calls
    assert call.event["rawPath"] == "/webhooks/j/t"
    assert call.event["pathParameters"] == {"job_id": "j", "token": "t"}
    assert call.event["rawQueryString"] == "attempt=2&source=provider"
    assert call.event["queryStringParameters"] == {"attempt": "2", "source": "provider"}


def test_integration_timeout_answers_503_while_the_invocation_goes_on(
    gateway: Gateway, webhook: FakeFunction, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gateway_module, "INTEGRATION_TIMEOUT_SECONDS", 0.2)
    webhook.sleep = 1.0

    started = time.monotonic()
    response = post(gateway, "/webhooks/j/t", json={"a": 1})
    answered_after = time.monotonic() - started

    assert response.status_code == 503
    assert response.json() == {"message": "Service Unavailable"}
    assert answered_after < 0.9  # did not wait for the function
    calls = webhook.wait_until(lambda calls: len(calls) == 1, timeout=3)
    assert len(calls) == 1  # the invocation ran to its end
