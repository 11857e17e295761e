"""ReconcileFunction: scheduled sweep for lost webhooks, lost copies, crashed submits and leaked slots."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from ..clock import utc_now
from ..wiring import reconcile_deps
from ..workflows.reconcile import reconcile

logger, metrics = Logger(), Metrics()


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    report = asdict(reconcile(utc_now(), reconcile_deps()))
    logger.info("reconcile finished", extra=report)
    metrics.add_metric(name="JobsTimedOut", unit=MetricUnit.Count, value=report["timed_out"])
    metrics.add_metric(name="SlotsRecovered", unit=MetricUnit.Count, value=report["slots_released"])
    metrics.add_metric(name="ReconcileJobErrors", unit=MetricUnit.Count, value=report["job_errors"])
    failed = report["failed_by_sweep"] + report["failed_by_lookup"]
    metrics.add_metric(name="JobsFailed", unit=MetricUnit.Count, value=failed)
    return report
