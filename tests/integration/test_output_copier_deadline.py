"""A copy ends by its deadline, whatever the peer does inside its timeouts, and keeps nothing when it does not."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from moto import mock_aws

from denoise_pipeline.adapters.output_copier import CopyDeadlineExceeded, CopyError, OutputCopier, UrlPolicy

pytestmark = pytest.mark.timeout(30)  # a deadline that does not hold would otherwise trickle on for minutes

BUCKET = "deadline-bucket"
MIB = 1024 * 1024
SLACK = 0.5  # how late after its deadline a copy may still be ending (thread wake-up, abort, cleanup)


@dataclass
class Trickle:
    fast: int = 0  # body bytes sent at once
    length: int | None = 1_000  # Content-Length announced (None: none, the body ends when the connection closes)
    interval: float = 0.2  # then one byte per interval, each well inside the read timeout
    slow_head: bool = False  # trickle the status line and headers too


@dataclass
class Source:
    port: int = 0
    plans: dict[str, Trickle] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def _handler(source: Source) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
            return

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            plan = source.plans[self.path]
            head = b"HTTP/1.0 200 OK\r\nContent-Type: audio/wav\r\n"
            if plan.length is not None:
                head += b"Content-Length: %d\r\n" % plan.length
            head += b"\r\n"
            try:
                if plan.slow_head:
                    self._trickle(head, plan.interval)
                else:
                    self.wfile.write(head + bytes(plan.fast))
                    self.wfile.flush()
                self._trickle(bytes(10_000), plan.interval)
            except OSError:
                return

        def _trickle(self, data: bytes, interval: float) -> None:
            for byte in data:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(interval)

    return Handler


@contextmanager
def trickling() -> Iterator[Source]:
    source = Source()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(source))
    server.daemon_threads = True
    source.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield source
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def source() -> Iterator[Source]:
    with trickling() as server:
        yield server


@pytest.fixture
def s3(aws_credentials: None) -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield client


@pytest.fixture
def calls(s3: Any) -> list[str]:
    """The S3 operations the client completed, in order."""
    done: list[str] = []
    s3.meta.events.register("after-call.s3", lambda model, **_: done.append(model.name))
    return done


def copier(s3: Any, source: Source) -> OutputCopier:
    return OutputCopier(s3, UrlPolicy([source.url("")]), max_bytes=100 * MIB, read_timeout=5.0)


def copy_until(copier: OutputCopier, url: str, seconds: float) -> float:
    """Copy with a deadline `seconds` from now; returns how late after the deadline it ended."""
    deadline = time.monotonic() + seconds
    try:
        copier.copy(url, BUCKET, "out.wav", content_type="audio/wav", metadata={"job-id": "j"}, deadline=deadline)
    finally:
        late = time.monotonic() - deadline
    return late


def nothing_left(s3: Any) -> bool:
    versions = s3.list_object_versions(Bucket=BUCKET)
    uploads = s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads")
    return not versions.get("Versions") and not versions.get("DeleteMarkers") and not uploads


def test_a_body_trickling_inside_the_read_timeout_is_stopped_at_the_deadline(s3: Any, source: Source) -> None:
    source.plans["/f"] = Trickle(fast=10)
    started = time.monotonic()
    with pytest.raises(CopyDeadlineExceeded):
        copy_until(copier(s3, source), source.url("/f"), 1.0)
    assert time.monotonic() - started < 1.0 + SLACK
    assert nothing_left(s3)


def test_a_multipart_upload_under_way_is_aborted_at_the_deadline(s3: Any, source: Source, calls: list[str]) -> None:
    source.plans["/big"] = Trickle(fast=9 * MIB, length=20 * MIB)  # one full part, then a trickle
    started = time.monotonic()
    with pytest.raises(CopyDeadlineExceeded):
        copy_until(copier(s3, source), source.url("/big"), 1.0)
    assert time.monotonic() - started < 1.0 + SLACK
    assert calls.count("CreateMultipartUpload") == calls.count("AbortMultipartUpload") == 1
    assert "UploadPart" in calls
    assert nothing_left(s3)


def test_headers_trickling_in_are_stopped_at_the_deadline(s3: Any, source: Source) -> None:
    source.plans["/slow"] = Trickle(slow_head=True, interval=0.05)
    started = time.monotonic()
    with pytest.raises(CopyDeadlineExceeded):
        copy_until(copier(s3, source), source.url("/slow"), 0.8)
    assert time.monotonic() - started < 0.8 + SLACK
    assert nothing_left(s3)


def test_a_body_without_length_cut_at_the_deadline_is_not_taken_for_a_whole_one(s3: Any, source: Source) -> None:
    source.plans["/open"] = Trickle(fast=1000, length=None)  # the end of such a body is the connection closing
    with pytest.raises(CopyDeadlineExceeded):
        copy_until(copier(s3, source), source.url("/open"), 0.8)
    assert nothing_left(s3)


def test_s3_writes_after_the_deadline_are_refused_and_the_upload_aborted(s3: Any, calls: list[str]) -> None:
    with trickling() as source:
        source.plans["/f"] = Trickle(fast=17 * MIB, length=17 * MIB)
        s3.meta.events.register("before-call.s3.UploadPart", lambda **_: time.sleep(1.0))  # slow S3
        with pytest.raises(CopyDeadlineExceeded):
            copy_until(copier(s3, source), source.url("/f"), 0.6)
    assert "CompleteMultipartUpload" not in calls
    assert "AbortMultipartUpload" in calls
    assert nothing_left(s3)


def test_a_put_that_returns_after_the_deadline_is_taken_back(s3: Any, calls: list[str]) -> None:
    s3.put_object(Bucket=BUCKET, Key="out.wav", Body=b"an earlier job's output")
    with trickling() as source:
        source.plans["/f"] = Trickle(fast=1000, length=1000)
        s3.meta.events.register("before-call.s3.PutObject", lambda **_: time.sleep(0.8))  # begins in time, ends late
        with pytest.raises(CopyDeadlineExceeded, match="removed"):
            copy_until(copier(s3, source), source.url("/f"), 0.5)
    assert calls.count("PutObject") == 2
    assert s3.get_object(Bucket=BUCKET, Key="out.wav")["Body"].read() == b"an earlier job's output"
    assert len(s3.list_object_versions(Bucket=BUCKET)["Versions"]) == 1


def test_a_copy_well_inside_its_deadline_is_kept(s3: Any, source: Source) -> None:
    source.plans["/ok"] = Trickle(fast=3 * MIB, length=3 * MIB)
    copier(s3, source).copy(
        source.url("/ok"), BUCKET, "out.wav", content_type="audio/wav", metadata={}, deadline=time.monotonic() + 30
    )
    assert s3.head_object(Bucket=BUCKET, Key="out.wav")["ContentLength"] == 3 * MIB


def test_the_deadline_error_is_a_retryable_copy_error() -> None:
    assert issubclass(CopyDeadlineExceeded, CopyError)
