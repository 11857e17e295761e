"""SubmitFunction: S3 ObjectCreated → one provider job per object version; admission-queue wake-ups → queued jobs."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import S3Event
from aws_lambda_powertools.utilities.data_classes.s3_event import S3EventRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from ..models import SourceObject
from ..runtime import submit_deps
from ..submit import Outcome, admit_queued, handle_new_object
from . import is_sqs_event

logger = Logger()
tracer = Tracer()
metrics = Metrics()

OUTCOME_METRICS = {
    Outcome.SUBMITTED: "JobsSubmitted",
    Outcome.QUEUED: "JobsQueued",
    Outcome.FAILED: "SubmitFailures",
    Outcome.DUPLICATE: "DuplicateEvents",
    Outcome.SKIPPED: "ObjectsSkipped",
}


class SubmitRetryLater(RuntimeError):
    """At least one record hit a transient failure; raising makes Lambda retry the event (duplicates collapse)."""


def source_from_record(record: S3EventRecord) -> SourceObject:
    """S3 event keys are URL-encoded with '+' for spaces: `My Song+(1).wav` arrives as `My+Song%2B%281%29.wav`."""
    obj = record.s3.get_object
    return SourceObject(
        bucket=record.s3.bucket.name,
        key=unquote_plus(obj.key),
        size=int(obj.size or 0),
        etag=(obj.etag or "").strip('"'),
        version_id=obj.version_id or "",
    )


def _submit_uploads(event: dict[str, Any]) -> dict[str, Any]:
    deps = submit_deps()
    results = []
    transient: list[str] = []
    for record in S3Event(event).records:
        source = source_from_record(record)
        logger.set_correlation_id(source.job_id)
        logger.append_keys(job_id=source.job_id, source_key=source.key)
        try:
            report = handle_new_object(source, deps)
        except Exception as exc:  # noqa: BLE001 - every record is attempted; the failure is re-raised below
            logger.exception("submit failed; the event will be retried")
            metrics.add_metric(name="SubmitRetries", unit=MetricUnit.Count, value=1)
            transient.append(f"{source.key}: {type(exc).__name__}: {exc}")
            continue
        logger.info("object handled", extra={"outcome": report.outcome.value, "detail": report.detail})
        metrics.add_metric(name=OUTCOME_METRICS[report.outcome], unit=MetricUnit.Count, value=1)
        results.append({"job_id": report.job_id, "key": source.key, "outcome": report.outcome.value})
    if transient:
        raise SubmitRetryLater("; ".join(transient))
    return {"results": results}


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if not is_sqs_event(event):  # S3 notifications; the SQS door brings admission wake-ups
        return _submit_uploads(event)
    admitted = admit_queued(submit_deps())
    logger.info("admitted queued jobs", extra={"admitted": admitted})
    metrics.add_metric(name="JobsSubmitted", unit=MetricUnit.Count, value=admitted)
    return {"admitted": admitted}
