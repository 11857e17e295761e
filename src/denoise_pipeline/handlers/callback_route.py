"""The webhook function's HTTP door: a callback's token is checked first, then its body is read and recorded;
results and refusals are answered from the tables in http_answers."""

from __future__ import annotations

import logging
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.metrics import MetricUnit

from ..domain import refusals
from ..domain.outcome import read_outcome
from ..domain.source import is_job_id
from ..domain.tokens import verify
from ..wiring import callback_deps, signing_secrets
from ..workflows.callback import accept_callback
from .callback_body import JSON_DESERIALIZER, read_payload
from .http_answers import answer, refusal

logger, metrics = Logger(child=True), Metrics()
app = APIGatewayHttpResolver(json_body_deserializer=JSON_DESERIALIZER)
# At DEBUG the resolver logs every route's arguments: the job id unchecked, and the token. Never, at any level.
logging.getLogger("aws_lambda_powertools.event_handler").setLevel(logging.INFO)


@app.post("/webhooks/<job_id>/<token>")
def receive_callback(job_id: str, token: str) -> Response[dict[str, Any]]:
    if not is_job_id(job_id) or not verify(signing_secrets(), job_id, token):
        raise refusals.UnknownCallback
    logger.set_correlation_id(job_id)
    outcome = read_outcome(read_payload(app.current_event))
    if outcome.surprises:
        logger.warning("callback not fully understood", extra={"reasons": outcome.surprises})
        metrics.add_metric(name="ProviderAnswersNotUnderstood", unit=MetricUnit.Count, value=1)
    status_code, body, metric = answer(job_id, accept_callback(job_id, outcome, callback_deps()))
    if metric:
        metrics.add_metric(name=metric, unit=MetricUnit.Count, value=1)
    logger.info("callback recorded", extra={"answer": body, "verdict": outcome.verdict.value})
    return Response(status_code, content_types.APPLICATION_JSON, body)


def refuse(exc: refusals.CallbackRefused) -> Response[dict[str, str]]:
    status_code, body = refusal(exc)
    logger.warning("callback rejected", extra={"status_code": status_code, "reason": exc.message})
    metrics.add_metric(name="WebhooksRejected", unit=MetricUnit.Count, value=1)
    return Response(status_code, content_types.APPLICATION_JSON, body)


app.exception_handler(refusals.CallbackRefused)(refuse)


@app.not_found
def no_route(exc: Exception) -> Response[dict[str, str]]:
    return refuse(refusals.UnknownCallback())  # any other path or method: the same answer as a wrong token
