"""tests/s3_limits.py itself: each S3 limit is refused the way AWS refuses it, and the limit's edge is accepted."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from tests.s3_limits import GIB, MIB, S3LimitEnforcer, S3Limits, enforce_s3_limits, s3_limits_everywhere

BUCKET = "limits-bucket"

pytestmark = pytest.mark.usefixtures("own_s3_limits")  # these tests scale S3's limits down


@pytest.fixture
def s3(aws_credentials: None) -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def refused(call: Any, code: str, **params: Any) -> ClientError:
    with pytest.raises(ClientError) as caught:
        call(**params)
    error = caught.value.response
    assert error["Error"]["Code"] == code
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error["ResponseMetadata"]["RequestId"] == "s3-limits"  # refused here, not by moto
    return caught.value


class Sized(io.RawIOBase):
    """A body that claims a size without holding it: the limit is judged before anything would be sent."""

    def __init__(self, size: int) -> None:
        self._size = size

    def __len__(self) -> int:
        return self._size

    def readable(self) -> bool:
        return True


def multipart(s3: Any, key: str, sizes: list[int]) -> tuple[str, list[dict[str, Any]]]:
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    parts = []
    for number, size in enumerate(sizes, start=1):
        answer = s3.upload_part(Bucket=BUCKET, Key=key, UploadId=upload, PartNumber=number, Body=b"p" * size)
        parts.append({"PartNumber": number, "ETag": answer["ETag"]})
    return upload, parts


def test_defaults_are_aws_numbers() -> None:
    limits = S3Limits()
    assert (limits.max_key_bytes, limits.max_metadata_bytes, limits.max_part_number) == (1024, 2048, 10_000)
    assert (limits.min_part_bytes, limits.max_part_bytes) == (5 * 1024 * 1024, 5 * 1024**3)
    assert limits.max_put_bytes == limits.max_copy_source_bytes == 5_368_709_120


@pytest.mark.parametrize(
    ("key", "accepted"), [("k" * 1024, True), ("k" * 1025, False), ("é" * 512, True), ("é" * 513, False)]
)
def test_key_length_counts_utf8_bytes(s3: Any, key: str, accepted: bool) -> None:
    enforce_s3_limits(s3)
    if accepted:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")
        s3.create_multipart_upload(Bucket=BUCKET, Key=key)
        s3.copy_object(Bucket=BUCKET, Key=key[:-1] + "c", CopySource={"Bucket": BUCKET, "Key": key})
        return
    refused(s3.put_object, "KeyTooLongError", Bucket=BUCKET, Key=key, Body=b"x")
    refused(s3.create_multipart_upload, "KeyTooLongError", Bucket=BUCKET, Key=key)
    s3.put_object(Bucket=BUCKET, Key="source", Body=b"x")
    refused(s3.copy_object, "KeyTooLongError", Bucket=BUCKET, Key=key, CopySource=f"{BUCKET}/source")
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 1  # only the source


@pytest.mark.parametrize(
    ("metadata", "accepted"),
    [
        ({"job-id": "x" * 2042}, True),  # 6 + 2042 = 2048: the x-amz-meta- prefix does not count
        ({"job-id": "x" * 2043}, False),
        ({f"k{i:03}": "v" * 60 for i in range(32)}, True),  # 32 × (4 + 60) = 2048
        ({f"k{i:03}": "v" * 61 for i in range(32)}, False),  # each entry small, the sum too large
    ],
)
def test_metadata_size_is_the_sum_of_keys_and_values(s3: Any, metadata: dict[str, str], accepted: bool) -> None:
    enforce_s3_limits(s3)
    s3.put_object(Bucket=BUCKET, Key="source", Body=b"x")
    calls: list[tuple[Any, dict[str, Any]]] = [
        (s3.put_object, {"Body": b"x"}),
        (s3.create_multipart_upload, {}),
        (s3.copy_object, {"CopySource": f"{BUCKET}/source", "MetadataDirective": "REPLACE"}),
    ]
    for call, extra in calls:
        if accepted:
            call(Bucket=BUCKET, Key="target", Metadata=metadata, **extra)
        else:
            refused(call, "MetadataTooLarge", Bucket=BUCKET, Key="target", Metadata=metadata, **extra)


def test_copy_keeping_the_source_metadata_is_not_judged_on_the_ignored_parameter(s3: Any) -> None:
    enforce_s3_limits(s3)
    s3.put_object(Bucket=BUCKET, Key="source", Body=b"x", Metadata={"a": "b"})
    s3.copy_object(Bucket=BUCKET, Key="target", CopySource=f"{BUCKET}/source", Metadata={"a": "x" * 3000})


def test_single_put_and_part_over_5_gib_are_entity_too_large(s3: Any) -> None:
    enforce_s3_limits(s3)
    refused(s3.put_object, "EntityTooLarge", Bucket=BUCKET, Key="big", Body=Sized(5 * GIB + 1))
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key="big")["UploadId"]
    params = {"Bucket": BUCKET, "Key": "big", "UploadId": upload, "PartNumber": 1}
    refused(s3.upload_part, "EntityTooLarge", Body=Sized(5 * GIB + 1), **params)


def test_put_size_edge_with_a_scaled_limit(s3: Any) -> None:
    enforce_s3_limits(s3, S3Limits(max_put_bytes=MIB))
    s3.put_object(Bucket=BUCKET, Key="edge", Body=b"x" * MIB)
    s3.put_object(Bucket=BUCKET, Key="file", Body=io.BytesIO(b"x" * MIB))
    refused(s3.put_object, "EntityTooLarge", Bucket=BUCKET, Key="over", Body=b"x" * (MIB + 1))
    refused(s3.put_object, "EntityTooLarge", Bucket=BUCKET, Key="over", Body=io.BytesIO(b"x" * (MIB + 1)))


@pytest.mark.parametrize(("number", "accepted"), [(1, True), (10_000, True), (10_001, False), (0, False)])
def test_part_numbers_run_from_1_to_10000(s3: Any, number: int, accepted: bool) -> None:
    enforce_s3_limits(s3)
    s3.put_object(Bucket=BUCKET, Key="source", Body=b"x")
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key="parts")["UploadId"]
    params = {"Bucket": BUCKET, "Key": "parts", "UploadId": upload, "PartNumber": number}
    if accepted:
        s3.upload_part(Body=b"x", **params)
        s3.upload_part_copy(CopySource=f"{BUCKET}/source", **params)
        return
    error = refused(s3.upload_part, "InvalidArgument", Body=b"x", **params)
    assert "between 1 and 10000" in str(error)
    refused(s3.upload_part_copy, "InvalidArgument", CopySource=f"{BUCKET}/source", **params)


def test_a_part_under_5_mib_is_refused_at_completion_unless_it_is_the_last(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("moto.s3.models.S3_UPLOAD_PART_MIN_SIZE", 1)  # moto's own check off: this one must refuse
    enforcer = enforce_s3_limits(s3)
    upload, parts = multipart(s3, "small", [5 * MIB - 1, 10])
    done = {"Bucket": BUCKET, "Key": "small", "UploadId": upload}
    refused(s3.complete_multipart_upload, "EntityTooSmall", MultipartUpload={"Parts": parts}, **done)
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads")  # S3 keeps the upload open: the caller aborts
    s3.abort_multipart_upload(**done)

    upload, parts = multipart(s3, "edge", [5 * MIB, 5 * MIB, 1])
    s3.complete_multipart_upload(Bucket=BUCKET, Key="edge", UploadId=upload, MultipartUpload={"Parts": parts})
    assert s3.head_object(Bucket=BUCKET, Key="edge")["ContentLength"] == 10 * MIB + 1
    upload, parts = multipart(s3, "one", [10])  # a single part is the last part
    s3.complete_multipart_upload(Bucket=BUCKET, Key="one", UploadId=upload, MultipartUpload={"Parts": parts})
    assert enforcer.refusals == [("CompleteMultipartUpload", "EntityTooSmall")]


def test_copy_object_source_over_the_limit_is_invalid_request_multipart_copy_is_not(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("moto.s3.models.S3_UPLOAD_PART_MIN_SIZE", MIB // 2)  # parts scaled down with the limits
    enforce_s3_limits(s3, S3Limits(max_copy_source_bytes=MIB, min_part_bytes=MIB // 2))
    s3.put_object(Bucket=BUCKET, Key="edge", Body=b"x" * MIB)
    s3.put_object(Bucket=BUCKET, Key="over", Body=b"x" * (MIB + 1))
    s3.copy_object(Bucket=BUCKET, Key="edge-copy", CopySource={"Bucket": BUCKET, "Key": "edge"})
    s3.copy_object(Bucket=BUCKET, Key="edge-copy-2", CopySource={"Bucket": BUCKET, "Key": "edge-copy"})  # size known
    error = refused(s3.copy_object, "InvalidRequest", Bucket=BUCKET, Key="copy", CopySource=f"{BUCKET}/over")
    assert str(MIB) in str(error)
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key="copy")["UploadId"]
    parts = []
    for number, byte_range in enumerate((f"bytes=0-{MIB // 2 - 1}", f"bytes={MIB // 2}-{MIB}"), start=1):
        answer = s3.upload_part_copy(
            Bucket=BUCKET,
            Key="copy",
            UploadId=upload,
            PartNumber=number,
            CopySource=f"{BUCKET}/over",
            CopySourceRange=byte_range,
        )
        parts.append({"PartNumber": number, "ETag": answer["CopyPartResult"]["ETag"]})
    s3.complete_multipart_upload(Bucket=BUCKET, Key="copy", UploadId=upload, MultipartUpload={"Parts": parts})
    assert s3.head_object(Bucket=BUCKET, Key="copy")["ContentLength"] == MIB + 1


def test_a_session_passes_the_limits_to_the_clients_it_creates(aws_credentials: None) -> None:
    with mock_aws():
        session = boto3.session.Session(region_name="us-east-1")
        enforce_s3_limits(session, S3Limits(max_key_bytes=4))
        client = session.client("s3")
        client.create_bucket(Bucket=BUCKET)
        client.put_object(Bucket=BUCKET, Key="four", Body=b"")
        refused(client.put_object, "KeyTooLongError", Bucket=BUCKET, Key="fives", Body=b"")


def test_everywhere_covers_new_clients_of_any_session_until_it_ends(aws_credentials: None) -> None:
    with mock_aws():
        with s3_limits_everywhere(S3Limits(max_key_bytes=4)) as enforcer:
            assert isinstance(enforcer, S3LimitEnforcer)
            default = boto3.client("s3", region_name="us-east-1")
            other = boto3.session.Session().client("s3", region_name="us-east-1")
            default.create_bucket(Bucket=BUCKET)
            for client in (default, other):
                refused(client.put_object, "KeyTooLongError", Bucket=BUCKET, Key="fives", Body=b"")
        default.put_object(Bucket=BUCKET, Key="fives", Body=b"")  # inert once the block has ended
        boto3.client("s3", region_name="us-east-1").put_object(Bucket=BUCKET, Key="sixsix", Body=b"")
    assert enforcer.refusals == [("PutObject", "KeyTooLongError")] * 2
