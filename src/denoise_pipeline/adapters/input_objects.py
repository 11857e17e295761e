"""Input-side adapters: presigned URLs and streamed reads of the uploaded object, and the per-job webhook URL."""

from __future__ import annotations

import mimetypes
import posixpath
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

from . import tokens
from .models import SourceObject
from .musicgpt import AudioUpload

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client


class InputObjects:
    def __init__(self, s3: S3Client, presign_expiry_seconds: int) -> None:
        self._s3 = s3
        self._expiry = presign_expiry_seconds

    def presigned_url(self, source: SourceObject) -> str:
        params: dict[str, Any] = {"Bucket": source.bucket, "Key": source.key}
        if source.version_id:
            params["VersionId"] = source.version_id
        return self._s3.generate_presigned_url("get_object", Params=params, ExpiresIn=self._expiry)

    def upload(self, source: SourceObject) -> AudioUpload:
        def open_stream() -> IO[bytes]:
            params: dict[str, Any] = {"Bucket": source.bucket, "Key": source.key}
            if source.version_id:
                params["VersionId"] = source.version_id
            body: IO[bytes] = self._s3.get_object(**params)["Body"]  # type: ignore[assignment]
            return body

        content_type = mimetypes.guess_type(source.key)[0] or "application/octet-stream"
        return AudioUpload(posixpath.basename(source.key), source.size, content_type, open_stream)


class WebhookLinks:
    """`{HttpApiUrl}/webhooks/{job_id}/{token}`; the secret is fetched (and cached) by `secret_provider`."""

    def __init__(self, base_url: str, secret_provider: Callable[[], str]) -> None:
        self._base_url = base_url.rstrip("/")
        self._secret = secret_provider

    def url_for(self, job_id: str) -> str:
        return f"{self._base_url}/webhooks/{job_id}/{tokens.sign(self._secret(), job_id)}"
