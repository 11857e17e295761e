"""A stand-in for a Lambda function behind an emulated event source (local/lambdas/event_sources.py, the gateway):
scripted answers, every invocation recorded. What the tests using it examine is the event source, not the function."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ERROR_PAYLOAD = {"errorMessage": "boom", "errorType": "RuntimeError", "stackTrace": ["  File app.py, line 1"]}
WAIT = 5.0  # deadline for anything that should happen promptly


@dataclass(frozen=True)
class FakeResult:
    request_id: str
    payload: Any = None
    error_type: str | None = None
    error_message: str | None = None


def ok(payload: Any = None, request_id: str = "req-ok") -> FakeResult:
    return FakeResult(request_id, payload)


def error(payload: Any = None, request_id: str = "req-error") -> FakeResult:
    return FakeResult(request_id, ERROR_PAYLOAD if payload is None else payload, "Unhandled", "boom")


@dataclass(frozen=True)
class Call:
    event: Any
    started: float
    ended: float


@dataclass
class FakeFunction:
    """Answers with `respond(event, n)` (n: this invocation's index) after sleeping `sleep` seconds; records each
    invocation and the highest number running at once. `respond` may raise, as a real invoke can."""

    respond: Callable[[Any, int], FakeResult] = lambda event, n: ok()
    sleep: float = 0.0
    calls: list[Call] = field(default_factory=list)
    max_active: int = 0
    _active: int = 0
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def invoke(self, event: Any) -> FakeResult:
        started = time.monotonic()
        with self._cond:
            n = len(self.calls) + self._active
            self._active += 1
            self.max_active = max(self.max_active, self._active)
        try:
            if self.sleep:
                time.sleep(self.sleep)
            return self.respond(event, n)
        finally:
            with self._cond:
                self._active -= 1
                self.calls.append(Call(event, started, time.monotonic()))
                self._cond.notify_all()

    def wait_for_calls(self, count: int, timeout: float = WAIT) -> list[Call]:
        with self._cond:
            self._cond.wait_for(lambda: len(self.calls) >= count, timeout)
            return list(self.calls)

    @property
    def events(self) -> list[Any]:
        with self._cond:
            return [call.event for call in self.calls]

    def wait_until(self, predicate: Callable[[list[Call]], bool], timeout: float = WAIT) -> list[Call]:
        with self._cond:
            self._cond.wait_for(lambda: predicate(self.calls), timeout)
            return list(self.calls)

    def batches(self) -> list[list[dict[str, Any]]]:
        """The SQS records of each invocation."""
        with self._cond:
            return [call.event["Records"] for call in self.calls]
