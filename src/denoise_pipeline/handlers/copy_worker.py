"""The webhook function's second door: the copy queue. Each message is one copy attempt with a deadline inside the
invocation; every failure is logged and counted (CopyFailures). One batch processor per invocation (it holds state)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from ..domain.job import JobStatus
from ..domain.source import is_job_id
from ..wiring import copy_deps
from ..workflows.copy import Attempt, copy_outputs

logger, metrics = Logger(child=True), Metrics()
SAFETY_SECONDS, RECORD_SECONDS = 30.0, 10.0  # before the invocation ends: staging ends, then promotion ends


def copy_record(record: SQSRecord, lambda_context: LambdaContext) -> None:
    job_id = str(json.loads(record.body).get("job_id", ""))
    if not is_job_id(job_id):
        logger.error("dropped a copy message without a valid job id", extra={"message_id": record.message_id})
        return
    logger.set_correlation_id(job_id)
    ends = time.monotonic() + lambda_context.get_remaining_time_in_millis() / 1000
    attempt = Attempt(uuid.uuid4().hex, ends - SAFETY_SECONDS, ends - RECORD_SECONDS)
    try:
        report = copy_outputs(job_id, attempt, copy_deps())
    except Exception:  # the attempt could not even be recorded (table or queue unreachable): SQS delivers it again
        logger.exception("copy message failed", extra={"receive_count": record.attributes.approximate_receive_count})
        metrics.add_metric(name="CopyFailures", unit=MetricUnit.Count, value=1)
        raise
    if report is None:
        return
    job, context = report.job, {"attempt": report.attempt, "bytes": report.copied_bytes}
    if report.failure is not None:
        logger.warning("copy attempt failed; queued again", extra=context | {"reason": report.failure})
        metrics.add_metric(name="CopyFailures", unit=MetricUnit.Count, value=1)
    elif job.status is JobStatus.COMPLETED:
        logger.info("copy finished", extra=context)
        metrics.add_metric(name="JobsCompleted", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="CopyBytes", unit=MetricUnit.Bytes, value=report.copied_bytes)
        if job.conversion_cost:
            metrics.add_metric(name="CreditsSpent", unit=MetricUnit.Count, value=float(job.conversion_cost))
    else:
        logger.error("copy failed for good", extra=context | {"reason": job.error_message})
        metrics.add_metric(name="CopyFailures", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="JobsFailed", unit=MetricUnit.Count, value=1)


def process(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return dict(process_partial_response(event=event, record_handler=copy_record, processor=processor, context=context))
