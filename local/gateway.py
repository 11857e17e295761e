"""The HTTP API of the template: its routes (from the transformed OpenAPI body) turned into payload v2 events.

Like API Gateway's Lambda proxy integration: the function is invoked synchronously; a function error answers 500
`{"message":"Internal Server Error"}`, and a function still running after the integration timeout (30 s, HTTP API's
maximum) answers 503 `{"message":"Service Unavailable"}` while the invocation goes on.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .lambdas.event_sources import Function
from .lambdas.events import http_api_event

INTEGRATION_TIMEOUT_SECONDS = 30.0
Route = tuple[str, str, re.Pattern[str], Function | None]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    """The provider's callbacks arrive together: socketserver's backlog of 5 would drop some connections."""


class Gateway:
    def __init__(self, port: int = 0) -> None:
        """Binds the port at once: the functions' environment holds the gateway's URL before routes exist."""
        self._routes: list[Route] = []
        self._pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="gateway-invoke")
        self._server = _Server(("127.0.0.1", port), self._handler_class())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="gateway", daemon=True)

    def start(self, routes: Mapping[tuple[str, str], Function | None]) -> Gateway:
        """`routes`: (method, path template such as /webhooks/{job_id}/{token}) → the integrated function, None when
        no Lambda permission lets the API invoke it (API Gateway then answers 500)."""
        self._routes = [(method, path, _route_pattern(path), function) for (method, path), function in routes.items()]
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for serve_forever, forever if it never ran
            self._server.shutdown()
        self._server.server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def answer(
        self, method: str, raw_path: str, headers: Mapping[str, str], body: bytes, source_ip: str
    ) -> tuple[int, dict[str, str], bytes]:
        path, _, query = raw_path.partition("?")
        for route_method, route, pattern, function in self._routes:
            match = pattern.fullmatch(path)
            if match is None or route_method != method:
                continue
            if function is None:
                return _json(500, b'{"message":"Internal Server Error"}')
            event = http_api_event(
                method, path, f"{route_method} {route}", match.groupdict(), dict(headers), body, source_ip, query
            )
            future = self._pool.submit(function.invoke, event)
            try:
                result = future.result(timeout=INTEGRATION_TIMEOUT_SECONDS)
            except FutureTimeout:
                return _json(503, b'{"message":"Service Unavailable"}')
            if result.error_type is not None:
                return _json(500, b'{"message":"Internal Server Error"}')
            return _proxy_answer(result.payload)
        return _json(404, b'{"message":"Not Found"}')

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
                return

            def do_POST(self) -> None:  # noqa: N802 - stdlib name
                self._dispatch("POST")

            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                self._dispatch("GET")

            def do_PUT(self) -> None:  # noqa: N802 - stdlib name
                self._dispatch("PUT")

            def do_DELETE(self) -> None:  # noqa: N802 - stdlib name
                self._dispatch("DELETE")

            def do_PATCH(self) -> None:  # noqa: N802 - stdlib name
                self._dispatch("PATCH")

            def _dispatch(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {name.lower(): value for name, value in self.headers.items()}
                status, answer_headers, data = gateway.answer(method, self.path, headers, body, self.client_address[0])
                self.send_response(status)
                for name, value in answer_headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


def _json(status: int, body: bytes) -> tuple[int, dict[str, str], bytes]:
    return status, {"content-type": "application/json"}, body


def _proxy_answer(answer: Any) -> tuple[int, dict[str, str], bytes]:
    """Payload v2 response: statusCode/headers/body (base64 when isBase64Encoded); an answer without statusCode is
    the JSON body of a 200; an answer API Gateway cannot read is a 500."""
    if not isinstance(answer, Mapping) or "statusCode" not in answer:
        return _json(200, json.dumps(answer).encode())
    try:
        payload = answer.get("body") or ""
        data = base64.b64decode(payload, validate=True) if answer.get("isBase64Encoded") else str(payload).encode()
        headers = {str(name): str(value) for name, value in (answer.get("headers") or {}).items()}
        return int(answer["statusCode"]), headers, data
    except (TypeError, ValueError, binascii.Error):
        return _json(500, b'{"message":"Internal Server Error"}')


def _route_pattern(route: str) -> re.Pattern[str]:
    """`/webhooks/{job_id}/{token}` → a regex with one named group per path parameter."""
    parts = re.split(r"(\{[^}/]+\})", route)
    regex = "".join(f"(?P<{part[1:-1]}>[^/]+)" if part.startswith("{") else re.escape(part) for part in parts)
    return re.compile(regex)
