"""SQS adapter for the pipeline's own work queues; a message names a job and what to do, the rest is on the job.

Two queues use it: the copy queue (the webhook function copies a COPYING job's outputs) and the admission queue,
which the submit function works off: admit queued jobs (a slot was freed, or a pause ended), confirm an unclear
callback with the status lookup, or resume a job whose callback arrived before its submit was recorded.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient

MAX_DELAY_SECONDS = 900  # SQS's limit for DelaySeconds


class Action(StrEnum):
    ADMIT = "admit"
    CONFIRM = "confirm"
    RESUME = "resume"


@dataclass(frozen=True)
class Request:
    """One message of a job queue: which job, and what to do with it."""

    job_id: str
    action: Action


def read_request(body: str) -> Request:
    """A message body as sent by `JobQueue.enqueue`; a message without an action is an admission wake-up.
    Raises ValueError for a body that is not one of ours."""
    message: Any = json.loads(body)
    if not isinstance(message, dict) or not isinstance(message.get("job_id"), str):
        raise ValueError(f"not a job message: {body[:200]!r}")
    return Request(message["job_id"], Action(message.get("action", Action.ADMIT)))


class JobQueue:
    def __init__(self, client: SQSClient, queue_url: str) -> None:
        self._client = client
        self._url = queue_url

    def enqueue(self, job_id: str, *, delay_seconds: float = 0, action: Action = Action.ADMIT) -> None:
        delay = min(MAX_DELAY_SECONDS, max(0, math.ceil(delay_seconds)))
        body = {"job_id": job_id} | ({} if action is Action.ADMIT else {"action": action.value})
        self._client.send_message(QueueUrl=self._url, MessageBody=json.dumps(body), DelaySeconds=delay)
