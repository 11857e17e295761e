"""WebhookFunction: the provider's callbacks (HTTP API) and the copy work queue (SQS), one function, two doors."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from . import is_sqs_event
from .callback_route import receive_callback

logger, metrics = Logger(), Metrics()


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if is_sqs_event(event):  # copy work from the copy queue
        # Imported here: a callback's cold start (the provider waits for its answer) never loads the batch
        # processor, the copier and their dependencies; the copy's cold start pays for them instead.
        from . import copy_worker

        return copy_worker.process(event, context)
    return receive_callback(event)
