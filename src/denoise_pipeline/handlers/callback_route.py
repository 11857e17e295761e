"""The webhook function's HTTP door: a callback's token is checked first, then its body is read and recorded;
every refusal maps to its status code in one table."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.metrics import MetricUnit

from ..domain import callback as results
from ..domain.outcome import parse_callback
from ..domain.source import is_job_id
from ..domain.tokens import verify
from ..wiring import callback_deps, signing_secrets
from ..workflows.callback import accept_callback
from .callback_body import JSON_DESERIALIZER, UnreadableBody, read_payload

logger, metrics = Logger(child=True), Metrics()
app = APIGatewayHttpResolver(json_body_deserializer=JSON_DESERIALIZER)
REFUSALS: dict[type[results.CallbackRefused], tuple[int, str]] = {  # every refusal's answer, in one place
    UnreadableBody: (400, "bad_request"),
    results.UnknownCallback: (404, "not_found"),
    results.ConflictingCallback: (409, "conflict"),
    results.InvalidCallback: (422, "invalid_payload"),
}


@app.post("/webhooks/<job_id>/<token>")
def receive_callback(job_id: str, token: str) -> Response[dict[str, Any]]:
    if not is_job_id(job_id) or not verify(signing_secrets(), job_id, token):
        raise results.UnknownCallback
    logger.set_correlation_id(job_id)
    result = accept_callback(job_id, parse_callback(read_payload(app.current_event)), callback_deps())
    body: dict[str, Any] = {"job_id": job_id, "status": result.status.value}
    if isinstance(result, results.Duplicate):
        body["duplicate"] = True
    elif isinstance(result, results.Failed):
        metrics.add_metric(name="JobsFailed", unit=MetricUnit.Count, value=1)
    logger.info("callback accepted", extra={"answer": body})
    return Response(202 if isinstance(result, results.Accepted) else 200, content_types.APPLICATION_JSON, body)


def refuse(exc: results.CallbackRefused) -> Response[dict[str, str]]:
    status, code = REFUSALS[type(exc)]
    logger.warning("callback rejected", extra={"status_code": status, "reason": exc.message})
    metrics.add_metric(name="WebhooksRejected", unit=MetricUnit.Count, value=1)
    return Response(status, content_types.APPLICATION_JSON, {"error": code, "message": exc.message})


app.exception_handler(results.CallbackRefused)(refuse)


@app.not_found
def no_route(exc: Exception) -> Response[dict[str, str]]:
    return refuse(results.UnknownCallback())  # any other path or method: the same answer as a wrong token
