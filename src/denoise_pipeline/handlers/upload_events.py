"""Upload notifications as the submit function receives them, read into source objects."""

from __future__ import annotations

from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.data_classes.s3_event import S3EventRecord

from ..domain.source import SourceObject


def source_from_record(record: S3EventRecord) -> SourceObject:
    """S3 event keys are URL-encoded with '+' for spaces: `My Song+(1).wav` arrives as `My+Song%2B%281%29.wav`."""
    obj = record.s3.get_object
    etag, version = (obj.etag or "").strip('"'), obj.version_id or ""
    return SourceObject(record.s3.bucket.name, unquote_plus(obj.key), int(obj.size or 0), etag, version)
