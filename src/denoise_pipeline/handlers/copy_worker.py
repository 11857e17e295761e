"""The webhook function's second door: copy work from the copy queue, one job per message, failures retried."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from ..domain.job import JobStatus
from ..wiring import copy_deps
from ..workflows.copy import copy_outputs

logger, tracer, metrics = Logger(child=True), Tracer(), Metrics()
# Report failed items instead of raising, so a one-message batch that fails is retried like any other.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


@tracer.capture_method
def copy_record(record: SQSRecord) -> None:
    job_id = str(json.loads(record.body)["job_id"])
    logger.set_correlation_id(job_id)
    report = copy_outputs(job_id, int(record.attributes.approximate_receive_count or 1), copy_deps())
    if report is None:
        return
    job = report.job
    if job.status is JobStatus.COMPLETED:
        metrics.add_metric(name="JobsCompleted", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="CopyBytes", unit=MetricUnit.Bytes, value=report.copied_bytes)
        if job.conversion_cost:
            metrics.add_metric(name="CreditsSpent", unit=MetricUnit.Count, value=float(job.conversion_cost))
    else:
        metrics.add_metric(name="JobsFailed", unit=MetricUnit.Count, value=1)
    logger.info("copy finished", extra={"status": job.status.value, "bytes": report.copied_bytes})


def process(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return dict(process_partial_response(event=event, record_handler=copy_record, processor=processor, context=context))
