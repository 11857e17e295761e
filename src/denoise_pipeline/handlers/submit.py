"""SubmitFunction: S3 ObjectCreated → one provider job per object version; admission wake-ups → queued jobs."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from ..domain.source import SourceObject
from ..wiring import submit_deps, submit_settings
from ..workflows.submit import Outcome, SubmitDeps, handle_new_object
from . import SubmitRetryLater, is_sqs_event
from .upload_events import Unusable, read_uploads, set_aside

logger, metrics = Logger(), Metrics()
METRIC = {  # a retried record is counted by the function's Errors metric
    Outcome.SUBMITTED: "JobsSubmitted",
    Outcome.ADOPTED: "JobsAdopted",
    Outcome.QUEUED: "JobsQueued",
    Outcome.FAILED: "SubmitFailures",
    Outcome.DUPLICATE: "DuplicateEvents",
    Outcome.SKIPPED: "ObjectsSkipped",
}


def submit_record(source: SourceObject, deps: SubmitDeps) -> dict[str, str | None]:
    logger.set_correlation_id(source.job_id)
    logger.append_keys(job_id=source.job_id, source_key=source.key)
    report = handle_new_object(source, deps)
    logger.info("object handled", extra={"outcome": report.outcome.value, "detail": report.detail})
    metrics.add_metric(name=METRIC[report.outcome], unit=MetricUnit.Count, value=1)
    return {"job_id": report.job_id, "key": source.key, "outcome": report.outcome.value}


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deps = submit_deps()  # a missing setting fails here, before any record
    if is_sqs_event(event):
        from . import admission_worker  # here: an upload's cold start never loads the admission queue's door

        return admission_worker.process(event, deps)
    results, transient = [], []
    for upload in read_uploads(event, submit_settings().input_bucket):
        if isinstance(upload, Unusable):
            results.append(set_aside(upload))
            continue
        try:
            results.append(submit_record(upload, deps))
        except Exception as exc:  # noqa: BLE001 - every record is attempted; the failure is re-raised below
            logger.exception("submit failed; the event will be retried")
            transient.append(f"{upload.key}: {type(exc).__name__}: {exc}")
    if transient:
        raise SubmitRetryLater("; ".join(transient))
    return {"results": results}
