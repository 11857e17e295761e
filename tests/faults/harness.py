"""Helpers of the fault suite: deliver S3 events, race threads, break the network, check how a run ended."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from werkzeug import Request, Response

from denoise_pipeline.adapters.capacity import CAPACITY_KEY
from denoise_pipeline.domain.job import FINAL_STATES
from denoise_pipeline.domain.outputs import OutputName
from denoise_pipeline.handlers import submit
from local.lambdas.events import s3_put_record
from tests.conftest import FakeContext, Stack
from tests.file_server import FileSpec, OutputFileServer
from tests.provider_double import conversion_of

AUDIO = b"RIFF" + bytes(range(256)) * 16
SMALL_OUTPUTS = {name: 2_000 + i for i, name in enumerate(OutputName)}


def put_object(stack: Stack, key: str, body: bytes = AUDIO) -> dict[str, Any]:
    """Upload an object and return the S3 notification record for it (deliver it as often as a test needs)."""
    put = stack.client("s3").put_object(Bucket=stack.input_bucket, Key=key, Body=body)
    return s3_put_record(stack.input_bucket, key, len(body), put["ETag"].strip('"'), put.get("VersionId"))


def deliver(record: dict[str, Any]) -> dict[str, Any]:
    """One invocation of the submit function for one S3 record, the way S3 → Lambda delivers it."""
    return dict(submit.handler({"Records": [json.loads(json.dumps(record))]}, FakeContext()))


def race[T](count: int, action: Callable[[int], T], *, timeout: float = 60) -> list[T | BaseException]:
    """Run `action(i)` in `count` threads released together by a barrier; each result or exception, in order."""
    barrier = threading.Barrier(count)
    results: list[T | BaseException] = [RuntimeError("did not finish")] * count

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = action(index)
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    return results


def job_by_key(stack: Stack, key: str) -> dict[str, Any]:
    (item,) = [item for item in stack.job_items() if item["source_key"] == key]
    return item


def submitted(stack: Stack, key: str) -> dict[str, Any]:
    """Upload `key` and deliver its event: the job must end up SUBMITTED."""
    deliver(put_object(stack, key))
    item = job_by_key(stack, key)
    assert item["status"] == "SUBMITTED", item
    return item


def wait_until_stale() -> None:
    time.sleep(1.1)  # STALE_AFTER_SECONDS is 1 in this suite (tests/faults/conftest.py)


def capacity_item(stack: Stack) -> dict[str, Any]:
    item: dict[str, Any] = stack.table.get_item(Key={"job_id": CAPACITY_KEY}, ConsistentRead=True).get("Item") or {}
    return item


def slot_holders(stack: Stack) -> set[str]:
    return {str(holder) for holder in capacity_item(stack).get("holders", set())}


def parse_time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(UTC)


def serve_outputs(files: OutputFileServer, prefix: str = "/out", *, seed: int = 0, **modes: str) -> dict[str, str]:
    """Four small provider outputs on the file server; `modes` breaks some of them (cut, 404)."""
    return {
        name.value: files.add(f"{prefix}/{name.value}", FileSpec(size, modes.get(name.value, "ok"), seed=seed + i))
        for i, (name, size) in enumerate(SMALL_OUTPUTS.items())
    }


def status_answer(status: str, task_id: str, urls: dict[str, str] | None = None, **extra: Any) -> Response:
    conversion = {
        "task_id": task_id,
        "conversion_id": conversion_of(task_id),
        "status": status,
        "status_msg": extra.pop("status_msg", status.lower()),
        "conversion_cost": "0.48",
        **(urls or {}),
        **extra,
    }
    return Response(json.dumps({"success": True, "conversion": conversion}), 200, content_type="application/json")


def by_id(status: str, urls: dict[str, str] | None = None, **extra: Any) -> Callable[[Request], Response]:
    """A GET /byId answer for whatever task the caller asks about."""

    def respond(request: Request) -> Response:
        return status_answer(status, request.args.get("task_id", ""), urls, **dict(extra))

    return respond


def output_keys(stack: Stack) -> set[str]:
    listed = stack.client("s3").list_objects_v2(Bucket=stack.output_bucket).get("Contents", [])
    return {obj["Key"] for obj in listed}


def assert_settled(stack: Stack, *, allowed: frozenset[str] = frozenset(s.value for s in FINAL_STATES)) -> None:
    """Every job is in an allowed state, failures carry a reason, and the output bucket holds whole outputs of
    completed jobs only: no partial object, no output of a failed job, no open multipart upload."""
    s3 = stack.client("s3")
    expected: set[str] = set()
    for item in stack.job_items():
        assert item["status"] in allowed, item
        if item["status"] in ("FAILED", "TIMED_OUT"):
            assert item.get("error_code"), item
            assert item.get("error_message"), item
        if item["status"] == "COMPLETED":
            keys = set(item["output_keys"].values())
            total = sum(s3.head_object(Bucket=stack.output_bucket, Key=key)["ContentLength"] for key in keys)
            assert total == item["copied_bytes"], item
            expected |= keys
    assert output_keys(stack) == expected
    assert s3.list_multipart_uploads(Bucket=stack.output_bucket).get("Uploads", []) == []


# ---------------------------------------------------------------- network faults


@contextmanager
def unresponsive_port() -> Iterator[int]:
    """A port whose accept queue is full: a connect attempt hangs until the client's connect timeout."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port: int = server.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        with suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.05)
    try:
        yield port
    finally:
        for filler in fillers:
            filler.close()
        server.close()


@contextmanager
def closed_port() -> Iterator[int]:
    """A port that is bound but not listening: every connection is refused."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    try:
        yield holder.getsockname()[1]
    finally:
        holder.close()


@dataclass
class Frontend:
    """A TCP front for the provider double: `reset` aborts each connection once the request arrives (RST),
    `forward` pipes it to the double. Switching the mode is the provider coming back, in the same container."""

    upstream: tuple[str, int]
    mode: str = "reset"
    connections: int = 0
    server: socket.socket = field(default_factory=socket.socket)

    @property
    def port(self) -> int:
        port: int = self.server.getsockname()[1]
        return port

    def start(self) -> None:
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.server.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        if self.mode == "reset":
            client.settimeout(2)
            with suppress(OSError):
                client.recv(65536)
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            client.close()
            return
        upstream = socket.create_connection(self.upstream)
        threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()
        _pipe(client, upstream)


def _pipe(source: socket.socket, target: socket.socket) -> None:
    with suppress(OSError):
        while data := source.recv(65536):
            target.sendall(data)
    with suppress(OSError):
        target.shutdown(socket.SHUT_WR)


@contextmanager
def frontend(upstream_url: str) -> Iterator[Frontend]:
    host, port = upstream_url.split("://", 1)[1].split("/", 1)[0].split(":")
    front = Frontend((host, int(port)))
    front.start()
    try:
        yield front
    finally:
        front.close()
