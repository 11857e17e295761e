"""Copy provider outputs into S3: streamed (never a whole file in memory), guarded against SSRF, capped in size and
bounded in time; staged outputs are then promoted to their final keys by a server-side copy.

What may be fetched, and at which addresses, is url_policy.py's decision. Here:
- Each hop (redirects are followed by hand, each checked like the first) is one urllib3 connection to an address
  the policy checked, presenting the URL's host name in the Host header, the TLS SNI and the certificate check. The
  name is never resolved again, so DNS rebinding cannot move the connection. (requests would resolve the name a
  second time, and would read proxies and .netrc credentials from the environment: it is not used here.)
- TLS is verified against `ca_bundle` when given (the local stack's throwaway CA), else certifi's bundle.
- A Content-Encoding urllib3 can undo (gzip, deflate; br/zstd when their packages are installed) is decoded and the
  decoded audio stored; any other coding is refused. The byte cap counts decoded bytes (a zip bomb is refused), the
  completeness check counts the bytes that crossed the wire against Content-Length.
- A deadline (a `time.monotonic()` value) clips every timeout and cuts the connection when it passes, so a body
  trickling in inside the read timeout is stopped too; S3 writes of a late copy are refused, and a write already in
  flight when the deadline passes is removed once it returns.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from http.client import HTTPException
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urljoin

import certifi
import urllib3.exceptions
from boto3.s3.transfer import TransferConfig, create_transfer_manager
from botocore.exceptions import BotoCoreError, ClientError
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.response import HTTPResponse
from urllib3.util import parse_url

from .url_policy import CopyError, OutputRefused, Resolver, Target, UrlPolicy, is_public_address, resolve_addresses

if TYPE_CHECKING:
    from botocore.client import BaseClient
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import CopySourceTypeDef

__all__ = [
    "CopyDeadlineExceeded",
    "CopyError",
    "OutputCopier",
    "OutputRefused",
    "OutputTooLarge",
    "Resolver",
    "Target",
    "UrlPolicy",
    "is_public_address",
    "resolve_addresses",
]

MAX_REDIRECTS = 3
MIB = 1024 * 1024
MAX_DISCARDED_VERSIONS = 50
MAX_PARTS = 10_000  # S3: parts in one multipart upload
PROMOTE_PART_BYTES = 512 * MIB
RATE_GRACE_SECONDS = 30.0
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})
_NETWORK_ERRORS = (OSError, HTTPException, urllib3.exceptions.HTTPError)


class OutputTooLarge(CopyError):
    """The output exceeds the byte cap; retrying cannot help."""


class CopyDeadlineExceeded(CopyError):
    """The copy did not finish by its deadline and kept nothing; another attempt with more time may succeed."""


class _Clock:
    """One copy's deadline (or none). Clips timeouts and, armed on a connection, cuts that connection when the
    deadline passes: socket timeouts alone cannot stop a peer that sends one byte just inside every read timeout."""

    def __init__(self, deadline: float | None) -> None:
        self._deadline = deadline
        self._lock = threading.Lock()
        self._expired = False
        self._connection: HTTPConnection | None = None
        self._socket: socket.socket | None = None
        self._timer: threading.Timer | None = None
        if deadline is not None:
            self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._expire)
            self._timer.daemon = True
            self._timer.start()

    def passed(self) -> bool:
        return self._expired or (self._deadline is not None and time.monotonic() >= self._deadline)

    def check(self) -> None:
        if self.passed():
            raise CopyDeadlineExceeded("the copy did not finish by its deadline")

    def clip(self, timeout: float) -> float:
        """`timeout`, shortened to the time left; raises CopyDeadlineExceeded when none is left."""
        self.check()
        if self._deadline is None:
            return timeout
        return max(0.001, min(timeout, self._deadline - time.monotonic()))

    def failure(self, message: str) -> CopyError:
        """The error for an interrupted step: a cut at the deadline shows up as a broken connection."""
        if self.passed():
            return CopyDeadlineExceeded(f"the copy did not finish by its deadline ({message})")
        return CopyError(message)

    def arm(self, connection: HTTPConnection) -> None:
        """Cut `connection` at the deadline: whatever socket it has while it connects, then `hold`'s."""
        with self._lock:
            self._connection, self._socket = connection, None

    def hold(self, sock: object) -> None:
        """The connected socket itself: http.client drops it from the connection once a response will close it."""
        with self._lock:
            self._socket = sock if isinstance(sock, socket.socket) else None

    def disarm(self, connection: HTTPConnection) -> None:
        """Call before closing `connection`, so the timer never shuts down a socket that is being closed."""
        with self._lock:
            if self._connection is connection:
                self._connection, self._socket = None, None

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            self._connection, self._socket = None, None

    def _expire(self) -> None:
        with self._lock:
            self._expired = True
            sock = self._socket or (self._connection.sock if self._connection is not None else None)
            if isinstance(sock, socket.socket):
                with contextlib.suppress(OSError):
                    # The plain socket's shutdown (not SSLSocket's, which also drops its TLS state): a read blocked
                    # in another thread returns at once.
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _content_codings(header: str) -> list[str]:
    """The body's content codings (none for `identity`); OutputRefused unless urllib3 can undo every one."""
    codings = [coding.strip().lower() for coding in header.split(",") if coding.strip()]
    if codings == ["identity"]:
        return []
    unknown = [coding for coding in codings if coding not in HTTPResponse.CONTENT_DECODERS]
    if unknown:
        raise OutputRefused(f"output is sent with content coding {', '.join(unknown)}, which cannot be decoded")
    return codings


class _Body:
    """The response body as a file for the S3 transfer: decoded bytes, each read filled to the size asked for (a read
    is a part, and S3 refuses parts under 5 MiB), the byte cap, the deadline, and a completeness check at the end."""

    def __init__(
        self, response: HTTPResponse, max_bytes: int, expected: int | None, clock: _Clock, min_rate: float
    ) -> None:
        self._response = response
        self._max = max_bytes
        self._expected = expected  # Content-Length: bytes on the wire, before any decoding
        self._clock = clock
        self._min_rate = min_rate
        self._started = time.monotonic()
        self.count = 0  # decoded bytes handed out

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            return b"".join(iter(lambda: self.read(MIB), b""))
        if size == 0:
            return b""
        chunk = self._next(size)
        if len(chunk) == size or not chunk:
            return chunk
        pieces, got = [chunk], len(chunk)
        while got < size and (chunk := self._next(size - got)):
            pieces.append(chunk)
            got += len(chunk)
        return b"".join(pieces)

    def _next(self, size: int) -> bytes:
        self._clock.check()
        try:
            chunk = self._response.read(size)
        except _NETWORK_ERRORS as exc:
            raise self._clock.failure(f"download interrupted after {self.count} bytes: {type(exc).__name__}") from exc
        self.count += len(chunk)
        if self.count > self._max:
            raise OutputTooLarge(f"output exceeds the {self._max}-byte cap")
        self._check_rate()
        if not chunk:
            self._clock.check()  # a connection cut at the deadline can look like the end of the body
            received = self._response.tell()  # bytes read off the wire, before decoding
            if self._expected is not None and received != self._expected:
                raise CopyError(f"download ended after {received} of {self._expected} bytes")
        return chunk

    def _check_rate(self) -> None:
        """A body that arrives slower than the minimum rate (after a grace period) will not make it: stop it now, so
        the attempt ends and is retried instead of running into the deadline."""
        elapsed = time.monotonic() - self._started
        if self._min_rate and elapsed > RATE_GRACE_SECONDS:
            rate = self._response.tell() / elapsed
            if rate < self._min_rate:
                raise CopyError(f"output arrives at {rate:.0f} bytes/s, under the minimum of {self._min_rate:.0f}")


class _Download:
    """One answered request: its connection and response, closed together."""

    def __init__(self, connection: HTTPConnection, response: HTTPResponse, clock: _Clock) -> None:
        self.connection = connection
        self.response = response
        self._clock = clock

    def body(self, max_bytes: int, min_rate: float) -> _Body:
        codings = _content_codings(self.response.headers.get("Content-Encoding", ""))
        length = self.response.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        if not codings and expected is not None and expected > max_bytes:
            raise OutputTooLarge(f"output is {expected} bytes, over the {max_bytes}-byte cap")
        return _Body(self.response, max_bytes, expected, self._clock, min_rate)

    def close(self) -> None:
        self._clock.disarm(self.connection)
        self.response.close()
        self.connection.close()

    def __enter__(self) -> _Download:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class _TimedClient:
    """The S3 client as one copy's transfer sees it: no write starts once the copy's deadline has passed (s3transfer
    then aborts the multipart upload), and the version the upload made is kept, so a late finish can be taken back.
    One per copy, so concurrent copies never see each other's deadlines."""

    def __init__(self, s3: S3Client, clock: _Clock) -> None:
        self._s3 = s3
        self._clock = clock
        self.version: str | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s3, name)

    def put_object(self, **params: Any) -> Any:
        self._clock.check()
        answer = self._s3.put_object(**params)
        self.version = answer.get("VersionId")
        return answer

    def create_multipart_upload(self, **params: Any) -> Any:
        self._clock.check()
        return self._s3.create_multipart_upload(**params)

    def upload_part(self, **params: Any) -> Any:
        self._clock.check()
        return self._s3.upload_part(**params)

    def complete_multipart_upload(self, **params: Any) -> Any:
        self._clock.check()
        answer = self._s3.complete_multipart_upload(**params)
        self.version = answer.get("VersionId")
        return answer


def _bounded_transfer_config() -> TransferConfig:
    """Multipart in 8 MiB parts, at most 3 parts in memory (boto3's constructor does not expose that knob): three
    parts upload while the next one is read, 32 MiB of buffers in all."""
    config = TransferConfig(multipart_threshold=8 * MIB, multipart_chunksize=8 * MIB, max_concurrency=3)
    config.max_in_memory_upload_chunks = 3
    return config


def _promote_config(config: TransferConfig) -> TransferConfig:
    """The server-side copy of a promotion in parts of PROMOTE_PART_BYTES: no byte passes through this process, so
    a part costs only a request, and fewer, larger parts (S3 allows 5 GiB) mean fewer requests."""
    return TransferConfig(
        multipart_threshold=config.multipart_threshold,
        multipart_chunksize=PROMOTE_PART_BYTES,
        max_concurrency=config.max_request_concurrency,
    )


class OutputCopier:
    def __init__(
        self,
        s3: S3Client,
        policy: UrlPolicy,
        *,
        max_bytes: int,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        transfer_config: TransferConfig | None = None,
        ca_bundle: str | None = None,
        min_bytes_per_second: float = 0.0,
    ) -> None:
        """`ca_bundle`: a PEM file of the CAs output downloads trust (None: certifi's bundle).
        `min_bytes_per_second`: a download slower than this (after RATE_GRACE_SECONDS) is stopped; 0 = no minimum."""
        self._min_rate = min_bytes_per_second
        self._s3 = s3
        self._policy = policy
        self._max = max_bytes
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        # Bounded memory: at most max_in_memory_upload_chunks × multipart_chunksize buffered at once.
        self._config = transfer_config or _bounded_transfer_config()
        self._promote_config = _promote_config(self._config)
        # The body's size is unknown up front, so the part size cannot grow to fit: the cap must fit 10,000 parts.
        if max_bytes > MAX_PARTS * self._config.multipart_chunksize:
            raise ValueError(
                f"max_bytes {max_bytes} does not fit {MAX_PARTS} parts of {self._config.multipart_chunksize} bytes"
            )
        self._tls = ssl.create_default_context(cafile=ca_bundle or certifi.where())

    @property
    def policy(self) -> UrlPolicy:
        return self._policy

    def copy(
        self,
        url: str,
        bucket: str,
        key: str,
        *,
        content_type: str,
        metadata: dict[str, str],
        deadline: float | None = None,
    ) -> int:
        """Stream `url` into s3://bucket/key; returns the stored (decoded) byte count.

        Nothing is kept unless the body is whole, within the cap and in time. `deadline` (a `time.monotonic()`
        value) bounds the connection, every read and the upload: past it, CopyDeadlineExceeded, with no object and
        no open multipart upload left behind.
        """
        clock = _Clock(deadline)
        try:
            with self._open(url, clock) as download:
                body = download.body(self._max, self._min_rate)
                self._upload(body, bucket, key, {"ContentType": content_type, "Metadata": metadata}, clock)
                return body.count
        finally:
            clock.stop()

    def promote(self, bucket: str, staging_key: str, final_key: str) -> None:
        """Make a staged output visible at `final_key`: a server-side copy that keeps ContentType and user metadata,
        then the staged version is deleted (by version id: no delete marker, no noncurrent copy left to expire).
        Below the transfer threshold one CopyObject (the head has told the size, which boto3's managed copy would
        ask again); above it boto3's managed copy in parts, so objects over CopyObject's 5 GB limit too.
        Raises CopyError."""
        try:
            head = self._s3.head_object(Bucket=bucket, Key=staging_key)
            version = head.get("VersionId")
            source: CopySourceTypeDef = {"Bucket": bucket, "Key": staging_key}
            if head["ContentLength"] < self._promote_config.multipart_threshold:
                self._s3.copy_object(CopySource=source, Bucket=bucket, Key=final_key)
            else:
                self._s3.copy(source, bucket, final_key, Config=self._promote_config)
            if version and version != "null":  # the staged version itself, not a delete marker over it
                self._s3.delete_object(Bucket=bucket, Key=staging_key, VersionId=version)
            else:
                self._s3.delete_object(Bucket=bucket, Key=staging_key)
        except (BotoCoreError, ClientError) as exc:
            raise CopyError(f"cannot promote s3://{bucket}/{staging_key} to {final_key}: {exc}") from exc

    def discard(self, bucket: str, key: str, *, job_id: str) -> int:
        """Remove what `job_id` wrote at `key`, so a failed job leaves no partial set of outputs; returns the count.

        Output keys come from the input key, which a re-upload (another job) shares: only versions whose
        `job-id` metadata is this job's are removed, newest first and by version id, so an earlier job's output
        becomes current again and a version another job writes meanwhile is never touched.
        Raises CopyError when S3 cannot be asked or refuses.
        """
        try:
            return self._discard_versions(bucket, key, job_id)
        except (BotoCoreError, ClientError) as exc:
            raise CopyError(f"cannot remove s3://{bucket}/{key}: {exc}") from exc

    def _discard_versions(self, bucket: str, key: str, job_id: str) -> int:
        removed = 0
        while removed < MAX_DISCARDED_VERSIONS:
            try:
                head = self._s3.head_object(Bucket=bucket, Key=key)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in _NOT_FOUND:
                    break
                raise
            if head.get("Metadata", {}).get("job-id") != job_id:
                break
            version = head.get("VersionId")
            if not version or version == "null":  # unversioned bucket: the object is gone for good
                self._s3.delete_object(Bucket=bucket, Key=key)
                return removed + 1
            self._s3.delete_object(Bucket=bucket, Key=key, VersionId=version)
            removed += 1
        return removed

    # ------------------------------------------------------------------------------------------------ upload side
    def _upload(self, body: _Body, bucket: str, key: str, extra: dict[str, Any], clock: _Clock) -> None:
        s3 = _TimedClient(self._s3, clock)
        try:
            # s3transfer calls only S3 operations and `meta` on its client: the wrapper stands in for it.
            with create_transfer_manager(cast("BaseClient", s3), self._config) as manager:
                manager.upload(body, bucket, key, extra_args=extra).result()  # type: ignore[arg-type]
        except (BotoCoreError, ClientError) as exc:
            raise CopyError(f"cannot store s3://{bucket}/{key}: {exc}") from exc
        if clock.passed():  # the last write began in time and returned late: take back the version it made
            self._withdraw(bucket, key, s3.version)
            raise CopyDeadlineExceeded("the copy finished after its deadline; its object was removed")

    def _withdraw(self, bucket: str, key: str, version: str | None) -> None:
        try:
            if version and version != "null":
                self._s3.delete_object(Bucket=bucket, Key=key, VersionId=version)
            else:
                self._s3.delete_object(Bucket=bucket, Key=key)
        except (BotoCoreError, ClientError) as exc:
            raise CopyError(f"the copy finished after its deadline and cannot be removed: {exc}") from exc

    # ---------------------------------------------------------------------------------------------- download side
    def _open(self, url: str, clock: _Clock) -> _Download:
        for _ in range(MAX_REDIRECTS + 1):
            target = self._policy.resolve(url)
            download = self._request(target, clock)
            status = download.response.status
            location = download.response.headers.get("Location")
            if status in _REDIRECTS and location:
                download.close()
                url = urljoin(url, location)
                continue
            if status != 200:
                download.close()
                raise CopyError(f"output URL answered HTTP {status}")
            return download
        raise OutputRefused(f"more than {MAX_REDIRECTS} redirects")

    def _request(self, target: Target, clock: _Clock) -> _Download:
        """GET the target from the first of its checked addresses that accepts a connection."""
        try:
            path = parse_url(target.url).request_uri
        except ValueError as exc:
            raise OutputRefused(f"unusable output URL: {exc}") from exc
        headers = {"Host": target.host_header, "Accept-Encoding": "identity", "User-Agent": "denoise-pipeline"}
        refused: Exception | None = None
        for address in target.addresses:
            connection = self._connect(target, address, clock)
            if isinstance(connection, Exception):
                refused = connection
                continue
            with contextlib.ExitStack() as on_error:  # the connection is closed unless it is handed over
                on_error.callback(self._close, connection, clock)
                try:
                    connection.timeout = clock.clip(self._read_timeout)
                    connection.request("GET", path, headers=headers, preload_content=False, decode_content=True)
                    response = connection.getresponse()
                except _NETWORK_ERRORS as exc:
                    raise clock.failure(f"cannot fetch output from {target.host}: {type(exc).__name__}") from exc
                on_error.pop_all()
                return _Download(connection, response, clock)
        raise clock.failure(f"cannot connect to {target.host}: {type(refused).__name__}")

    def _connect(self, target: Target, address: str, clock: _Clock) -> HTTPConnection | Exception:
        """A connection to `address` that presents `target.host`; the exception instead when nobody answers there
        (the caller tries the next address). TLS failures are raised: another address would not fix them."""
        timeout = clock.clip(self._connect_timeout)
        connection: HTTPConnection
        if target.scheme == "https":
            connection = HTTPSConnection(
                address, target.port, timeout=timeout, server_hostname=target.host, ssl_context=self._tls
            )
        else:
            connection = HTTPConnection(address, target.port, timeout=timeout)
        clock.arm(connection)
        try:
            connection.connect()
            clock.hold(connection.sock)
        except urllib3.exceptions.ConnectTimeoutError as exc:  # includes NewConnectionError (refused, unreachable)
            self._close(connection, clock)
            return exc
        except _NETWORK_ERRORS as exc:
            self._close(connection, clock)
            raise clock.failure(f"cannot connect to {target.host}: {type(exc).__name__}: {exc}") from exc
        return connection

    @staticmethod
    def _close(connection: HTTPConnection, clock: _Clock) -> None:
        clock.disarm(connection)
        connection.close()
