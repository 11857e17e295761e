"""S3's real limits, which moto does not hold, enforced on the client so code under test meets S3's refusals.

moto stores keys over 1,024 bytes, metadata over 2 KB, single PUTs and copy sources over 5 GB. These botocore event
handlers answer such a request the way S3 does, with S3's error code, message and HTTP status, before it reaches moto
or any endpoint; the code under test sees the same `ClientError` it would get from AWS.

limit (AWS S3 user guide / API reference)          refused with (HTTP 400)  checked on
object key ≤ 1,024 bytes of UTF-8                  KeyTooLongError          PutObject, CreateMultipartUpload, CopyObject
user metadata ≤ 2 KB: UTF-8 bytes of keys+values   MetadataTooLarge (1)     the same; CopyObject only when REPLACE-ing
one PutObject ≤ 5 GiB; one part ≤ 5 GiB            EntityTooLarge           PutObject, UploadPart, UploadPartCopy
part numbers 1..10,000 (≤ 10,000 parts)            InvalidArgument          UploadPart, UploadPartCopy
every part but the last ≥ 5 MiB                    EntityTooSmall (2)       CompleteMultipartUpload
CopyObject source ≤ 5 GiB (else multipart copy)    InvalidRequest (3)       CopyObject

(1) AWS documents "the sum of the number of bytes in the UTF-8 encoding of each key and value"; the key counts
    without its `x-amz-meta-` header prefix, which is what S3 was observed to do (lakeFS PR 9909, cortx-s3server
    PR 861: 2,048 bytes accepted, 2,049 refused).
(2) S3 accepts small parts and refuses at completion; sizes are tracked per UploadId from the UploadPart and
    UploadPartCopy calls these handlers saw.
(3) The source's size is known when an instrumented client wrote it (PutObject, CompleteMultipartUpload, CopyObject);
    an object written some other way is not checked.

Bucket names, tags, request header size and the like are not enforced: nothing here depends on them.

How it is attached: botocore's event system, the SDK's public extension point (the one botocore's own Stubber uses).
`before-parameter-build.s3` sees the API parameters and judges them, `before-call.s3` answers a refusal with S3's
error response instead of sending the request, `after-call.s3` records part and object sizes once S3 (or moto)
accepted a write. `enforce_s3_limits(target)` attaches to one client, or to a boto3/botocore session (every client
that session creates from then on; a client copies its session's handlers when it is created).
`s3_limits_everywhere()` covers every client created while it is active, whatever session: it adds the handlers to
`botocore.handlers.BUILTIN_HANDLERS`, the list each new botocore session registers (moto's `mock_aws` hooks in the
same way), plus boto3's default session if it already exists. That beats patching `BaseClient._make_api_call`:
no private method is replaced, and a refusal travels botocore's own path (after-call handlers, error class lookup).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import boto3
import botocore.session
from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.client import BaseClient
from botocore.handlers import BUILTIN_HANDLERS
from botocore.hooks import BaseEventHooks

MIB = 1024**2
GIB = 1024**3
_JUDGED = "s3_limits.judged"  # request-context key carrying the verdict from before-parameter-build on


@dataclass(frozen=True)
class S3Limits:
    """AWS's numbers by default; tests of size limits may scale them down to avoid 5 GB bodies."""

    max_key_bytes: int = 1024
    max_metadata_bytes: int = 2048
    max_part_number: int = 10_000
    min_part_bytes: int = 5 * MIB
    max_part_bytes: int = 5 * GIB
    max_put_bytes: int = 5 * GIB
    max_copy_source_bytes: int = 5 * GIB


@dataclass(frozen=True)
class Refusal:
    code: str
    message: str
    status: int = 400


@dataclass(frozen=True)
class _Verdict:
    refusal: Refusal | None
    record: Callable[[], None] | None = None  # what to remember once the call succeeded


def _key_bytes(params: dict[str, Any]) -> int:
    return len(str(params.get("Key", "")).encode())


def _metadata_bytes(metadata: dict[str, str]) -> int:
    return sum(len(key.encode()) + len(value.encode()) for key, value in metadata.items())


def _body_size(params: dict[str, Any]) -> int | None:
    """Bytes the request would upload (from the current position of a seekable body); None when unknowable."""
    if params.get("ContentLength") is not None:
        return int(params["ContentLength"])
    body = params.get("Body", b"")
    if isinstance(body, bytes | bytearray | memoryview):
        return len(body)
    if isinstance(body, str):
        return len(body.encode())
    if hasattr(body, "__len__"):
        return len(body)
    if hasattr(body, "seek") and hasattr(body, "tell"):
        here = body.tell()
        end = body.seek(0, 2)
        body.seek(here)
        return int(end) - int(here)
    return None


def _copy_source(source: Any) -> tuple[str, str]:
    """(bucket, key) of a CopySource: a dict, or botocore's quoted `bucket/key?versionId=` form."""
    if isinstance(source, dict):
        return str(source.get("Bucket", "")), str(source.get("Key", ""))
    bucket, _, key = unquote(str(source).split("?", 1)[0]).lstrip("/").partition("/")
    return bucket, key


def _range_size(header: str) -> int | None:
    """Bytes in a `bytes=first-last` CopySourceRange."""
    first, _, last = header.removeprefix("bytes=").partition("-")
    return int(last) - int(first) + 1 if first.isdigit() and last.isdigit() else None


class S3LimitEnforcer:
    """The handlers and what they remember (part sizes per UploadId, object sizes), shared by every client they are
    attached to, so an upload begun by one client and completed by another is still judged."""

    def __init__(self, limits: S3Limits | None = None) -> None:
        self.limits = limits or S3Limits()
        self.active = True
        self.refusals: list[tuple[str, str]] = []  # (operation, error code), for tests that want to see them
        self._judged = f"{_JUDGED}-{id(self)}"  # each enforcer's own verdict: several may judge one request
        self._lock = threading.Lock()
        self._parts: dict[str, dict[int, int]] = {}
        self._sizes: dict[tuple[str, str], int] = {}
        self._rules: dict[str, Callable[[dict[str, Any]], _Verdict]] = {
            "PutObject": self._put_object,
            "CreateMultipartUpload": self._create_multipart_upload,
            "CopyObject": self._copy_object,
            "UploadPart": self._upload_part,
            "UploadPartCopy": self._upload_part_copy,
            "CompleteMultipartUpload": self._complete_multipart_upload,
            "AbortMultipartUpload": self._abort_multipart_upload,
        }

    # ---------------------------------------------------------------------------------------------- attachment
    def handlers(self) -> list[tuple[str, Callable[..., Any]]]:
        return [
            ("before-parameter-build.s3", self._judge),
            ("before-call.s3", self._answer),
            ("after-call.s3", self._remember),
        ]

    def attach(self, events: BaseEventHooks) -> None:
        for event, handler in self.handlers():
            events.register(event, handler, unique_id=f"s3-limits-{event}-{id(self)}")

    def detach(self, events: BaseEventHooks) -> None:
        for event, handler in self.handlers():
            events.unregister(event, handler, unique_id=f"s3-limits-{event}-{id(self)}")

    # ---------------------------------------------------------------------------------------------- handlers
    def _judge(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        rule = self._rules.get(model.name)
        if self.active and rule is not None:
            context[self._judged] = rule(params)

    def _answer(self, model: Any, context: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        verdict: _Verdict | None = context.get(self._judged)
        if verdict is None or verdict.refusal is None:
            return None
        refusal = verdict.refusal
        with self._lock:
            self.refusals.append((model.name, refusal.code))
        parsed = {
            "Error": {"Code": refusal.code, "Message": refusal.message},
            "ResponseMetadata": {
                "HTTPStatusCode": refusal.status,
                "HTTPHeaders": {},
                "RequestId": "s3-limits",  # says where the refusal came from when a test fails on it
                "RetryAttempts": 0,
            },
        }
        return AWSResponse("", refusal.status, HTTPHeaders(), None), parsed

    def _remember(self, http_response: AWSResponse, context: dict[str, Any], **_: Any) -> None:
        verdict: _Verdict | None = context.get(self._judged)
        if verdict is not None and verdict.record is not None and http_response.status_code < 300:
            with self._lock:
                verdict.record()

    # ---------------------------------------------------------------------------------------------- rules
    def _object_rules(self, params: dict[str, Any], *, metadata: bool = True) -> Refusal | None:
        if _key_bytes(params) > self.limits.max_key_bytes:
            return Refusal("KeyTooLongError", "Your key is too long")
        if metadata and _metadata_bytes(params.get("Metadata") or {}) > self.limits.max_metadata_bytes:
            return Refusal("MetadataTooLarge", "Your metadata headers exceed the maximum allowed metadata size.")
        return None

    def _too_large(self, size: int | None, limit: int) -> Refusal | None:
        if size is not None and size > limit:
            return Refusal("EntityTooLarge", "Your proposed upload exceeds the maximum allowed object size.")
        return None

    def _part_number(self, params: dict[str, Any]) -> Refusal | None:
        number = int(params.get("PartNumber", 0))
        if not 1 <= number <= self.limits.max_part_number:
            message = f"Part number must be an integer between 1 and {self.limits.max_part_number}, inclusive"
            return Refusal("InvalidArgument", message)
        return None

    def _put_object(self, params: dict[str, Any]) -> _Verdict:
        size = _body_size(params)
        refusal = self._object_rules(params) or self._too_large(size, self.limits.max_put_bytes)
        return _Verdict(refusal, lambda: self._set_size(params["Bucket"], params["Key"], size))

    def _create_multipart_upload(self, params: dict[str, Any]) -> _Verdict:
        return _Verdict(self._object_rules(params))

    def _copy_object(self, params: dict[str, Any]) -> _Verdict:
        source = _copy_source(params.get("CopySource"))
        size = self._sizes.get(source)
        refusal = self._object_rules(params, metadata=params.get("MetadataDirective") == "REPLACE")
        if refusal is None and size is not None and size > self.limits.max_copy_source_bytes:
            message = (
                "The specified copy source is larger than the maximum allowable size for a copy source: "
                f"{self.limits.max_copy_source_bytes}"
            )
            refusal = Refusal("InvalidRequest", message)
        return _Verdict(refusal, lambda: self._set_size(params["Bucket"], params["Key"], size))

    def _upload_part(self, params: dict[str, Any]) -> _Verdict:
        size = _body_size(params)
        refusal = self._part_number(params) or self._too_large(size, self.limits.max_part_bytes)
        return _Verdict(refusal, lambda: self._set_part(params["UploadId"], int(params["PartNumber"]), size))

    def _upload_part_copy(self, params: dict[str, Any]) -> _Verdict:
        copy_range = params.get("CopySourceRange")
        size = _range_size(copy_range) if copy_range else self._sizes.get(_copy_source(params.get("CopySource")))
        refusal = self._part_number(params) or self._too_large(size, self.limits.max_part_bytes)
        return _Verdict(refusal, lambda: self._set_part(params["UploadId"], int(params["PartNumber"]), size))

    def _complete_multipart_upload(self, params: dict[str, Any]) -> _Verdict:
        upload_id = str(params.get("UploadId", ""))
        listed = [int(part["PartNumber"]) for part in (params.get("MultipartUpload") or {}).get("Parts", [])]
        sizes = self._parts.get(upload_id, {})
        for number in listed[:-1]:
            if sizes.get(number, self.limits.min_part_bytes) < self.limits.min_part_bytes:
                message = "Your proposed upload is smaller than the minimum allowed object size."
                return _Verdict(Refusal("EntityTooSmall", message))
        known = [sizes.get(number) for number in listed]
        total = sum(size for size in known if size is not None) if None not in known else None

        def record() -> None:
            self._forget_upload(upload_id)
            self._set_size(params["Bucket"], params["Key"], total)

        return _Verdict(None, record)

    def _abort_multipart_upload(self, params: dict[str, Any]) -> _Verdict:
        return _Verdict(None, lambda: self._forget_upload(str(params.get("UploadId", ""))))

    # ---------------------------------------------------------------------------------------------- memory
    def _set_size(self, bucket: str, key: str, size: int | None) -> None:
        if size is None:
            self._sizes.pop((bucket, key), None)
        else:
            self._sizes[(bucket, key)] = size

    def _forget_upload(self, upload_id: str) -> None:
        self._parts.pop(upload_id, None)

    def _set_part(self, upload_id: str, number: int, size: int | None) -> None:
        if size is not None:
            self._parts.setdefault(upload_id, {})[number] = size


def _events(target: BaseClient | boto3.session.Session | botocore.session.Session) -> BaseEventHooks:
    if isinstance(target, BaseClient):
        return target.meta.events
    if isinstance(target, boto3.session.Session):
        return target.events
    events: BaseEventHooks = target.get_component("event_emitter")
    return events


def enforce_s3_limits(
    target: BaseClient | boto3.session.Session | botocore.session.Session, limits: S3Limits | None = None
) -> S3LimitEnforcer:
    """Refuse what S3 refuses: for one client, or for every client a session creates from now on."""
    enforcer = S3LimitEnforcer(limits)
    enforcer.attach(_events(target))
    return enforcer


@contextmanager
def s3_limits_everywhere(limits: S3Limits | None = None) -> Iterator[S3LimitEnforcer]:
    """Refuse what S3 refuses for every client created while active (any session), and for boto3's default session
    if it exists already. Sessions created meanwhile keep the handlers afterwards, inert."""
    enforcer = S3LimitEnforcer(limits)
    entries = enforcer.handlers()
    BUILTIN_HANDLERS.extend(entries)
    default = boto3.DEFAULT_SESSION
    if default is not None:
        enforcer.attach(default.events)
    try:
        yield enforcer
    finally:
        enforcer.active = False
        for entry in entries:
            BUILTIN_HANDLERS.remove(entry)
        if default is not None:
            enforcer.detach(default.events)
