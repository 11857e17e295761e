"""The uploaded objects, as the provider gets them: a presigned GET URL of the version, or a stream to upload."""

from __future__ import annotations

import mimetypes
import posixpath
from typing import IO, TYPE_CHECKING, Any

from ..domain.source import SourceObject
from .musicgpt import AudioUpload

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client


class InputObjects:
    def __init__(self, s3: S3Client, presign_expiry_seconds: int) -> None:
        self._s3 = s3
        self._expiry = presign_expiry_seconds

    def presigned_url(self, source: SourceObject) -> str:
        return self._s3.generate_presigned_url("get_object", Params=_object_params(source), ExpiresIn=self._expiry)

    def upload(self, source: SourceObject) -> AudioUpload:
        def open_stream() -> IO[bytes]:
            body: IO[bytes] = self._s3.get_object(**_object_params(source))["Body"]  # type: ignore[assignment]
            return body

        content_type = mimetypes.guess_type(source.key)[0] or "application/octet-stream"
        return AudioUpload(posixpath.basename(source.key), source.size, content_type, open_stream)


def _object_params(source: SourceObject) -> dict[str, Any]:
    params: dict[str, Any] = {"Bucket": source.bucket, "Key": source.key}
    if source.version_id:
        params["VersionId"] = source.version_id
    return params
