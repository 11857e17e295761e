"""Webhook acknowledgement: the webhook handler from API event to response (verify + durable record + queue the copy),
against the local stack, vs one DynamoDB PutItem round trip to the same endpoint; REPETITIONS rounds of CALLS
callbacks then CALLS PutItems, back to back."""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3

from denoise_pipeline.adapters.job_store import JobStore
from denoise_pipeline.domain.source import SourceObject
from denoise_pipeline.domain.submission import SubmitResult
from denoise_pipeline.domain.tokens import sign
from local.lambdas.events import http_api_event
from local.stack import LocalStack, LocalStackConfig

from .repeat import Spread, percentile
from .report import Figure

CALLS = 300
WARM_UP = 20
REPETITIONS = 5
TARGET = 3.0
ROUTE = "POST /webhooks/{job_id}/{token}"


def _callbacks(stack: LocalStack, store: JobStore, secret: str, first: int, count: int) -> list[dict[str, Any]]:
    """`count` SUBMITTED jobs and, for each, the API event of its success callback."""
    assert stack.resources is not None
    assert stack.provider is not None
    events = []
    for i in range(first, first + count):
        source = SourceObject(stack.resources.ref("InputBucket"), f"bench/{i}.wav", 1000, f"etag{i}")
        store.create_claimed(source)
        task_id = f"task-{i}"
        store.mark_submitted(source.job_id, SubmitResult(task_id, f"conv-{i}", 10, Decimal("0.48"), "IN_QUEUE", ""))
        base = f"{stack.provider.base_url}/files/conv-{i}"
        body = {
            "success": True,
            "conversion_type": "Denoise",
            "task_id": task_id,
            "conversion_id": f"conv-{i}",
            "audio_path": f"files/conv-{i}.wav",
            "no_noise": f"{base}_nonoise.mp3",
            "no_noise_wav": f"{base}_nonoise.wav",
            "noise": f"{base}_noise.mp3",
            "noise_wav": f"{base}_noise.wav",
            "message": "de_noising conversion Completed",
            "conversion_duration": 12.5,
            "conversion_cost": "0.48",
        }
        token = sign(secret, source.job_id)
        events.append(
            http_api_event(
                "POST",
                f"/webhooks/{source.job_id}/{token}",
                ROUTE,
                {"job_id": source.job_id, "token": token},
                {"content-type": "application/json"},
                json.dumps(body).encode(),
            )
        )
    return events


def _timed(calls: list[Callable[[], object]]) -> list[float]:
    latencies = []
    for call in calls:
        started = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - started)
    return latencies


def _accepted(webhook: Callable[[dict[str, Any]], Any], event: dict[str, Any]) -> Callable[[], None]:
    def call() -> None:
        answer = webhook(event)
        assert answer["statusCode"] == 202, answer

    return call


def run(repetitions: int = REPETITIONS) -> tuple[list[Figure], list[str]]:
    with (
        tempfile.TemporaryDirectory() as state,
        LocalStack(LocalStackConfig(state_dir=Path(state), event_sources=False)) as stack,
    ):
        assert stack.resources is not None
        table = boto3.resource("dynamodb").Table(stack.resources.ref("JobsTable"))
        secret = boto3.client("secretsmanager").get_secret_value(SecretId=stack.resources.ref("WebhookSigningSecret"))[
            "SecretString"
        ]
        store = JobStore(table)
        function = stack.functions["WebhookFunction"]

        def webhook(event: dict[str, Any]) -> Any:
            return function.invoke(event).payload  # through the function's process, as API Gateway invokes it

        serial = iter(range(10**9))

        def put() -> None:
            table.put_item(Item={"job_id": f"baseline-{next(serial)}", "payload": "x" * 200})

        _timed([_accepted(webhook, e) for e in _callbacks(stack, store, secret, 0, WARM_UP)])
        _timed([put] * WARM_UP)
        acks: list[list[float]] = []
        puts: list[list[float]] = []
        for rep in range(repetitions):
            events = _callbacks(stack, store, secret, WARM_UP + rep * CALLS, CALLS)
            acks.append(_timed([_accepted(webhook, e) for e in events]))
            puts.append(_timed([put] * CALLS))

    def ms(values: list[float], q: float) -> float:
        return (statistics.median(values) if q == 0.5 else percentile(values, q)) * 1000

    figures = []
    for label, q, target in (("p50", 0.5, None), ("p99", 0.99, TARGET)):
        ack = Spread.of([ms(a, q) for a in acks])
        put_ms = Spread.of([ms(p, q) for p in puts])
        ratio = Spread.of([ms(a, q) / ms(p, q) for a, p in zip(acks, puts, strict=True)])
        figures.append(
            Figure(
                "Webhook ack",
                f"{label} ({CALLS} calls per repetition)",
                f"{ack.median:.1f} ms ({ack.low:.1f} – {ack.high:.1f})",
                f"PutItem {label} {put_ms.median:.1f} ms ({put_ms.low:.1f} – {put_ms.high:.1f})",
                ratio.median,
                "info" if target is None else f"≤ {target:g}×",
                None if target is None else ratio.median <= target,
                ratio,
            )
        )
    notes = [
        "Webhook ack: the built handler invoked in its warm Lambda environment (a process under the runtime "
        "interface client, IAM enforced) with an API Gateway v2 event (token check with the "
        "Secrets-Manager-cached key, body and URL checks, one conditional UpdateItem to COPYING that also checks "
        "the job's state and task id, SendMessage to the copy queue); moto's HTTP server is the AWS endpoint for "
        f"both the handler and the PutItem baseline. {repetitions} repetitions of {CALLS} callbacks then {CALLS} "
        "PutItems, each percentile taken per repetition. Copy excluded (no queue consumer).",
    ]
    return figures, notes
