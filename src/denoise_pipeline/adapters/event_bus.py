"""EventBridge adapter: one event per job that reaches a final state, so other systems react without polling."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from ..domain.job import Job, JobStatus

if TYPE_CHECKING:
    from mypy_boto3_events.client import EventBridgeClient

SOURCE = "denoise.pipeline"
COMPLETED = "Denoise Job Completed"
FAILED = "Denoise Job Failed"


class EventPublishError(RuntimeError):
    pass


def event_detail(job: Job) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "status": job.status.value,
        "source": {"bucket": job.source_bucket, "key": job.source_key, "size": job.source_size},
        "output": {"bucket": job.output_bucket, "keys": job.output_keys} if job.output_keys else None,
        "task_id": job.task_id,
        "conversion_id": job.conversion_id,
        "conversion_cost": job.conversion_cost,
        "conversion_duration": str(job.conversion_duration) if job.conversion_duration is not None else None,
        "error": {"code": job.error_code, "message": job.error_message} if job.error_code else None,
    }


class EventPublisher:
    def __init__(self, client: EventBridgeClient, bus_name: str) -> None:
        self._client = client
        self._bus = bus_name

    def job_finished(self, job: Job) -> None:
        detail_type = COMPLETED if job.status is JobStatus.COMPLETED else FAILED
        try:
            result = self._client.put_events(
                Entries=[
                    {
                        "Source": SOURCE,
                        "DetailType": detail_type,
                        "Detail": json.dumps(event_detail(job)),
                        "EventBusName": self._bus,
                        "Resources": [f"job/{job.job_id}"],
                    }
                ]
            )
        except (BotoCoreError, ClientError) as exc:
            raise EventPublishError(f"EventBridge unreachable for job {job.job_id}: {exc}") from exc
        if result.get("FailedEntryCount"):
            raise EventPublishError(f"EventBridge refused the event for job {job.job_id}: {result['Entries']}")
