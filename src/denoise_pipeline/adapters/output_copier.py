"""Copy provider outputs into S3: streamed (never a whole file in memory), guarded against SSRF, capped in size.

Allowlist entries come in two forms (setting OUTPUT_HOST_ALLOWLIST):
- a bare host (`lalals.s3.amazonaws.com`): https on port 443 only, and every address it resolves to must be public;
- an explicit origin (`http://127.0.0.1:8765`): exactly that scheme, host and port. Writing an origin down is the
  operator's consent to reach it, which is how the local stack lets its provider serve outputs over loopback.
Redirects are followed by hand, each hop checked like the first.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.client import HTTPException
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3.exceptions
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

Resolver = Callable[[str, int], Sequence[str]]
MAX_REDIRECTS = 3
MIB = 1024 * 1024
MAX_DISCARDED_VERSIONS = 50


class CopyError(Exception):
    """The copy did not finish; worth another attempt (connection cut, 5xx, 404, timeout)."""


class OutputRefused(CopyError):
    """The URL is not one we will ever fetch (scheme, host, port or address); retrying cannot help."""


class OutputTooLarge(CopyError):
    """The output exceeds the byte cap; retrying cannot help."""


def resolve_addresses(host: str, port: int) -> list[str]:
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})


@dataclass(frozen=True)
class _Origin:
    scheme: str
    host: str
    port: int


def _origin(url: str) -> _Origin:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError as exc:
        raise OutputRefused(f"invalid port in output URL: {exc}") from exc
    if scheme not in {"http", "https"} or not parts.hostname:
        raise OutputRefused(f"not an http(s) URL: scheme {scheme!r}")
    if parts.username or parts.password:
        raise OutputRefused("credentials in output URL")
    return _Origin(scheme, parts.hostname.lower().rstrip("."), port or (443 if scheme == "https" else 80))


class UrlPolicy:
    def __init__(self, allowlist: Sequence[str], resolver: Resolver = resolve_addresses) -> None:
        self._hosts: set[str] = set()
        self._origins: set[_Origin] = set()
        for entry in allowlist:
            if "://" in entry:
                self._origins.add(_origin(entry))
            else:
                self._hosts.add(entry.lower().rstrip("."))
        self._resolver = resolver

    def check(self, url: str) -> None:
        """Static checks (no network): scheme, host and port against the allowlist."""
        self._classify(url)

    def check_resolved(self, url: str) -> None:
        """Static checks plus DNS: a bare allowlisted host must not resolve to a non-public address."""
        origin, explicit = self._classify(url)
        if explicit:
            return
        try:
            addresses = self._resolver(origin.host, origin.port)
        except OSError as exc:
            raise CopyError(f"cannot resolve {origin.host}: {exc}") from exc
        if not addresses:
            raise CopyError(f"{origin.host} resolves to nothing")
        for address in addresses:
            ip = ipaddress.ip_address(address.split("%")[0])
            if not ip.is_global or ip.is_multicast:
                raise OutputRefused(f"{origin.host} resolves to a non-public address ({ip})")

    def _classify(self, url: str) -> tuple[_Origin, bool]:
        origin = _origin(url)
        if origin in self._origins:
            return origin, True
        if origin.scheme != "https":
            raise OutputRefused(f"only https output URLs are allowed, got {origin.scheme}://{origin.host}")
        if origin.host not in self._hosts or origin.port != 443:
            raise OutputRefused(f"output host {origin.host}:{origin.port} is not on the allowlist")
        return origin, False


class _CappedReader:
    """File-like view of a response body that counts bytes, enforces the cap and detects a short body."""

    def __init__(self, raw: Any, max_bytes: int, expected: int | None) -> None:
        self._raw = raw
        self._max = max_bytes
        self._expected = expected
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        try:
            chunk: bytes = self._raw.read(size if size and size > 0 else MIB)
        except (requests.RequestException, OSError, HTTPException, urllib3.exceptions.HTTPError) as exc:
            raise CopyError(f"download interrupted after {self.count} bytes: {type(exc).__name__}") from exc
        self.count += len(chunk)
        if self.count > self._max:
            raise OutputTooLarge(f"output exceeds the {self._max}-byte cap")
        if not chunk and self._expected is not None and self.count != self._expected:
            raise CopyError(f"download ended after {self.count} of {self._expected} bytes")
        return chunk


def _bounded_transfer_config() -> TransferConfig:
    """Multipart in 8 MiB parts, at most 4 parts in memory (boto3's constructor does not expose that knob)."""
    config = TransferConfig(multipart_threshold=8 * MIB, multipart_chunksize=8 * MIB, max_concurrency=4)
    config.max_in_memory_upload_chunks = 4
    return config


class OutputCopier:
    def __init__(
        self,
        s3: S3Client,
        policy: UrlPolicy,
        *,
        max_bytes: int,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        session: requests.Session | None = None,
        transfer_config: TransferConfig | None = None,
    ) -> None:
        self._s3 = s3
        self._policy = policy
        self._max = max_bytes
        self._timeout = (connect_timeout, read_timeout)
        self._session = session or requests.Session()
        # Bounded memory: at most max_in_memory_upload_chunks × multipart_chunksize buffered at once.
        self._config = transfer_config or _bounded_transfer_config()

    @property
    def policy(self) -> UrlPolicy:
        return self._policy

    def copy(self, url: str, bucket: str, key: str, *, content_type: str, metadata: dict[str, str]) -> int:
        """Stream `url` into s3://bucket/key; returns the byte count. Nothing is written unless the body is whole."""
        with self._open(url) as response:
            length = response.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else None
            if expected is not None and expected > self._max:
                raise OutputTooLarge(f"output is {expected} bytes, over the {self._max}-byte cap")
            response.raw.decode_content = True
            reader = _CappedReader(response.raw, self._max, expected)
            self._s3.upload_fileobj(
                reader,  # type: ignore[arg-type]
                bucket,
                key,
                ExtraArgs={"ContentType": content_type, "Metadata": metadata},
                Config=self._config,
            )
            return reader.count

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
                if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
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

    def _open(self, url: str) -> requests.Response:
        for _ in range(MAX_REDIRECTS + 1):
            self._policy.check_resolved(url)
            try:
                response = self._session.get(url, stream=True, allow_redirects=False, timeout=self._timeout)
            except requests.RequestException as exc:
                raise CopyError(f"cannot fetch output: {type(exc).__name__}") from exc
            if response.is_redirect and "Location" in response.headers:
                response.close()
                url = urljoin(url, response.headers["Location"])
                continue
            if response.status_code != 200:
                response.close()
                raise CopyError(f"output URL answered HTTP {response.status_code}")
            return response
        raise OutputRefused(f"more than {MAX_REDIRECTS} redirects")
