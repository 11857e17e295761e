"""The webhook function's HTTP door: a callback's token is checked first, then its body is read and recorded;
results and refusals are answered from the tables in http_answers. API Gateway invokes it for one route only,
`POST /webhooks/{job_id}/{token}`, with its path parameters: Powertools' resolver would route it again, and its
import (every resolver and event data class, asyncio) cost a quarter of `import boto3` on this cold start."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from ..domain import refusals
from ..domain.outcome import read_outcome
from ..domain.source import is_job_id
from ..domain.tokens import verify
from ..wiring import callback_deps, signing_secrets
from ..workflows.callback import accept_callback
from .callback_body import read_payload
from .http_answers import answer, refusal

ROUTE = "POST /webhooks/{job_id}/{token}"
logger, metrics = Logger(child=True), Metrics()


def receive_callback(event: dict[str, Any]) -> dict[str, Any]:
    """An HTTP API (payload 2.0) event in, its response out; a refusal is an answer too, never an exception."""
    try:
        status_code, body = _record(event)
    except refusals.CallbackRefused as exc:
        status_code, body = refusal(exc)
        logger.warning("callback rejected", extra={"status_code": status_code, "reason": exc.message})
        metrics.add_metric(name="WebhooksRejected", unit=MetricUnit.Count, value=1)
    return {
        "statusCode": status_code,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(body, separators=(",", ":")),
        "isBase64Encoded": False,
    }


def _record(event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    parameters = event.get("pathParameters") or {}
    job_id, token = str(parameters.get("job_id", "")), str(parameters.get("token", ""))
    if event.get("routeKey") != ROUTE or not is_job_id(job_id) or not verify(signing_secrets(), job_id, token):
        raise refusals.UnknownCallback  # any other route: the same answer as a wrong token
    logger.set_correlation_id(job_id)
    outcome = read_outcome(read_payload(event))
    if outcome.surprises:
        logger.warning("callback not fully understood", extra={"reasons": outcome.surprises})
        metrics.add_metric(name="ProviderAnswersNotUnderstood", unit=MetricUnit.Count, value=1)
    status_code, body, metric = answer(job_id, accept_callback(job_id, outcome, callback_deps()))
    if metric:
        metrics.add_metric(name=metric, unit=MetricUnit.Count, value=1)
    logger.info("callback recorded", extra={"answer": body, "verdict": outcome.verdict.value})
    return status_code, body
