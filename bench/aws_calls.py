"""Counting the AWS calls handler code makes in the local stack (benchmark-only; the stack itself counts nothing).

A `before-call` hook on the process's default boto3 session, registered after the stack has started and before
any handler builds its clients (clients copy the session's hooks when they are created). A call is attributed to
the function whose handler the calling thread runs; s3transfer's worker threads belong to the webhook function,
the only user of managed transfers.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import boto3

from denoise_pipeline.adapters.capacity import CAPACITY_KEY
from local.stack import running_function


class AwsCalls:
    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str, str, str]] = Counter()
        """(function, service, operation, item) → calls; item is "capacity" for the jobs table's capacity record."""
        self._lock = threading.Lock()

    @classmethod
    def attach(cls) -> AwsCalls:
        counter = cls()
        assert boto3.DEFAULT_SESSION is not None, "start the local stack first"
        boto3.DEFAULT_SESSION.events.register("before-call", counter._count)
        return counter

    def _count(self, model: Any, params: Any = None, **kwargs: Any) -> None:
        function = running_function()
        if function is None and threading.current_thread().name.startswith("ThreadPoolExecutor"):
            function = "WebhookFunction"
        if function:
            body = params.get("body") if isinstance(params, dict) else None
            item = "capacity" if isinstance(body, bytes | str) and CAPACITY_KEY in str(body) else ""
            with self._lock:
                self.counts[(function, model.service_model.service_name, model.name, item)] += 1
