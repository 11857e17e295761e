"""Upload notifications as the submit function receives them, judged one at a time: one for another bucket or
another kind of event is skipped with its reason, a malformed one is reported as such, and neither stops the
others (the shapes themselves are read in s3_events)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from ..domain.source import SourceObject
from .s3_events import from_eventbridge, from_notification

logger, metrics = Logger(child=True), Metrics()
Reader = Callable[[Any], tuple[bool, SourceObject]]


@dataclass(frozen=True)
class Unusable:
    """A record that is not submitted, and why."""

    reason: str
    malformed: bool
    """True: the record is not what S3 sends (reported as an error); False: S3's, but not ours to submit."""


def read_uploads(event: dict[str, Any], input_bucket: str) -> Iterator[SourceObject | Unusable]:
    if "detail" in event:
        yield _judge(from_eventbridge, event, input_bucket)
        return
    records = event.get("Records")
    if not isinstance(records, list):
        yield Unusable("neither S3 records nor an EventBridge event", malformed=True)
        return
    for record in records:
        yield _judge(from_notification, record, input_bucket)


def set_aside(unusable: Unusable) -> dict[str, str | None]:
    """A record that is not an upload of ours: logged with its reason (an error when it is malformed), counted."""
    log = logger.error if unusable.malformed else logger.warning
    log("record not submitted", extra={"reason": unusable.reason})
    metric = "MalformedRecords" if unusable.malformed else "ObjectsSkipped"
    metrics.add_metric(name=metric, unit=MetricUnit.Count, value=1)
    return {"job_id": None, "outcome": "MALFORMED" if unusable.malformed else "SKIPPED", "detail": unusable.reason}


def _judge(read: Reader, raw: Any, input_bucket: str) -> SourceObject | Unusable:
    try:
        created, source = read(raw)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return Unusable(f"malformed record: {type(exc).__name__}: {str(exc)[:200]}", malformed=True)
    if not created:
        return Unusable("not an object creation", malformed=False)
    if source.bucket != input_bucket:
        return Unusable(f"bucket {source.bucket[:100]!r} is not the input bucket", malformed=False)
    return source
