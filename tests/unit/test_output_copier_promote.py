"""Staged outputs made visible (promote), removed (remove), and the copier's construction-time limits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from denoise_pipeline.adapters.output_copier import CopyError, OutputCopier, UrlPolicy
from tests.s3_limits import MIB, S3LimitEnforcer, S3Limits, enforce_s3_limits

BUCKET = "promote-bucket"
METADATA = {"job-id": "job-1", "task-id": "task-1", "source-key": "in/take%201.wav"}

pytestmark = pytest.mark.usefixtures("own_s3_limits")  # these tests scale S3's limits down


@pytest.fixture
def s3(aws_credentials: None) -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield client


def copier(s3: Any) -> OutputCopier:
    return OutputCopier(s3, UrlPolicy([]), max_bytes=MIB)


def stage(s3: Any, key: str, body: bytes) -> None:
    s3.put_object(Bucket=BUCKET, Key=key, Body=body, ContentType="audio/wav", Metadata=METADATA)


def visible_keys(s3: Any) -> list[str]:
    return [item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


def test_promote_copies_content_type_and_metadata_then_deletes_the_staging_object(s3: Any) -> None:
    stage(s3, ".staging/job-1/no_noise.wav", b"audio")
    copier(s3).promote(BUCKET, ".staging/job-1/no_noise.wav", "out/take 1/no_noise.wav")
    head = s3.head_object(Bucket=BUCKET, Key="out/take 1/no_noise.wav")
    assert (head["ContentType"], head["Metadata"]) == ("audio/wav", METADATA)
    assert s3.get_object(Bucket=BUCKET, Key="out/take 1/no_noise.wav")["Body"].read() == b"audio"
    assert visible_keys(s3) == ["out/take 1/no_noise.wav"]


def test_promote_below_the_transfer_threshold_is_one_head_one_copy_and_one_delete(s3: Any) -> None:
    """The head tells the size and version: boto3's managed copy would ask for the size again (a second HEAD)."""
    stage(s3, "staged", b"audio")
    calls: list[str] = []
    s3.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    copier(s3).promote(BUCKET, "staged", "final")
    assert calls == ["HeadObject", "CopyObject", "DeleteObject"]


def test_promote_above_copy_objects_limit_uses_multipart_copy(s3: Any) -> None:
    """CopyObject's 5 GB limit, scaled to 8 MiB: a 9 MiB staged output must still be promoted (UploadPartCopy)."""
    limits: S3LimitEnforcer = enforce_s3_limits(s3, S3Limits(max_copy_source_bytes=8 * MIB))
    body = bytes(range(256)) * (9 * MIB // 256)
    stage(s3, "staged", body)
    with pytest.raises(ClientError, match="InvalidRequest"):  # what a single CopyObject meets
        s3.copy_object(Bucket=BUCKET, Key="direct", CopySource={"Bucket": BUCKET, "Key": "staged"})
    copier(s3).promote(BUCKET, "staged", "final")
    head = s3.head_object(Bucket=BUCKET, Key="final")
    assert (head["ContentLength"], head["ContentType"], head["Metadata"]) == (len(body), "audio/wav", METADATA)
    assert s3.get_object(Bucket=BUCKET, Key="final")["Body"].read() == body
    assert visible_keys(s3) == ["final"]
    assert limits.refusals == [("CopyObject", "InvalidRequest")]


def test_promote_of_a_missing_staging_object_is_a_copy_error_and_creates_nothing(s3: Any) -> None:
    with pytest.raises(CopyError, match="cannot promote"):
        copier(s3).promote(BUCKET, "missing", "final")
    assert visible_keys(s3) == []


def test_promote_leaves_no_version_of_the_staged_object(s3: Any) -> None:
    """Versioned bucket: the staged version is deleted by id, so no delete marker or noncurrent copy stays."""
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    stage(s3, "staged", b"x")

    copier(s3).promote(BUCKET, "staged", "final")

    listed = s3.list_object_versions(Bucket=BUCKET)
    assert [version["Key"] for version in listed.get("Versions", [])] == ["final"]
    assert listed.get("DeleteMarkers", []) == []


def test_a_cap_that_cannot_fit_10000_parts_is_refused_at_construction(s3: Any) -> None:
    OutputCopier(s3, UrlPolicy([]), max_bytes=10_000 * 8 * MIB)
    with pytest.raises(ValueError, match="10000 parts"):
        OutputCopier(s3, UrlPolicy([]), max_bytes=10_000 * 8 * MIB + 1)


def test_a_missing_ca_bundle_fails_at_construction(s3: Any, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        OutputCopier(s3, UrlPolicy([]), max_bytes=MIB, ca_bundle=str(tmp_path / "missing.pem"))
