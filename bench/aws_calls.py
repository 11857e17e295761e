"""Counting the AWS calls the functions make in the local stack (benchmark-only; the stack itself counts nothing).

Each request moto serves is attributed to the function whose role session signed it (the access key in the
Authorization header or a presigned URL's X-Amz-Credential); calls with other keys (the benchmark's uploads, the
emulation's plumbing) are not counted. The operation comes from X-Amz-Target (DynamoDB, SQS, Secrets Manager,
EventBridge) or, for S3, from the method and query.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from denoise_pipeline.adapters.capacity import CAPACITY_KEY
from local.stack import LocalStack

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/[^/]+/[^/]+/([^/]+)/")


class AwsCalls:
    def __init__(self, stack: LocalStack) -> None:
        self.counts: Counter[tuple[str, str, str, str]] = Counter()
        """(function, service, operation, item) → calls; item is "capacity" for the jobs table's capacity record."""
        self._stack = stack
        self._lock = threading.Lock()

    @classmethod
    def attach(cls, stack: LocalStack) -> AwsCalls:
        counter = cls(stack)
        stack.aws.observe(counter._count)
        return counter

    def _count(self, environ: Mapping[str, Any], body: bytes) -> None:
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        match = _CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
        if match:
            key, service = match.groups()
        elif "X-Amz-Credential" in query:
            key, _, _, service, _ = query["X-Amz-Credential"][0].split("/")
        else:
            return
        session = self._stack.aws.sessions.get(key)
        if session is None:
            return
        function = session.removeprefix(f"{self._stack.config.stack_name}-")
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        operation = target.rsplit(".", 1)[-1] if target else _s3_operation(environ, query)
        item = "capacity" if CAPACITY_KEY.encode() in body else ""
        with self._lock:
            self.counts[(function, service, operation, item)] += 1


def _s3_operation(environ: Mapping[str, Any], query: Mapping[str, list[str]]) -> str:
    method = environ.get("REQUEST_METHOD", "")
    has_key = "/" in environ.get("PATH_INFO", "/").strip("/")  # path style: /bucket/key
    if method == "PUT":
        if "partNumber" in query:
            return "UploadPart"
        return "CopyObject" if "HTTP_X_AMZ_COPY_SOURCE" in environ else "PutObject"
    if method == "POST":
        if "delete" in query:
            return "DeleteObjects"
        return "CreateMultipartUpload" if "uploads" in query else "CompleteMultipartUpload"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in query else "DeleteObject"
    if method == "HEAD":
        return "HeadObject" if has_key else "HeadBucket"
    return "GetObject" if has_key else "ListObjects"
