"""Drives the real handlers the way AWS would: S3 events in, HTTP API events for callbacks, SQS batches for work."""

from __future__ import annotations

import json
from typing import Any

from denoise_pipeline.domain.tokens import sign
from denoise_pipeline.handlers import reconcile, submit, webhook
from local.lambdas.events import http_api_event, s3_put_record, scheduled_event, sqs_event
from tests.conftest import SIGNING_SECRET, FakeContext, Stack
from tests.provider_double import conversion_of

ROUTE = "POST /webhooks/{job_id}/{token}"


def upload(stack: Stack, key: str, body: bytes) -> dict[str, Any]:
    """Put an object and deliver its S3 event to the submit function; returns the handler's answer."""
    s3 = stack.client("s3")
    put = s3.put_object(Bucket=stack.input_bucket, Key=key, Body=body)
    record = s3_put_record(stack.input_bucket, key, len(body), put["ETag"].strip('"'), put.get("VersionId"))
    return dict(submit.handler({"Records": [record]}, FakeContext()))


def job(stack: Stack, key: str) -> dict[str, Any]:
    (item,) = [item for item in stack.job_items() if item["source_key"] == key]
    return item


def callback_payload(task_id: str, urls: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {
        "success": True,
        "conversion_type": "Denoise",
        "task_id": task_id,
        "conversion_id": conversion_of(task_id),
        "audio_path": "files/c0ffee00.wav",
        **urls,
        "message": "de_noising conversion Completed",
        "conversion_duration": 136.8,
        "conversion_cost": "0.48",
        **extra,
    }


def post_callback(
    job_id: str,
    payload: Any,
    token: str | None = None,
    raw: bytes | None = None,
    content_type: str = "application/json",
) -> dict[str, Any]:
    token = sign(SIGNING_SECRET, job_id) if token is None else token
    body = raw if raw is not None else json.dumps(payload).encode()
    event = http_api_event(
        "POST",
        f"/webhooks/{job_id}/{token}",
        ROUTE,
        {"job_id": job_id, "token": token},
        {"content-type": content_type},
        body,
    )
    response = dict(webhook.handler(event, FakeContext()))
    response["json"] = json.loads(response["body"]) if response.get("body") else None
    return response


def run_queue(stack: Stack, logical_id: str, *, rounds: int = 1) -> list[dict[str, Any]]:
    """Deliver the queue's messages to its function, the way the event source mapping would.

    A message reported as a batch item failure goes back to the queue (visible again at once here).
    """
    handler = webhook.handler if logical_id == "CopyQueue" else submit.handler
    arn = stack.resources.attributes[logical_id]["Arn"]
    answers = []
    sqs = stack.client("sqs")
    url = stack.resources.ref(logical_id)
    for _ in range(rounds):
        batch = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["ApproximateReceiveCount"], VisibilityTimeout=0
        ).get("Messages", [])
        if not batch:
            break
        event = sqs_event(
            arn,
            [(m["MessageId"], m["Body"], int(m["Attributes"]["ApproximateReceiveCount"])) for m in batch],
        )
        answer = handler(event, FakeContext())
        failed = {item["itemIdentifier"] for item in (answer or {}).get("batchItemFailures", [])}
        for message in batch:
            if message["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        answers.append(answer)
    return answers


def run_reconciler() -> dict[str, int]:
    return dict(reconcile.handler(scheduled_event(), FakeContext()))
