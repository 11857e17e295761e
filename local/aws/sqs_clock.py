"""Keep moto's SQS as fast with a thousand messages queued as with none, as real SQS is.

SendMessage builds every queue attribute to read one flag (ContentBasedDeduplication), and three of those
attributes count the queue's visible, delayed and in-flight messages, each a pass over every message that reads the
clock for it; moto reads that clock through datetime arithmetic (`unix_time_millis()`). Measured on this machine:
SendMessage took 7 ms on an empty queue, 14 ms with 300 messages and 27 ms with 1,000 queued, so the webhook's
acknowledgement and a burst's admission measured the emulator's queue depth, not our code. Two corrections:

- moto's SQS reads the same clock (milliseconds since the epoch, UTC) from `time.time()`: SendMessage took 7 ms
  whatever the depth, and a count (GetQueueAttributes, ReceiveMessage's search for visible messages) costs about
  0.5 µs a message (SendMessage's counts: 0.8 ms of CPU with 1,500 queued).
- While a message is being sent, the three counts are not made (they read 0): nothing on that path reads them.
  GetQueueAttributes and every other caller still count, as moto does.
"""

from __future__ import annotations

import contextvars
import datetime
import functools
import time
from collections.abc import Callable
from typing import Any

import moto.sqs.models
from moto.core.utils import unix_time_millis

_MESSAGE_COUNTS = (
    "approximate_number_of_messages",
    "approximate_number_of_messages_delayed",
    "approximate_number_of_messages_not_visible",
)
_sending = contextvars.ContextVar("sending", default=False)
_ORIGINAL_COUNTS = {name: getattr(moto.sqs.models.Queue, name) for name in _MESSAGE_COUNTS}
_ORIGINAL_SEND = moto.sqs.models.SQSBackend.send_message


def _unix_time_millis(dt: datetime.datetime | None = None) -> float:
    return time.time() * 1000.0 if dt is None else unix_time_millis(dt)


def read_sqs_clock_directly() -> None:
    """Process-wide and idempotent: moto's SQS models read the current time from `time.time()`."""
    moto.sqs.models.unix_time_millis = _unix_time_millis  # type: ignore[attr-defined]  # imported from core.utils


def _counted_unless_sending(count: property) -> property:
    def counted(queue: moto.sqs.models.Queue) -> int:
        return 0 if _sending.get() else int(count.fget(queue))  # type: ignore[misc]

    return property(counted)


def _without_counting(send: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(send)
    def send_message(backend: moto.sqs.models.SQSBackend, *args: Any, **kwargs: Any) -> Any:
        token = _sending.set(True)
        try:
            return send(backend, *args, **kwargs)
        finally:
            _sending.reset(token)

    return send_message


def send_without_counting_messages() -> None:
    """Process-wide and idempotent: SendMessage, and SendMessageBatch for each message it sends, do not count the
    queue's messages (a FIFO batch still counts once per entry while moto validates the entries, before sending)."""
    for name, count in _ORIGINAL_COUNTS.items():
        setattr(moto.sqs.models.Queue, name, _counted_unless_sending(count))
    moto.sqs.models.SQSBackend.send_message = _without_counting(_ORIGINAL_SEND)  # type: ignore[method-assign]
