"""Lambda event shapes the local stack and the tests produce, matching what AWS delivers."""

from __future__ import annotations

import base64
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote_plus

from ..aws.template import ACCOUNT_ID, REGION


def s3_put_record(
    bucket: str, key: str, size: int, etag: str, version_id: str | None = None, event_name: str = "ObjectCreated:Put"
) -> dict[str, Any]:
    """One S3 notification record; the key is URL-encoded the way S3 does it (spaces as '+')."""
    obj: dict[str, Any] = {
        "key": quote_plus(key, safe="/"),
        "size": size,
        "eTag": etag,
        "sequencer": f"{time.time_ns():X}",
    }
    if version_id:
        obj["versionId"] = version_id
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": REGION,
        "eventTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "eventName": event_name,
        "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": uuid.uuid4().hex[:16].upper(), "x-amz-id-2": uuid.uuid4().hex},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "SubmitFunctionS3Event",
            "bucket": {"name": bucket, "ownerIdentity": {"principalId": "A3EXAMPLE"}, "arn": f"arn:aws:s3:::{bucket}"},
            "object": obj,
        },
    }


def s3_object_created_event(bucket: str, key: str, size: int, etag: str, version_id: str) -> dict[str, Any]:
    """The EventBridge "Object Created" event S3 sends for an upload (the key raw, not URL-encoded)."""
    detail = {
        "version": "0",
        "bucket": {"name": bucket},
        "object": {"key": key, "size": size, "etag": etag, "version-id": version_id, "sequencer": "00617F08299329D189"},
        "request-id": uuid.uuid4().hex[:16].upper(),
        "requester": ACCOUNT_ID,
        "source-ip-address": "203.0.113.15",
        "reason": "PutObject",
    }
    return _eventbridge_event("aws.s3", "Object Created", [f"arn:aws:s3:::{bucket}"], detail)


def http_api_event(
    method: str,
    path: str,
    route_key: str,
    path_parameters: dict[str, str],
    headers: dict[str, str],
    body: bytes,
    source_ip: str = "127.0.0.1",
    query: str = "",
) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) proxy event; binary or non-UTF-8 bodies arrive base64-encoded."""
    content_type = headers.get("content-type", "")
    try:
        text = body.decode("utf-8")
        is_base64 = not (content_type.startswith(("application/json", "text/")) or not body)
    except UnicodeDecodeError:
        is_base64 = True
    encoded = base64.b64encode(body).decode("ascii") if is_base64 else text
    now = datetime.now(UTC)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": query,
        "headers": {name.lower(): value for name, value in headers.items()},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": "localhost",
            "domainPrefix": "local",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": uuid.uuid4().hex,
            "routeKey": route_key,
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "pathParameters": path_parameters,
        "body": encoded,
        "isBase64Encoded": is_base64,
    }
    if query:  # repeated names are joined with commas, as HTTP API does
        event["queryStringParameters"] = {
            name: ",".join(values) for name, values in parse_qs(query, keep_blank_values=True).items()
        }
    return event


def sqs_event(queue_arn: str, messages: list[tuple[str, str, int]]) -> dict[str, Any]:
    """An SQS event for Lambda from (message id, body, receive count) triples."""
    return {
        "Records": [
            {
                "messageId": message_id,
                "receiptHandle": f"local-{message_id}",
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": str(receive_count),
                    "SentTimestamp": str(int(time.time() * 1000)),
                    "SenderId": "AIDAEXAMPLE",
                    "ApproximateFirstReceiveTimestamp": str(int(time.time() * 1000)),
                },
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": REGION,
            }
            for message_id, body, receive_count in messages
        ]
    }


def scheduled_event() -> dict[str, Any]:
    return _eventbridge_event("aws.scheduler", "Scheduled Event", [], {})


def _eventbridge_event(source: str, detail_type: str, resources: list[str], detail: dict[str, Any]) -> dict[str, Any]:
    """The envelope EventBridge wraps every event in."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": source,
        "account": ACCOUNT_ID,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": resources,
        "detail": detail,
    }
