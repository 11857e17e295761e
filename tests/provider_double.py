"""A scriptable MusicGPT endpoint on a real local socket (pytest-httpserver), recording what it was sent.

Used where a test needs to choose the provider's answers (errors, rate limits, malformed bodies); the e2e tier
uses the real local provider instead.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

API_PREFIX = "/api/public/v1"


@dataclass
class RecordedCall:
    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, str]
    files: dict[str, bytes]
    query: dict[str, str]


def conversion_of(task_id: str) -> str:
    """The conversion id the double gives a task, so a test's callback can carry the one the provider answered."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, task_id))


def ok_submit(request: Request) -> Response:
    task_id = str(uuid.uuid4())
    body = {
        "success": True,
        "task_id": task_id,
        "conversion_id": conversion_of(task_id),
        "eta": 71,
        "credit_estimate": 0.48,
        "message": "Message published to queue",
        "status": "IN_QUEUE",
    }
    return Response(json.dumps(body), status=200, content_type="application/json")


def status(code: int, body: Any = None, headers: dict[str, str] | None = None) -> Callable[[Request], Response]:
    def respond(request: Request) -> Response:
        text = body if isinstance(body, str) else json.dumps(body or {"message": f"error {code}"})
        return Response(text, status=code, headers=headers, content_type="application/json")

    return respond


@dataclass
class ProviderDouble:
    server: HTTPServer
    submit_script: deque[Callable[[Request], Response]] = field(default_factory=deque)
    status_script: deque[Callable[[Request], Response]] = field(default_factory=deque)
    calls: list[RecordedCall] = field(default_factory=list)
    default_submit: Callable[[Request], Response] = ok_submit
    default_status: Callable[[Request], Response] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.server.expect_request(f"{API_PREFIX}/denoise", method="POST").respond_with_handler(self._submit)
        self.server.expect_request(f"{API_PREFIX}/byId", method="GET").respond_with_handler(self._status)

    @property
    def base_url(self) -> str:
        return self.server.url_for(API_PREFIX)

    @property
    def submissions(self) -> list[RecordedCall]:
        return [call for call in self.calls if call.path.endswith("/denoise")]

    def then(self, *handlers: Callable[[Request], Response]) -> None:
        self.submit_script.extend(handlers)

    def _record(self, request: Request) -> None:
        files = {name: storage.read() for name, storage in request.files.items()}
        call = RecordedCall(
            request.method,
            request.path,
            dict(request.headers),
            dict(request.form),
            files,
            dict(request.args),
        )
        with self._lock:
            self.calls.append(call)

    def _submit(self, request: Request) -> Response:
        self._record(request)
        with self._lock:
            handler = self.submit_script.popleft() if self.submit_script else self.default_submit
        return handler(request)

    def _status(self, request: Request) -> Response:
        self._record(request)
        with self._lock:
            handler = self.status_script.popleft() if self.status_script else self.default_status
        if handler is None:
            return Response(json.dumps({"success": False, "message": "not found"}), status=404)
        return handler(request)
