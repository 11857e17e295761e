"""What invokes the functions, with Lambda's semantics, configured from the transformed template.

- `AsyncInvoker`: Lambda's asynchronous invocation (EventBridge rules, the schedule). Events wait in the function's
  own queue; a failed invocation is retried MaximumRetryAttempts times, never beyond MaximumEventAgeInSeconds, then
  the destination record goes to the OnFailure queue, sent with the function's role as Lambda does. Lambda waits
  1 then 2 minutes between attempts; here `retry_delay` × attempt.
- `RuleBridge`: moto matches each rule's pattern and delivers to an SQS queue of the emulation (moto cannot call a
  function); the bridge hands each delivered event to the function's AsyncInvoker.
- `QueuePoller`: an SQS event source mapping. Pollers receive with the function's role (its ReceiveMessage and
  DeleteMessage permissions are checked), up to MaximumConcurrency batches at once, BatchSize messages, waiting
  MaximumBatchingWindowInSeconds to fill a batch; successful messages are deleted, failed ones (the whole batch,
  or the batchItemFailures when ReportBatchItemFailures is on) return to the queue, where moto counts receives
  against the redrive policy's maxReceiveCount. A failed message becomes visible again after `retry_delay`
  instead of the queue's VisibilityTimeout (minutes): that change is made by the emulation, not the role.
- `Schedule`: the reconciler's schedule on a short local interval, invoked asynchronously.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ..aws.template import REGION, AsyncInvokeConfig, QueueSource
from .events import scheduled_event

log = logging.getLogger(__name__)
LONG_POLL_SECONDS = 1
"""Lambda long-polls for 20 s; 1 s lets the stack stop promptly and changes nothing else."""


class Result(Protocol):
    @property
    def request_id(self) -> str: ...

    @property
    def payload(self) -> Any: ...

    @property
    def error_type(self) -> str | None: ...

    @property
    def error_message(self) -> str | None: ...


class Function(Protocol):
    def invoke(self, event: Any) -> Result: ...


@dataclass(frozen=True)
class _Pending:
    event: Any
    received_at: float
    attempt: int  # invocations so far


class AsyncInvoker:
    """Lambda's queue for asynchronous invocations of one function, drained by `workers` threads."""

    def __init__(
        self,
        function: Function,
        *,
        function_arn: str,
        config: AsyncInvokeConfig,
        send_to_destination: Callable[[str, str], None],
        workers: int,
        retry_delay: float,
        stop: threading.Event,
    ) -> None:
        self._function = function
        self._arn = function_arn
        self._config = config
        self._send = send_to_destination
        self._retry_delay = retry_delay
        self._stop = stop
        self._queue: queue.Queue[_Pending] = queue.Queue()
        self._timers: list[threading.Timer] = []
        self.threads = [
            threading.Thread(target=self._work, name=f"async-{function_arn.rsplit(':', 1)[-1]}-{n}", daemon=True)
            for n in range(workers)
        ]
        for thread in self.threads:
            thread.start()

    def submit(self, event: Any) -> None:
        self._queue.put(_Pending(event, time.monotonic(), 0))

    def cancel_retries(self) -> None:
        """Retries waiting for their delay are dropped (the stack is stopping)."""
        for timer in self._timers:
            timer.cancel()

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                pending = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self._attempt(pending)
            except Exception:  # a worker never dies: the event is logged and the next one taken
                log.exception("%s: asynchronous invocation failed in the emulation", self._arn)

    def _attempt(self, pending: _Pending) -> None:
        if time.monotonic() - pending.received_at > self._config.maximum_event_age_seconds:
            self._give_up(pending, None, "EventAgeExceeded")
            return
        result = self._function.invoke(pending.event)
        attempt = _Pending(pending.event, pending.received_at, pending.attempt + 1)
        if result.error_type is None:
            return
        if attempt.attempt <= self._config.maximum_retry_attempts:
            timer = threading.Timer(self._retry_delay * attempt.attempt, self._queue.put, args=(attempt,))
            timer.daemon = True
            self._timers = [t for t in self._timers if t.is_alive()] + [timer]
            timer.start()
            return
        self._give_up(attempt, result, "RetriesExhausted")

    def _give_up(self, pending: _Pending, result: Result | None, condition: str) -> None:
        if self._config.on_failure_arn is None:
            log.warning("%s: event dropped (%s)", self._arn, condition)
            return
        record = {
            "version": "1.0",
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            "requestContext": {
                "requestId": result.request_id if result else "",
                "functionArn": f"{self._arn}:$LATEST",
                "condition": condition,
                "approximateInvokeCount": pending.attempt,
            },
            "requestPayload": pending.event,
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "responsePayload": result.payload if result else None,
        }
        try:
            self._send(self._config.on_failure_arn, json.dumps(record))
        except Exception:  # Lambda counts a failed destination delivery (DestinationDeliveryFailures) and drops it
            log.exception("%s: the on-failure destination refused the record", self._arn)


class RuleBridge:
    """Reads the queue moto delivers a rule's matched events to, and hands each to `target` (the function's
    asynchronous invocation, or the rule's dead-letter queue when no permission lets the rule invoke it)."""

    def __init__(self, sqs: Any, queue_url: str, target: Callable[[Any], None], stop: threading.Event) -> None:
        self._sqs = sqs
        self._url = queue_url
        self._target = target
        self._stop = stop
        self.thread = threading.Thread(target=self._run, name="rule-bridge", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._forward()
            except Exception:  # the bridge never dies; an undelivered event stays in its queue
                log.exception("rule bridge: delivery failed")
                self._stop.wait(1)

    def _forward(self) -> None:
        messages = self._sqs.receive_message(
            QueueUrl=self._url, MaxNumberOfMessages=10, WaitTimeSeconds=LONG_POLL_SECONDS
        ).get("Messages", [])
        for message in messages:
            self._target(as_eventbridge_sends_it(json.loads(message["Body"])))
            self._sqs.delete_message(QueueUrl=self._url, ReceiptHandle=message["ReceiptHandle"])


class QueuePoller:
    """One SQS event source mapping: `concurrency` pollers, each invoking the function with one batch at a time."""

    def __init__(
        self,
        source: QueueSource,
        function: Function,
        *,
        queue_url: str,
        queue_arn: str,
        role_sqs: Any,
        platform_sqs: Any,
        concurrency: int,
        retry_delay: float,
        stop: threading.Event,
    ) -> None:
        self._source = source
        self._function = function
        self._url = queue_url
        self._arn = queue_arn
        self._role_sqs = role_sqs
        self._platform_sqs = platform_sqs
        self._retry_delay = retry_delay
        self._stop = stop
        self.threads = [
            threading.Thread(target=self._run, name=f"{source.logical_id}-{n}", daemon=True) for n in range(concurrency)
        ]
        for thread in self.threads:
            thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                batch = self._receive_batch()
                if batch:
                    self._deliver(batch)
            except Exception:  # a poller never dies: Lambda logs the error and polls again
                log.exception("%s: polling failed", self._source.logical_id)
                self._stop.wait(self._retry_delay)

    def _receive_batch(self) -> list[dict[str, Any]]:
        """Up to BatchSize messages; with a batching window, keep receiving until it is full or the window ends."""
        batch: list[dict[str, Any]] = []
        window_ends = math.inf  # the window opens with the first message
        while len(batch) < self._source.batch_size and not self._stop.is_set():
            received = self._role_sqs.receive_message(
                QueueUrl=self._url,
                MaxNumberOfMessages=min(10, self._source.batch_size - len(batch)),
                WaitTimeSeconds=LONG_POLL_SECONDS,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if received and not batch:
                window_ends = time.monotonic() + self._source.batching_window_seconds
            batch += received
            if batch and time.monotonic() >= window_ends:
                break
        return batch

    def _deliver(self, batch: list[dict[str, Any]]) -> None:
        result = self._function.invoke(lambda_sqs_event(self._arn, batch))
        failed = _failed_items(result, batch, reports_item_failures=self._source.reports_item_failures)
        done = [m for m in batch if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            self._role_sqs.delete_message_batch(
                QueueUrl=self._url,
                Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(done[start:][:10])],
            )
        for message in batch:
            if message["MessageId"] in failed:
                self._platform_sqs.change_message_visibility(
                    QueueUrl=self._url,
                    ReceiptHandle=message["ReceiptHandle"],
                    VisibilityTimeout=math.ceil(self._retry_delay),
                )


def _failed_items(result: Result, batch: list[dict[str, Any]], *, reports_item_failures: bool) -> set[str]:
    """Lambda's reading of the answer: an error fails the whole batch; with ReportBatchItemFailures, the listed
    items fail, and an unreadable list (an id not in the batch, an empty id) fails the whole batch."""
    everything = {m["MessageId"] for m in batch}
    if result.error_type is not None:
        return everything
    if not reports_item_failures or not isinstance(result.payload, Mapping):
        return set()
    items = result.payload.get("batchItemFailures") or []
    if not isinstance(items, list):
        return everything
    failed = {item.get("itemIdentifier") for item in items if isinstance(item, Mapping)}
    if len(failed) != len(items) or not failed <= everything:
        return everything
    return {str(item) for item in failed}


def lambda_sqs_event(queue_arn: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The event Lambda builds from received messages (their own ids, receipt handles and attributes)."""
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": message.get("Attributes", {}),
                "messageAttributes": {
                    name: _lambda_attribute(value) for name, value in message.get("MessageAttributes", {}).items()
                },
                "md5OfBody": message.get("MD5OfBody") or hashlib.md5(message["Body"].encode()).hexdigest(),  # noqa: S324
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": REGION,
            }
            for message in messages
        ]
    }


def _lambda_attribute(value: Mapping[str, Any]) -> dict[str, Any]:
    """A message attribute as Lambda writes it: lower-camel keys, list values always present, binary as base64."""
    attribute: dict[str, Any] = {"stringListValues": [], "binaryListValues": []}
    for key, item in value.items():
        text = base64.b64encode(item).decode("ascii") if isinstance(item, bytes) else item
        attribute[key[0].lower() + key[1:]] = text
    return attribute


class Schedule:
    """The schedule's target invoked asynchronously every `interval` seconds (the expression is not followed)."""

    def __init__(self, target: AsyncInvoker, interval: float, stop: threading.Event) -> None:
        self._target = target
        self._interval = interval
        self._stop = stop
        self.thread = threading.Thread(target=self._run, name="schedule", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._target.submit(scheduled_event())


def as_eventbridge_sends_it(event: dict[str, Any]) -> dict[str, Any]:
    """moto's S3 event differs from the real one: `eTag` for `etag`, and `time` in epoch seconds, not ISO 8601."""
    obj = event.get("detail", {}).get("object", {})
    if "eTag" in obj:
        obj["etag"] = obj.pop("eTag")
    if isinstance(event.get("time"), int | float):
        event["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(event["time"]))
    return event
