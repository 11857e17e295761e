"""SQS adapter for the pipeline's own work queues; a message is just a job id, everything else is read from the job.

Two queues use it: the copy queue (the webhook function copies a COPYING job's outputs) and the admission queue
(a provider slot was freed, or a 429 pause ended: the submit function admits the oldest queued jobs).
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient

MAX_DELAY_SECONDS = 900  # SQS's limit for DelaySeconds


class JobQueue:
    def __init__(self, client: SQSClient, queue_url: str) -> None:
        self._client = client
        self._url = queue_url

    def enqueue(self, job_id: str, *, delay_seconds: float = 0) -> None:
        delay = min(MAX_DELAY_SECONDS, max(0, math.ceil(delay_seconds)))
        self._client.send_message(QueueUrl=self._url, MessageBody=json.dumps({"job_id": job_id}), DelaySeconds=delay)
