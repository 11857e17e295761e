"""WebhookFunction: the provider's callback (HTTP API) and the copy work queue (SQS), one function, two doors."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from ..callbacks import CallbackRejected, UnknownCallback, decode_body
from ..complete import accept_callback, copy_outputs
from ..models import JobStatus
from ..runtime import completion_deps, signing_secrets
from . import is_sqs_event

logger = Logger()
tracer = Tracer()
metrics = Metrics()
app = APIGatewayHttpResolver()
# Report failed items instead of raising, so a one-message batch that fails is retried like any other.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


@app.post("/webhooks/<job_id>/<token>")
def receive_callback(job_id: str, token: str) -> Response[str]:
    logger.set_correlation_id(job_id)
    event = app.current_event
    payload = lambda: decode_body(event.body, bool(event.is_base64_encoded))  # noqa: E731 - parsed after the token
    answer = accept_callback(job_id, token, payload, signing_secrets, completion_deps())
    logger.info("callback accepted", extra={"status_code": answer.status_code, "answer": answer.body})
    if answer.body.get("status") == JobStatus.FAILED.value and not answer.body.get("duplicate"):
        metrics.add_metric(name="JobsFailed", unit=MetricUnit.Count, value=1)
    return Response(answer.status_code, content_types.APPLICATION_JSON, json.dumps(answer.body))


def _rejection(exc: CallbackRejected) -> Response[str]:
    logger.warning("callback rejected", extra={"status_code": exc.status_code, "reason": exc.message})
    metrics.add_metric(name="WebhooksRejected", unit=MetricUnit.Count, value=1)
    body = json.dumps({"error": exc.code, "message": exc.message})
    return Response(exc.status_code, content_types.APPLICATION_JSON, body)


@app.exception_handler(CallbackRejected)  # type: ignore[untyped-decorator]
def reject(exc: CallbackRejected) -> Response[str]:
    return _rejection(exc)


@app.not_found
def no_route(exc: Exception) -> Response[str]:
    """Any other path or method gets the same answer as a wrong token."""
    return _rejection(UnknownCallback())


@tracer.capture_method
def copy_record(record: SQSRecord) -> None:
    job_id = str(json.loads(record.body)["job_id"])
    logger.set_correlation_id(job_id)
    report = copy_outputs(job_id, int(record.attributes.approximate_receive_count or 1), completion_deps())
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


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if not is_sqs_event(event):  # HTTP API callbacks; the SQS door brings copy work
        return app.resolve(event, context)
    return dict(process_partial_response(event=event, record_handler=copy_record, processor=processor, context=context))
