"""The two shapes S3 reports an upload in: a notification (`Records`, keys URL-encoded with `+` for spaces) and an
EventBridge "Object Created" event (`detail`, the key raw: never unquote it). Each returns whether the event is an
object creation, and the object; a shape that is not S3's raises KeyError, TypeError or ValueError."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from ..domain.source import SourceObject


def from_notification(record: dict[str, Any]) -> tuple[bool, SourceObject]:
    s3, obj = record["s3"], record["s3"]["object"]
    source = SourceObject(
        bucket=str(s3["bucket"]["name"]),
        key=unquote_plus(str(obj["key"])),
        size=int(obj.get("size") or 0),
        etag=str(obj.get("eTag") or "").strip('"'),
        version_id=str(obj.get("versionId") or ""),
    )
    return str(record["eventName"]).startswith("ObjectCreated:"), source


def from_eventbridge(event: dict[str, Any]) -> tuple[bool, SourceObject]:
    detail, obj = event["detail"], event["detail"]["object"]
    source = SourceObject(
        bucket=str(detail["bucket"]["name"]),
        key=str(obj["key"]),
        size=int(obj.get("size") or 0),
        etag=str(obj.get("etag") or "").strip('"'),
        version_id=str(obj.get("version-id") or ""),
    )
    return event.get("source") == "aws.s3" and event.get("detail-type") == "Object Created", source
