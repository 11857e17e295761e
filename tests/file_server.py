"""A real HTTP server for provider output files, with the failure modes the copy must survive."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class FileSpec:
    body_size: int
    # ok | cut | cut-once (cut, then whole) | 404 | redirect | trickle (one byte a second) | gated (waits for `gate`)
    mode: str = "ok"
    location: str = ""
    seed: int = 0
    gate: threading.Event = field(default_factory=threading.Event)

    def chunk(self, offset: int, size: int) -> bytes:
        """Deterministic content, generated on the fly so a 200 MB file costs no memory here either."""
        pattern = bytes((i * 31 + self.seed) % 251 for i in range(251))
        start = offset % 251
        repeated = pattern[start:] + pattern * (size // 251 + 2)
        return repeated[:size]

    def content(self) -> bytes:
        return self.chunk(0, self.body_size)


@dataclass
class OutputFileServer:
    files: dict[str, FileSpec] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def origin(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return f"{self.origin}{path}"

    def add(self, path: str, spec: FileSpec) -> str:
        self.files[path] = spec
        return self.url(path)


def _handler(state: OutputFileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
            return

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            state.hits.append(self.path)
            spec = state.files.get(self.path)
            if spec is None or spec.mode == "404":
                self.send_error(404)
                return
            if spec.mode == "redirect":
                self.send_response(302)
                self.send_header("Location", spec.location)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(spec.body_size))
            self.end_headers()
            cut = spec.mode == "cut" or (spec.mode == "cut-once" and state.hits.count(self.path) == 1)
            limit = spec.body_size // 2 if cut else spec.body_size
            if spec.mode == "gated":
                spec.gate.wait(30)
            sent = 0
            while sent < limit:
                size = 1 if spec.mode == "trickle" else min(1024 * 1024, limit - sent)
                if spec.mode == "trickle" and sent:
                    time.sleep(1)
                try:
                    self.wfile.write(spec.chunk(sent, size))
                except (BrokenPipeError, ConnectionResetError):
                    return
                sent += size
            if cut:
                self.close_connection = True
                self.connection.shutdown(2)

    return Handler


@contextmanager
def output_file_server() -> Iterator[OutputFileServer]:
    state = OutputFileServer()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.server = server
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
