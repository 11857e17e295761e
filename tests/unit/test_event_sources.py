"""Lambda's event sources as the local stack emulates them (local/lambdas/event_sources.py): how an SQS batch answer is
read, asynchronous invocation with its retries and on-failure destination, and the events Lambda builds.

The function under the event source is a fake: what is tested is the event source, not the function."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from local.aws.template import REGION, AsyncInvokeConfig
from local.lambdas.event_sources import AsyncInvoker, _failed_items, as_eventbridge_sends_it, lambda_sqs_event
from tests.fake_functions import WAIT, FakeFunction, FakeResult, error, ok

FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:denoise-test-ReconcileFunction"
ON_FAILURE_ARN = "arn:aws:sqs:us-east-1:123456789012:reconcile-failures"
QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:jobs"


def fails_first(times: int) -> Callable[[Any, int], FakeResult]:
    return lambda event, n: error(request_id=f"req-{n}") if n < times else ok(request_id=f"req-{n}")


# --- _failed_items: Lambda's reading of an SQS batch answer ---------------------------------------------------------

BATCH = [{"MessageId": f"id-{n}", "ReceiptHandle": f"rh-{n}", "Body": f"body {n}"} for n in range(3)]
EVERY_ID = {"id-0", "id-1", "id-2"}


def failures(*items: Any) -> dict[str, Any]:
    return {"batchItemFailures": list(items)}


@pytest.mark.parametrize(
    ("result", "reports_item_failures", "expected"),
    [
        # A function error fails the whole batch, whatever the payload and the setting.
        pytest.param(error(), True, EVERY_ID, id="error-reports-on"),
        pytest.param(error(), False, EVERY_ID, id="error-reports-off"),
        pytest.param(error(failures()), True, EVERY_ID, id="error-with-empty-failure-list"),
        # Without ReportBatchItemFailures, Lambda ignores the answer: success is success.
        pytest.param(ok(), False, set(), id="reports-off-success"),
        pytest.param(ok(failures({"itemIdentifier": "id-1"})), False, set(), id="reports-off-ignores-listed-ids"),
        pytest.param(ok(failures({"itemIdentifier": "nope"})), False, set(), id="reports-off-ignores-bad-ids"),
        # Complete success: empty or null list, empty or null response.
        pytest.param(ok(failures()), True, set(), id="empty-list"),
        pytest.param(ok({"batchItemFailures": None}), True, set(), id="null-list"),
        pytest.param(ok({}), True, set(), id="empty-response"),
        pytest.param(ok(None), True, set(), id="null-response"),
        # The listed ids fail, the others succeed.
        pytest.param(ok(failures({"itemIdentifier": "id-1"})), True, {"id-1"}, id="one-listed"),
        pytest.param(
            ok(failures({"itemIdentifier": "id-2"}, {"itemIdentifier": "id-0"})),
            True,
            {"id-0", "id-2"},
            id="two-listed",
        ),
        pytest.param(ok(failures(*({"itemIdentifier": i} for i in sorted(EVERY_ID)))), True, EVERY_ID, id="all-listed"),
        # Complete failure: an id that is not in the batch, an empty or null id, a bad key name, a bad item.
        pytest.param(ok(failures({"itemIdentifier": "id-9"})), True, EVERY_ID, id="unknown-id"),
        pytest.param(
            ok(failures({"itemIdentifier": "id-1"}, {"itemIdentifier": "id-9"})), True, EVERY_ID, id="known-and-unknown"
        ),
        pytest.param(ok(failures({"itemIdentifier": ""})), True, EVERY_ID, id="empty-id"),
        pytest.param(ok(failures({"itemIdentifier": None})), True, EVERY_ID, id="null-id"),
        pytest.param(ok(failures({})), True, EVERY_ID, id="missing-id"),
        pytest.param(ok(failures({"itemidentifier": "id-1"})), True, EVERY_ID, id="bad-key-name"),
        pytest.param(ok(failures("id-1")), True, EVERY_ID, id="item-not-an-object"),
        # A batchItemFailures that is not a list is an invalid response: complete failure.
        pytest.param(ok({"batchItemFailures": "id-1"}), True, EVERY_ID, id="list-is-a-string"),
        pytest.param(ok({"batchItemFailures": {"itemIdentifier": "id-1"}}), True, EVERY_ID, id="list-is-an-object"),
        pytest.param(ok({"batchItemFailures": 5}), True, EVERY_ID, id="list-is-a-number"),
        # A successful answer that is not an object carries no failures.
        pytest.param(ok([{"itemIdentifier": "id-1"}]), True, set(), id="payload-list"),
        pytest.param(ok("id-1"), True, set(), id="payload-string"),
    ],
)
def test_failed_items_follow_lambda_partial_batch_rules(
    result: FakeResult, reports_item_failures: bool, expected: set[str]
) -> None:
    assert _failed_items(result, BATCH, reports_item_failures=reports_item_failures) == expected


@given(
    data=st.data(),
    ids=st.lists(st.uuids().map(str), min_size=1, max_size=10, unique=True),
)
def test_exactly_the_listed_subset_fails(data: st.DataObject, ids: list[str]) -> None:
    batch = [{"MessageId": message_id, "ReceiptHandle": f"rh-{message_id}", "Body": "{}"} for message_id in ids]
    listed = data.draw(st.lists(st.sampled_from(ids), unique=True), label="listed")
    answer = ok(failures(*({"itemIdentifier": message_id} for message_id in listed)))

    assert _failed_items(answer, batch, reports_item_failures=True) == set(listed)


# --- AsyncInvoker: retries, event age, on-failure destination -------------------------------------------------------


@dataclass
class Destination:
    """What the invoker sends to its on-failure destination."""

    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def send(self, arn: str, body: str) -> None:
        with self._cond:
            self.sent.append((arn, json.loads(body)))
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = WAIT) -> list[tuple[str, dict[str, Any]]]:
        with self._cond:
            self._cond.wait_for(lambda: len(self.sent) >= count, timeout)
            return list(self.sent)


MakeInvoker = Callable[..., tuple[AsyncInvoker, Destination]]


@pytest.fixture
def make_invoker() -> Iterator[MakeInvoker]:
    stop = threading.Event()
    invokers: list[AsyncInvoker] = []

    def make(
        function: FakeFunction,
        *,
        config: AsyncInvokeConfig | None = None,
        retry_delay: float = 0.05,
        workers: int = 1,
    ) -> tuple[AsyncInvoker, Destination]:
        destination = Destination()
        invoker = AsyncInvoker(
            function,
            function_arn=FUNCTION_ARN,
            config=config or AsyncInvokeConfig(maximum_retry_attempts=2, on_failure_arn=ON_FAILURE_ARN),
            send_to_destination=destination.send,
            workers=workers,
            retry_delay=retry_delay,
            stop=stop,
        )
        invokers.append(invoker)
        return invoker, destination

    yield make
    stop.set()
    for invoker in invokers:
        invoker.cancel_retries()
        for thread in invoker.threads:
            thread.join(timeout=2)


def settle(seconds: float = 0.3) -> None:
    """Leaves time for an invocation that must not happen: the next retry would come within `seconds`."""
    time.sleep(seconds)


@pytest.mark.parametrize("failures_first", [0, 1, 2, 3, 5])
def test_retries_until_success_at_most_maximum_retry_attempts(make_invoker: MakeInvoker, failures_first: int) -> None:
    function = FakeFunction(respond=fails_first(failures_first))
    invoker, destination = make_invoker(function)
    event = {"source": "test", "n": failures_first}

    invoker.submit(event)
    expected = min(failures_first + 1, 3)
    function.wait_for_calls(expected)
    if failures_first >= 3:
        destination.wait_for(1)
    settle()

    assert function.events == [event] * expected
    assert len(destination.sent) == (1 if failures_first >= 3 else 0)


def test_retries_exhausted_sends_lambda_destination_record(make_invoker: MakeInvoker) -> None:
    last_error = {"errorMessage": "third", "errorType": "ValueError", "stackTrace": []}
    function = FakeFunction(respond=lambda event, n: error(last_error if n == 2 else None, request_id=f"req-{n}"))
    invoker, destination = make_invoker(function)
    event = {"version": "0", "id": "e-1", "detail-type": "Scheduled Event", "detail": {"k": [1, 2]}}

    invoker.submit(event)
    sent = destination.wait_for(1)
    settle()

    assert len(function.calls) == 3
    assert len(destination.sent) == 1
    arn, record = sent[0]
    assert arn == ON_FAILURE_ARN
    assert record["version"] == "1.0"
    assert time.strptime(record["timestamp"], "%Y-%m-%dT%H:%M:%S.000Z")
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert record["requestContext"]["functionArn"] == f"{FUNCTION_ARN}:$LATEST"
    assert record["requestContext"]["requestId"]
    assert record["requestPayload"] == event
    assert record["responseContext"]["functionError"] == "Unhandled"
    assert record["responseContext"]["statusCode"] == 200
    assert record["responseContext"]["executedVersion"] == "$LATEST"
    assert record["responsePayload"] == last_error


def test_no_on_failure_destination_sends_nothing(make_invoker: MakeInvoker) -> None:
    function = FakeFunction(respond=lambda event, n: error())
    invoker, destination = make_invoker(function, config=AsyncInvokeConfig(maximum_retry_attempts=2))

    invoker.submit({"n": 1})
    function.wait_for_calls(3)
    settle()

    assert len(function.calls) == 3
    assert destination.sent == []


def test_zero_retry_attempts_invokes_once(make_invoker: MakeInvoker) -> None:
    function = FakeFunction(respond=lambda event, n: error())
    config = AsyncInvokeConfig(maximum_retry_attempts=0, on_failure_arn=ON_FAILURE_ARN)
    invoker, destination = make_invoker(function, config=config)

    invoker.submit({"n": 1})
    sent = destination.wait_for(1)
    settle()

    assert len(function.calls) == 1
    assert sent[0][1]["requestContext"]["approximateInvokeCount"] == 1


def test_event_older_than_maximum_age_is_not_retried(make_invoker: MakeInvoker) -> None:
    """The first retry would come 1.2 s after the event arrived, past its maximum age of 1 s."""
    function = FakeFunction(respond=lambda event, n: error())
    config = AsyncInvokeConfig(maximum_retry_attempts=2, maximum_event_age_seconds=1, on_failure_arn=ON_FAILURE_ARN)
    invoker, destination = make_invoker(function, config=config, retry_delay=1.2)
    event = {"n": "aged"}

    invoker.submit(event)
    sent = destination.wait_for(1)
    settle(0.5)

    assert len(function.calls) == 1
    assert len(sent) == 1
    arn, record = sent[0]
    assert arn == ON_FAILURE_ARN
    assert record["requestContext"]["condition"] == "EventAgeExceeded"
    assert record["requestContext"]["approximateInvokeCount"] == 1
    assert record["requestPayload"] == event


def test_retries_wait_retry_delay_times_attempt(make_invoker: MakeInvoker) -> None:
    function = FakeFunction(respond=lambda event, n: error())
    invoker, destination = make_invoker(function, retry_delay=0.1)

    invoker.submit({"n": 1})
    destination.wait_for(1)
    calls = function.calls

    assert len(calls) == 3
    first_gap = calls[1].started - calls[0].ended
    second_gap = calls[2].started - calls[1].ended
    assert first_gap >= 0.1 - 0.01  # retry_delay × 1
    assert second_gap >= 0.2 - 0.01  # retry_delay × 2


def test_a_waiting_retry_does_not_hold_a_worker(make_invoker: MakeInvoker) -> None:
    """With one worker, an event submitted after a failing one runs before the failing one's retries."""
    function = FakeFunction(respond=lambda event, n: error() if event == "failing" else ok())
    invoker, destination = make_invoker(function, retry_delay=0.1, workers=1)

    invoker.submit("failing")
    invoker.submit("fine")
    destination.wait_for(1)
    settle()

    assert function.events == ["failing", "fine", "failing", "failing"]


def test_workers_invoke_concurrently(make_invoker: MakeInvoker) -> None:
    function = FakeFunction(sleep=0.3)
    invoker, _ = make_invoker(function, workers=2)

    started = time.monotonic()
    invoker.submit({"n": 1})
    invoker.submit({"n": 2})
    calls = function.wait_for_calls(2)
    elapsed = time.monotonic() - started

    assert len(calls) == 2
    assert function.max_active == 2
    assert elapsed < 0.55


def test_an_invoke_that_raises_does_not_stop_the_worker(make_invoker: MakeInvoker) -> None:
    """`Function.invoke` can raise (LocalFunction raises once closed, an environment can fail to start): the queue
    must still be drained, or one such error silently stops every later asynchronous invocation."""

    def respond(event: Any, n: int) -> FakeResult:
        if event == "raises":
            raise RuntimeError("environment failed to start")
        return ok()

    function = FakeFunction(respond=respond)
    invoker, _ = make_invoker(function, workers=1, config=AsyncInvokeConfig(maximum_retry_attempts=0))

    invoker.submit("raises")
    invoker.submit("later")
    function.wait_for_calls(2, timeout=2)

    assert "later" in function.events


# --- lambda_sqs_event: the event Lambda builds from received messages -----------------------------------------------


def received(n: int, **extra: Any) -> dict[str, Any]:
    """A message as boto3's receive_message returns it."""
    body = json.dumps({"job": n})
    return {
        "MessageId": f"0b9f1c2e-0000-4000-8000-00000000000{n}",
        "ReceiptHandle": f"AQEB-receipt-{n}",
        "MD5OfBody": hashlib.md5(body.encode()).hexdigest(),  # noqa: S324 - SQS's own checksum
        "Body": body,
        "Attributes": {
            "SenderId": "AIDAEXAMPLE",
            "SentTimestamp": "1700000000000",
            "ApproximateReceiveCount": str(n),
            "ApproximateFirstReceiveTimestamp": "1700000000100",
        },
        **extra,
    }


def test_sqs_event_records_have_lambda_shape() -> None:
    messages = [
        received(1, MessageAttributes={"kind": {"StringValue": "denoise", "DataType": "String"}}),
        received(2),
    ]

    event = lambda_sqs_event(QUEUE_ARN, messages)

    assert list(event) == ["Records"]
    assert [record["messageId"] for record in event["Records"]] == [m["MessageId"] for m in messages]
    for record, message in zip(event["Records"], messages, strict=True):
        assert record["receiptHandle"] == message["ReceiptHandle"]
        assert record["body"] == message["Body"]
        assert record["attributes"] == message["Attributes"]
        assert record["md5OfBody"] == message["MD5OfBody"]
        assert record["eventSource"] == "aws:sqs"
        assert record["eventSourceARN"] == QUEUE_ARN
        assert record["awsRegion"] == REGION
    first, second = event["Records"]
    assert first["messageAttributes"]["kind"]["stringValue"] == "denoise"
    assert first["messageAttributes"]["kind"]["dataType"] == "String"
    assert "StringValue" not in first["messageAttributes"]["kind"]
    assert second["messageAttributes"] == {}
    json.dumps(event)  # what Lambda hands the runtime is JSON


def test_sqs_event_computes_md5_of_body_when_missing() -> None:
    message = received(1)
    del message["MD5OfBody"]

    (record,) = lambda_sqs_event(QUEUE_ARN, [message])["Records"]

    assert record["md5OfBody"] == hashlib.md5(message["Body"].encode()).hexdigest()  # noqa: S324


def test_sqs_event_message_attributes_match_lambda_documented_shape() -> None:
    """Lambda's documented SQS event: every attribute carries stringListValues and binaryListValues (empty lists),
    and a Binary attribute's binaryValue is base64 text (boto3 hands the poller bytes)."""
    message = received(
        1,
        MessageAttributes={
            "kind": {"StringValue": "denoise", "DataType": "String"},
            "blob": {"BinaryValue": b"\x00\xffdata", "DataType": "Binary"},
        },
    )

    (record,) = lambda_sqs_event(QUEUE_ARN, [message])["Records"]

    assert record["messageAttributes"] == {
        "kind": {"stringValue": "denoise", "stringListValues": [], "binaryListValues": [], "dataType": "String"},
        "blob": {
            "binaryValue": base64.b64encode(b"\x00\xffdata").decode(),
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "Binary",
        },
    }
    json.dumps(record)


# --- as_eventbridge_sends_it: moto's S3 event made real -------------------------------------------------------------


def s3_event(time_value: Any, obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "0",
        "id": "8ad4ca5a-0000-4000-8000-000000000000",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": "123456789012",
        "time": time_value,
        "region": REGION,
        "resources": ["arn:aws:s3:::input"],
        "detail": {"version": "0", "bucket": {"name": "input"}, "object": obj},
    }


@pytest.mark.parametrize(
    ("epoch", "iso"),
    [(1700000000, "2023-11-14T22:13:20Z"), (1700000000.75, "2023-11-14T22:13:20Z"), (0, "1970-01-01T00:00:00Z")],
)
def test_moto_s3_event_is_made_real(epoch: float, iso: str) -> None:
    event = s3_event(epoch, {"key": "uploads/a b.wav", "size": 3, "eTag": "abc123", "version-id": "v1"})

    fixed = as_eventbridge_sends_it(event)

    assert fixed["time"] == iso
    assert fixed["detail"]["object"] == {"key": "uploads/a b.wav", "size": 3, "etag": "abc123", "version-id": "v1"}


@pytest.mark.parametrize(
    "event",
    [
        s3_event("2023-11-14T22:13:20Z", {"key": "k", "size": 1, "etag": "abc", "version-id": "v"}),
        {"version": "0", "source": "aws.scheduler", "time": "2024-01-01T00:00:00Z", "detail": {}},
        {"version": "0", "source": "denoise.pipeline", "time": "2024-01-01T00:00:00Z", "detail": {"job_id": "j"}},
    ],
    ids=["s3-already-real", "scheduled", "custom"],
)
def test_real_events_are_unchanged(event: dict[str, Any]) -> None:
    assert as_eventbridge_sends_it(copy.deepcopy(event)) == event
