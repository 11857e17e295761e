"""The submit function's second door, the admission queue: wake-ups admit queued jobs (a slot was freed, a pause
ended), confirmations settle unclear callbacks with the status lookup, resumes settle jobs with a kept callback."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import SQSEvent

from ..adapters.musicgpt import ProviderError
from ..adapters.queues import Action, Request, read_request
from ..domain.callback import Failed
from ..domain.source import is_job_id
from ..wiring import lookup_deps
from ..workflows.callback import confirm_with_lookup
from ..workflows.submit import SubmitDeps, admit_queued, resume

logger, metrics = Logger(child=True), Metrics()


def process(event: dict[str, Any], deps: SubmitDeps) -> dict[str, Any]:
    """Every message is handled on its own; a failed one is reported for SQS to deliver again."""
    failures, wake_up = [], False
    for record in SQSEvent(event).records:
        try:
            request: Request | None = read_request(record.body)
        except ValueError:
            request = None
        if request is None or not is_job_id(request.job_id):
            logger.error("dropped a message without a valid job id", extra={"message_id": record.message_id})
            continue
        logger.set_correlation_id(request.job_id)
        wake_up |= request.action is Action.ADMIT
        try:
            _act(request, deps)
        except Exception:  # noqa: BLE001 - each message fails alone; SQS delivers it again, then to the DLQ
            logger.exception("admission request failed", extra={"action": request.action.value})
            failures.append({"itemIdentifier": record.message_id})
    admitted = admit_queued(deps) if wake_up else 0
    metrics.add_metric(name="JobsSubmitted", unit=MetricUnit.Count, value=admitted)
    return {"admitted": admitted, "batchItemFailures": failures}


def _act(request: Request, deps: SubmitDeps) -> None:
    if request.action is Action.RESUME:
        report = resume(request.job_id, deps)
        logger.info("resumed", extra={"outcome": report.outcome.value if report else "already being handled"})
    elif request.action is Action.CONFIRM:
        try:
            confirmation = confirm_with_lookup(request.job_id, lookup_deps())
        except ProviderError as exc:  # the job stays SUBMITTED; the reconciler looks again later
            logger.warning("status lookup failed", extra={"error": exc.message})
            return
        if confirmation.outcome is not None and confirmation.outcome.surprises:
            metrics.add_metric(name="ProviderAnswersNotUnderstood", unit=MetricUnit.Count, value=1)
        if isinstance(confirmation.result, Failed):
            metrics.add_metric(name="JobsFailed", unit=MetricUnit.Count, value=1)
        logger.info("confirmed", extra={"result": type(confirmation.result).__name__})
