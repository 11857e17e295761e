"""Lambda entry points, the edge of the package: each parses its event, calls one workflow, maps the result.

HTTP (status codes, bodies) and Lambda event shapes live here and nowhere else.
"""

from typing import Any


def is_sqs_event(event: dict[str, Any]) -> bool:
    """Both the submit and the webhook function have a second door: an SQS queue of their own work."""
    records = event.get("Records") or []
    return bool(records) and records[0].get("eventSource") == "aws:sqs"


class SubmitRetryLater(RuntimeError):
    """At least one upload hit a transient failure; raising makes Lambda retry the event (duplicates collapse)."""
