"""Lambda's Runtime API (2018-06-01) for one execution environment, on 127.0.0.1.

The runtime interface client in the function's process polls `GET /invocation/next`; its first poll ends the init
phase. It answers each event with `POST /invocation/{id}/response` or `/invocation/{id}/error`, and reports a failed
init (an import error, a raising module) with `POST /init/error`. Invocation errors carry their errorType in the JSON
body only; an init error also names it in the Lambda-Runtime-Function-Error-Type header.
"""

from __future__ import annotations

import json
import queue
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFIX = "/2018-06-01/runtime"
MAX_RESPONSE_BYTES = 6_291_556  # Lambda's synchronous response limit (6 MB), as its error message states it
ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"


def error_body(error_type: str, message: str) -> bytes:
    return json.dumps({"errorMessage": message, "errorType": error_type}).encode()


@dataclass(frozen=True)
class Outcome:
    """How an invocation (or the init phase) ended: the body the runtime posted, and an error type unless it
    succeeded."""

    body: bytes
    error_type: str | None = None


class Invocation:
    """One event handed to the runtime. The first outcome wins: the response and the watchdog (a timeout, a dead
    process) may race."""

    def __init__(self, request_id: str, event: bytes, headers: dict[str, str]) -> None:
        self.request_id = request_id
        self.event = event
        self.headers = headers
        self._outcome: Outcome | None = None
        self._lock = threading.Lock()
        self._done = threading.Event()

    def finish(self, outcome: Outcome) -> bool:
        """Records the outcome unless one already is; True when this one counts."""
        with self._lock:
            if self._outcome is not None:
                return False
            self._outcome = outcome
        self._done.set()
        return True

    def wait(self, timeout: float) -> Outcome | None:
        self._done.wait(timeout)
        return self._outcome


class RuntimeApiServer(ThreadingHTTPServer):
    """The Runtime API of one execution environment: one invocation at a time, one port per environment (the
    runtime's paths are fixed, AWS_LAMBDA_RUNTIME_API is only host:port)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.current: Invocation | None = None
        self.init_error: Outcome | None = None
        self._settled = threading.Event()  # init is over: the first /next, or /init/error
        self._pending: queue.Queue[Invocation | None] = queue.Queue()
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.1}, name=f"runtime-api-{self.port}", daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def wait_init(self, timeout: float) -> bool:
        """True once the runtime finished its init phase, well or not (then `init_error` says how)."""
        return self._settled.wait(timeout)

    def submit(self, invocation: Invocation) -> None:
        self._pending.put(invocation)

    def next_invocation(self) -> Invocation | None:
        """Blocks the runtime's poll until an event arrives; None when the server closes."""
        self._settled.set()
        invocation = self._pending.get()
        self.current = invocation
        return invocation

    def fail_init(self, outcome: Outcome) -> None:
        self.init_error = outcome
        self._settled.set()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A killed runtime leaves broken connections behind: nothing to report."""

    def close(self) -> None:
        self._pending.put(None)  # releases a poll still waiting
        self.shutdown()  # at most one poll_interval
        self.server_close()
        self._thread.join()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # the runtime's libcurl keeps its connection alive
    # Headers and body leave in separate send()s: with Nagle, the client's delayed ACK holds each reply for ~40 ms
    # (88 ms per invocation measured, 1.1 ms without).
    disable_nagle_algorithm = True
    server: RuntimeApiServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        """Silent: the runtime's requests are not the function's logs."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path != f"{PREFIX}/invocation/next":
            self._reply(404, error_body("InvalidRequest", f"unknown path {self.path}"))
            return
        invocation = self.server.next_invocation()
        if invocation is None:
            self._reply(500, error_body("ServiceException", "the execution environment is shutting down"))
            return
        self._reply(200, invocation.event, invocation.headers)

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        parts = self.path.removeprefix(PREFIX).strip("/").split("/")
        if parts == ["init", "error"]:
            self.server.fail_init(Outcome(body, self.headers.get(ERROR_TYPE_HEADER) or "Runtime.Unknown"))
            self._reply(202, b'{"status":"OK"}')
        elif len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
            self._invocation_result(parts[1], parts[2], body)
        else:
            self._reply(404, error_body("InvalidRequest", f"unknown path {self.path}"))

    def _invocation_result(self, request_id: str, kind: str, body: bytes) -> None:
        invocation = self.server.current
        if invocation is None or invocation.request_id != request_id:
            self._reply(400, error_body("InvalidRequestID", f"unknown request id {request_id}"))
        elif kind == "response" and len(body) > MAX_RESPONSE_BYTES:
            message = f"Response payload size exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes)."
            invocation.finish(
                Outcome(error_body("Function.ResponseSizeTooLarge", message), "Function.ResponseSizeTooLarge")
            )
            self._reply(413, error_body("RequestEntityTooLarge", message))
        elif kind == "response":
            invocation.finish(Outcome(body))
            self._reply(202, b'{"status":"OK"}')
        else:
            error_type = _error_type(body) or self.headers.get(ERROR_TYPE_HEADER) or "Runtime.Unknown"
            invocation.finish(Outcome(body, error_type))
            self._reply(202, b'{"status":"OK"}')

    def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def _error_type(body: bytes) -> str | None:
    """The errorType of an error body: the runtime sends no error-type header with invocation errors."""
    try:
        document = json.loads(body)
    except ValueError:
        return None
    error_type = document.get("errorType") if isinstance(document, dict) else None
    return error_type if isinstance(error_type, str) else None
