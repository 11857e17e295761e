"""The emulation itself must behave like DynamoDB under concurrency, or race tests measure moto instead of us."""

from __future__ import annotations

import base64
import copy
import hashlib
import inspect
import random
import sys
import threading
import time
import tracemalloc
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, MutableMapping
from decimal import Decimal
from typing import Any

import boto3
import moto.backends
import moto.core.serialize
import moto.core.utils
import moto.dynamodb.models.dynamo_type
import moto.dynamodb.models.table
import moto.dynamodb.parsing.ast_nodes
import moto.dynamodb.parsing.expressions
import moto.dynamodb.parsing.validators
import moto.s3.models
import moto.sqs.models
import pytest
from awscrt.checksums import crc64nvme
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.dynamodb.comparisons import ConditionExpressionParser
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.s3.exceptions import EntityTooSmall, InvalidPart, InvalidPartOrder, MalformedXML

from local.aws import query_order, response_fields, update_expressions
from local.aws.dispatch_cache import remember_backends_per_host

THREADS = 6
MIB = 1024**2


@pytest.fixture
def table() -> Iterator[Any]:
    with mock_aws():
        dynamodb = boto3.resource("dynamodb", region_name="us-east-1")
        created = dynamodb.create_table(
            TableName="emulation",
            KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        created.put_item(Item={"k": "job"})
        yield created


def _in_threads(work: Callable[[int], None]) -> list[BaseException]:
    """Run work(n) in THREADS threads with the interpreter switching threads as often as it can."""
    errors: list[BaseException] = []

    def guarded(n: int) -> None:
        try:
            work(n)
        except BaseException as error:  # collected and asserted on by the caller
            errors.append(error)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=guarded, args=(n,)) for n in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    return errors


def _counting(calls: MutableMapping[str, int], name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """`function`, each call counted in `calls[name]`."""

    def call(*args: Any, **kwargs: Any) -> Any:
        calls[name] += 1
        return function(*args, **kwargs)

    return call


def test_concurrent_updates_of_one_item_all_apply(table: Any) -> None:
    """Unserialised, moto deep-copies the item while another thread adds to it: hundreds of RuntimeErrors."""

    def add_attributes(n: int) -> None:
        for i in range(100):
            table.update_item(
                Key={"k": "job"},
                UpdateExpression="SET #a = :v",
                ExpressionAttributeNames={"#a": f"a{n}_{i}"},
                ExpressionAttributeValues={":v": i},
            )

    assert _in_threads(add_attributes) == []
    item = table.get_item(Key={"k": "job"})["Item"]
    assert len(item) == 1 + THREADS * 100


def test_conditional_write_has_exactly_one_winner(table: Any) -> None:
    winners: list[int] = []

    def claim(n: int) -> None:
        for round_number in range(50):
            try:
                table.update_item(
                    Key={"k": "job"},
                    UpdateExpression="SET #o = :n",
                    ConditionExpression="attribute_not_exists(#o)",
                    ExpressionAttributeNames={"#o": f"owner{round_number}"},
                    ExpressionAttributeValues={":n": n},
                )
                winners.append(round_number)
            except ClientError as error:
                if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise

    assert _in_threads(claim) == []
    assert sorted(winners) == list(range(50))


# ---------------------------------------------------------------- SQS: a full queue is as fast as an empty one


@pytest.fixture
def deep_queue() -> Iterator[tuple[Any, str]]:
    """A queue with 200 messages waiting, as the copy or admission queue holds during a burst."""
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="deep")["QueueUrl"]
        for _ in range(20):
            sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": "{}"} for i in range(10)])
        yield sqs, url


def test_counting_a_queue_does_not_read_the_clock_through_datetimes(
    deep_queue: tuple[Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """moto reads the clock for every queued message each time it counts a queue (GetQueueAttributes, and
    ReceiveMessage looking for visible messages), through datetime arithmetic; local.aws.sqs_clock makes that clock
    a plain time.time() (conftest applies it, as the local stack does)."""
    sqs, url = deep_queue
    calls: Counter[str] = Counter()
    monkeypatch.setattr(moto.core.utils, "utcnow", _counting(calls, "clock", moto.core.utils.utcnow))
    sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
    sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)
    assert calls["clock"] < 20  # 3,602 without local.aws.sqs_clock (reads per queued message and count)


def test_a_send_does_not_count_the_queued_messages(
    deep_queue: tuple[Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """moto builds every queue attribute on each SendMessage to read one flag, and three of them are passes over
    every queued message; local.aws.sqs_clock leaves the counts out while a message is sent."""
    sqs, url = deep_queue
    calls: Counter[str] = Counter()
    visible = moto.sqs.models.Message.visible
    monkeypatch.setattr(moto.sqs.models.Message, "visible", property(_counting(calls, "looked at", visible.fget)))
    sqs.send_message(QueueUrl=url, MessageBody="{}")
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": "{}"} for i in range(10)])
    assert calls["looked at"] == 0  # 400 per message sent without it (two of the counts look at every message)
    counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert calls["looked at"] > 0
    assert counts["ApproximateNumberOfMessages"] == "211"
    assert counts["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_a_fifo_queue_still_deduplicates_by_content(deep_queue: tuple[Any, str]) -> None:
    """The one attribute SendMessage reads, ContentBasedDeduplication, is still read while counts are left out."""
    sqs, _ = deep_queue
    url = sqs.create_queue(
        QueueName="dedup.fifo", Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"}
    )["QueueUrl"]
    for _ in range(3):
        sqs.send_message(QueueUrl=url, MessageBody="same", MessageGroupId="g")
    sqs.send_message(QueueUrl=url, MessageBody="other", MessageGroupId="g")
    counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    assert counts["ApproximateNumberOfMessages"] == "2"


def test_delays_and_visibility_still_follow_the_clock(deep_queue: tuple[Any, str]) -> None:
    sqs, url = deep_queue
    fresh = sqs.create_queue(QueueName="clock")["QueueUrl"]
    sqs.send_message(QueueUrl=fresh, MessageBody="later", DelaySeconds=1)
    assert sqs.receive_message(QueueUrl=fresh).get("Messages", []) == []
    counts = sqs.get_queue_attributes(QueueUrl=fresh, AttributeNames=["All"])["Attributes"]
    assert counts["ApproximateNumberOfMessagesDelayed"] == "1"
    time.sleep(1.2)
    [message] = sqs.receive_message(QueueUrl=fresh, VisibilityTimeout=1)["Messages"]
    assert message["Body"] == "later"
    counts = sqs.get_queue_attributes(QueueUrl=fresh, AttributeNames=["All"])["Attributes"]
    assert counts["ApproximateNumberOfMessagesNotVisible"] == "1"
    assert sqs.receive_message(QueueUrl=fresh).get("Messages", []) == []
    time.sleep(1.2)
    assert [m["Body"] for m in sqs.receive_message(QueueUrl=fresh)["Messages"]] == ["later"]
    depth = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    assert depth["ApproximateNumberOfMessages"] == "200"


def test_the_dispatcher_looks_a_hosts_service_up_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's server lists its package directory and matches every URL pattern on each request, under one lock;
    local.aws.dispatch_cache remembers the answer per host."""
    remember_backends_per_host()
    dispatcher = DomainDispatcherApplication(create_backend_app)
    calls: Counter[str] = Counter()
    listing = _counting(calls, "listings", moto.backends.list_of_moto_modules)
    monkeypatch.setattr(moto.backends, "list_of_moto_modules", listing)
    host = "dynamodb.eu-west-3.amazonaws.com"  # a host no other test routes, so its first lookup happens here
    assert [dispatcher.get_backend_for_host(host) for _ in range(3)] == ["dynamodb"] * 3
    assert calls["listings"] == 1


# ---------------------------------------------------------------- S3: a part copy reads its range, not the object


class _CountedBuffer:
    """A key's value file that counts the bytes read from it into `read`."""

    def __init__(self, buffer: Any, read: list[int]) -> None:
        self._buffer = buffer
        self._read = read

    def read(self, *size: int) -> bytes:
        data: bytes = self._buffer.read(*size)
        self._read.append(len(data))
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._buffer, name)


def _s3_backend() -> Any:
    return moto.s3.models.s3_backends[DEFAULT_ACCOUNT_ID]["aws"]


@pytest.fixture
def versioned_source() -> Iterator[tuple[Any, str, bytes]]:
    """A versioned bucket whose key `source` holds 12 MiB (the version yielded) under a newer 1 KiB version."""
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="parts")
        s3.put_bucket_versioning(Bucket="parts", VersioningConfiguration={"Status": "Enabled"})
        body = random.Random(7).randbytes(12 * MIB)
        version = s3.put_object(Bucket="parts", Key="source", Body=body)["VersionId"]
        s3.put_object(Bucket="parts", Key="source", Body=b"newer" * 200)
        yield s3, version, body


def test_a_multipart_copy_in_ranges_copies_exactly_the_source_version(
    versioned_source: tuple[Any, str, bytes],
) -> None:
    """As the output copier promotes (boto3's managed copy in UploadPartCopy ranges), scaled down: parts of 5 MiB,
    the last one partial (2 MiB), from a source version that is no longer the current one."""
    s3, version, body = versioned_source
    config = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB)
    s3.copy({"Bucket": "parts", "Key": "source", "VersionId": version}, "parts", "copy", Config=config)
    copied = s3.get_object(Bucket="parts", Key="copy")
    assert copied["ETag"].endswith('-3"')  # three parts: 5 + 5 + 2 MiB
    assert copied["Body"].read() == body


def test_a_part_copy_reads_only_its_range_of_the_source(
    versioned_source: tuple[Any, str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """moto reads the whole source object for every UploadPartCopy and slices the range out of it (a 1 GiB
    promotion in two parts read 2 GiB); local.aws.s3_multipart reads the range alone (conftest applies it, as the
    local stack does)."""
    s3, version, body = versioned_source
    [key] = [key for key in _s3_backend().get_bucket("parts").keys.getlist("source") if key.version_id == version]
    read: list[int] = []
    monkeypatch.setattr(key, "_value_buffer", _CountedBuffer(key._value_buffer, read))  # noqa: SLF001 - the spy
    upload = s3.create_multipart_upload(Bucket="parts", Key="copy")["UploadId"]
    s3.upload_part_copy(
        Bucket="parts",
        Key="copy",
        UploadId=upload,
        PartNumber=1,
        CopySource={"Bucket": "parts", "Key": "source", "VersionId": version},
        CopySourceRange=f"bytes={MIB}-{2 * MIB - 1}",
    )
    assert sum(read) == MIB  # 12 MiB, the whole source, without local.aws.s3_multipart
    part = _s3_backend().get_bucket("parts").multiparts[upload].parts[1]
    assert part.value == body[MIB : 2 * MIB]


# ---------------------------------------------------------------- S3: a completion reads each part once


@pytest.fixture
def bucket() -> Iterator[Any]:
    """A client, and its empty bucket `parts`."""
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="parts")
        yield s3


def _uploaded(s3: Any, parts: list[bytes], **create: str) -> tuple[str, list[dict[str, Any]]]:
    """An open multipart upload of `parts` to the key `object`, and the part list that completes it."""
    upload = s3.create_multipart_upload(Bucket="parts", Key="object", **create)["UploadId"]
    listed = [
        {"PartNumber": number, "ETag": s3.upload_part(**_part(upload, number), Body=body)["ETag"]}
        for number, body in enumerate(parts, 1)
    ]
    return upload, listed


def _part(upload: str, number: int) -> dict[str, Any]:
    return {"Bucket": "parts", "Key": "object", "UploadId": upload, "PartNumber": number}


def _crc32(data: bytes) -> bytes:
    return zlib.crc32(data).to_bytes(4, "big")


def _base64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


@pytest.mark.parametrize(
    ("create", "checksum"),
    [
        pytest.param(
            {},
            lambda parts: ("FULL_OBJECT", _base64(crc64nvme(b"".join(parts)).to_bytes(8, "big")), 1),
            id="moto's default: CRC64NVME of the object",
        ),
        pytest.param(
            {"ChecksumAlgorithm": "CRC32"},
            lambda parts: ("COMPOSITE", _base64(_crc32(b"".join(map(_crc32, parts)))), len(parts)),
            id="CRC32 of the parts' CRC32s",
        ),
        pytest.param(
            {"ChecksumAlgorithm": "CRC32", "ChecksumType": "FULL_OBJECT"},
            lambda parts: ("FULL_OBJECT", _base64(_crc32(b"".join(parts))), 1),
            id="CRC32 of the object",
        ),
    ],
)
def test_a_multipart_upload_completes_to_its_parts_bytes_etag_and_checksum(
    bucket: Any, create: dict[str, str], checksum: Callable[[list[bytes]], tuple[str, str, int]]
) -> None:
    """Parts of 5 MiB, the last one smaller: the object is their bytes, its ETag the MD5 of their MD5s and their
    count, its checksum as S3 defines it (a composite checksum is the checksum of the parts' checksums)."""
    rng = random.Random(11)
    parts = [rng.randbytes(5 * MIB), rng.randbytes(5 * MIB), rng.randbytes(2 * MIB)]
    upload, listed = _uploaded(bucket, parts, **create)
    bucket.complete_multipart_upload(Bucket="parts", Key="object", UploadId=upload, MultipartUpload={"Parts": listed})
    got = bucket.get_object(Bucket="parts", Key="object")
    assert got["Body"].read() == b"".join(parts)
    md5s = b"".join(hashlib.md5(part, usedforsecurity=False).digest() for part in parts)
    assert got["ETag"] == f'"{hashlib.md5(md5s, usedforsecurity=False).hexdigest()}-3"'
    key = _s3_backend().get_object("parts", "object")
    assert (key.checksum_type, key.checksum_value, key.checksum_parts) == checksum(parts)


@pytest.mark.parametrize("checksum_type", [None, "COMPOSITE", "FULL_OBJECT"])
@pytest.mark.parametrize("algorithm", [None, "CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256", "SHA512"])
def test_a_completion_makes_the_object_moto_makes(
    bucket: Any, monkeypatch: pytest.MonkeyPatch, algorithm: str | None, checksum_type: str | None
) -> None:
    """The bytes, ETag and checksum (type, value, part count) of moto's own `FakeMultipart.complete`, for every
    checksum moto computes (and a name it does not know, which it answers with SHA-256), with moto's fallbacks (no
    crc32c package here: CRC32 for CRC32C), each part read in several pieces."""
    monkeypatch.setattr("moto.s3.models.S3_UPLOAD_PART_MIN_SIZE", 3000)  # parts scaled down, read in 1,000 bytes
    monkeypatch.setattr("local.aws.s3_multipart._PIECE", 1000)
    named = {"ChecksumAlgorithm": algorithm, "ChecksumType": checksum_type}
    upload = bucket.create_multipart_upload(
        Bucket="parts", Key="object", **{name: value for name, value in named.items() if value}
    )["UploadId"]
    backend = _s3_backend()
    multipart = backend.get_bucket("parts").multiparts[upload]
    rng = random.Random(17)
    listed = [(n, multipart.set_part(n, rng.randbytes(size)).etag) for n, size in enumerate([3000, 3500, 1234], 1)]
    moto_complete = inspect.unwrap(moto.s3.models.FakeMultipart.complete)
    assert moto_complete is not moto.s3.models.FakeMultipart.complete  # the correction is applied (conftest)
    value, etag, checksum = moto_complete(multipart, iter(listed))  # moto's own: it reads the parts, nothing more

    key = backend.complete_multipart_upload("parts", upload, iter(listed))
    assert key.value == value
    assert key.etag == f'"{etag}"'
    assert (key.checksum_type, key.checksum_value, key.checksum_parts) == checksum


def test_a_completion_refuses_as_moto_does_before_reading_a_part(bucket: Any) -> None:
    """InvalidPart for a part not uploaded or listed with another ETag, EntityTooSmall for a part under 5 MiB that is
    not the last, MalformedXML for none, and InvalidPartOrder for parts out of order or listed twice, as S3 answers
    (moto lets those through): the upload stays whole and completes once listed right. (Through the backend: the
    tests' S3 clients refuse a small part themselves, tests/s3_limits.py.)"""
    parts = [b"a" * 5 * MIB, b"b" * MIB, b"c"]
    upload, listed = _uploaded(bucket, parts)
    backend = _s3_backend()
    one, two, three = [(part["PartNumber"], part["ETag"]) for part in listed]
    for listing, refusal in [
        ([one, (4, two[1])], InvalidPart),
        ([(1, two[1])], InvalidPart),
        ([one, two, three], EntityTooSmall),
        ([one, two, (3, one[1])], InvalidPart),  # moto checks a part's ETag before the size of the part before it
        ([], MalformedXML),
        ([one, one], InvalidPartOrder),
        ([one, three, two], InvalidPartOrder),
    ]:
        with pytest.raises(refusal):
            backend.complete_multipart_upload("parts", upload, iter(listing))
    assert backend.complete_multipart_upload("parts", upload, iter([one, three])).value == parts[0] + parts[2]


def test_a_completion_reads_each_part_once_and_copies_no_whole_object(
    bucket: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """moto's `FakeMultipart.complete` reads every part twice and holds the object in memory several times over (a
    1 GiB upload peaked at 4.6 GiB); local.aws.s3_multipart reads each part once, in pieces, into the key's file."""
    rng = random.Random(13)
    parts = [rng.randbytes(5 * MIB), rng.randbytes(5 * MIB), rng.randbytes(2 * MIB)]
    upload, listed = _uploaded(bucket, parts)
    multipart = _s3_backend().get_bucket("parts").multiparts[upload]
    read: dict[int, list[int]] = {number: [] for number in multipart.parts}
    for number, part in multipart.parts.items():
        monkeypatch.setattr(part, "_value_buffer", _CountedBuffer(part._value_buffer, read[number]))  # noqa: SLF001
    tracing_already = tracemalloc.is_tracing()  # PYTHONTRACEMALLOC, or -X tracemalloc: left as it was found
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        bucket.complete_multipart_upload(
            Bucket="parts", Key="object", UploadId=upload, MultipartUpload={"Parts": listed}
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        if not tracing_already:
            tracemalloc.stop()
    assert {number: sum(sizes) for number, sizes in read.items()} == {1: 5 * MIB, 2: 5 * MIB, 3: 2 * MIB}  # moto: 2x
    assert peak < 12 * MIB  # less than the object: moto's peak was three times it
    assert bucket.get_object(Bucket="parts", Key="object")["Body"].read() == b"".join(parts)


def test_a_value_larger_than_a_keys_buffer_goes_to_its_file_without_a_copy_in_memory() -> None:
    """An 8 MiB part against moto's 5 MiB key buffer: moto wrote it to memory, then copied it to the file when the
    buffer overflowed; local.aws.s3_multipart writes it to the file at once, the same bytes and ETag."""
    value = random.Random(17).randbytes(8 * MIB)
    tracing_already = tracemalloc.is_tracing()
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        key = moto.s3.models.FakeKey("part", value, DEFAULT_ACCOUNT_ID, "us-east-1")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        if not tracing_already:
            tracemalloc.stop()
    try:
        assert peak < MIB  # moto's own: 8 MiB, the value's copy in the spooled file's memory
        assert key.value == value
        assert key.etag == f'"{hashlib.md5(value).hexdigest()}"'  # noqa: S324 - S3's ETag is an MD5
    finally:
        key.dispose()


# ---------------------------------------------------------------- DynamoDB: a Query sorts by keys computed once


@pytest.fixture
def indexed_table() -> Iterator[Any]:
    """A table with a `by-status` index (status, status_at) like the jobs table's, holding jobs in three states
    whose `status_at` collide now and then, so the table's own key breaks ties."""
    with mock_aws():
        dynamodb = boto3.resource("dynamodb", region_name="us-east-1")
        created = dynamodb.create_table(
            TableName="indexed",
            KeySchema=[{"AttributeName": "job_id", "KeyType": "HASH"}],
            AttributeDefinitions=[
                {"AttributeName": attribute, "AttributeType": "S"} for attribute in ("job_id", "status", "status_at")
            ],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": "by-status",
                    "KeySchema": [
                        {"AttributeName": "status", "KeyType": "HASH"},
                        {"AttributeName": "status_at", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        rng = random.Random(11)
        with created.batch_writer() as batch:
            for n in range(300):
                batch.put_item(
                    Item={
                        "job_id": f"job-{rng.randrange(10**6):06d}-{n}",
                        "status": rng.choice(["QUEUED", "SUBMITTED", "COPYING"]),
                        "status_at": f"2026-12-01T05:{rng.randrange(60):02d}:00Z",
                        "attempts": rng.randrange(5),
                    }
                )
        yield created


def _query_all(table: Any, status: str, **kwargs: Any) -> list[str]:
    """Every job id of `status` through the index, page by page."""
    ids: list[str] = []
    query: dict[str, Any] = {
        "IndexName": "by-status",
        "KeyConditionExpression": "#s = :s",
        "ExpressionAttributeNames": {"#s": "status"},
        "ExpressionAttributeValues": {":s": status},
        **kwargs,
    }
    while True:
        page = table.query(**query)
        ids += [item["job_id"] for item in page["Items"]]
        if "LastEvaluatedKey" not in page:
            return ids
        query["ExclusiveStartKey"] = page["LastEvaluatedKey"]


@pytest.mark.parametrize("forward", [True, False])
def test_an_index_query_returns_the_order_moto_itself_gives(
    indexed_table: Any, monkeypatch: pytest.MonkeyPatch, forward: bool
) -> None:
    """Pages of 7 in either direction: the same ids in the same order as moto's own sort (local.aws.query_order
    replaces only how the sort key is computed)."""
    corrected = [
        _query_all(indexed_table, status, Limit=7, ScanIndexForward=forward) for status in ("QUEUED", "COPYING")
    ]
    monkeypatch.setattr(moto.dynamodb.models.table.Table, "sorted_items", query_order._ORIGINAL)  # noqa: SLF001
    original = [
        _query_all(indexed_table, status, Limit=7, ScanIndexForward=forward) for status in ("QUEUED", "COPYING")
    ]
    assert corrected == original
    assert all(len(ids) > 50 for ids in corrected)


def test_an_index_query_computes_each_sort_key_once(indexed_table: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's sort compared DynamoType objects, rebuilding both values on every comparison (O(n log n) casts); the
    corrected sort casts each key attribute of each candidate once: status, status_at and job_id."""
    casts = {"sorting": False, "count": 0}
    cast_value = moto.dynamodb.models.dynamo_type.DynamoType.cast_value
    sorted_items = moto.dynamodb.models.table.Table.sorted_items

    def counted(self: Any) -> Any:
        casts["count"] += casts["sorting"]
        return cast_value.fget(self)

    def sorting(self: Any, *args: Any) -> Any:
        casts["sorting"] = True
        try:
            return sorted_items(self, *args)
        finally:
            casts["sorting"] = False

    candidates = len(_query_all(indexed_table, "QUEUED"))
    monkeypatch.setattr(moto.dynamodb.models.dynamo_type.DynamoType, "cast_value", property(counted))
    monkeypatch.setattr(moto.dynamodb.models.table.Table, "sorted_items", sorting)
    indexed_table.query(
        IndexName="by-status",
        KeyConditionExpression="#s = :s",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": "QUEUED"},
        Limit=2,
    )
    assert casts["count"] == 3 * candidates  # 3,664 with moto's own sort


ACTIONS = {
    "SET": ["a = :one", "a.b = :one", "c = c + :one", "#n = :text", "l[0] = :text", "m.x = if_not_exists(m.x, :one)"],
    "REMOVE": ["a", "a.b", "#n", "l[0]", "missing"],
    "ADD": ["c :one", "counter :one", "a.b :one"],
}
clauses = st.lists(
    st.sampled_from(list(ACTIONS)).flatmap(
        lambda kind: st.lists(st.sampled_from(ACTIONS[kind]), min_size=1, max_size=3).map(
            lambda actions: f"{kind} " + ", ".join(actions)
        )
    ),
    min_size=1,
    max_size=3,
)


CONDITIONS = [
    "c = :one",
    "c<>:one",
    "attribute_exists(a)",
    "attribute_not_exists(m.x)",
    "#n = :text",
    "a.b >= :one",
    "l[0] = :text",
    "c BETWEEN :one AND :one",
    "c IN (:one, :text)",
    "size(l) > :one",
    "begins_with(#n, :text)",
    "c = = :one",  # refused, as the ones below
    "attribute_exists(",
    "c = :missing",
    "#unknown = :one",
    "c ! :one",
]
conditions = st.recursive(
    st.sampled_from(CONDITIONS),
    lambda inner: (
        st.tuples(inner, st.sampled_from([" AND ", " OR ", "  and  "]), inner).map("".join)
        | inner.map(lambda condition: f"NOT {condition}")
        | inner.map(lambda condition: f"({condition})")
    ),
    max_leaves=4,
)


def _moto_unchanged(patch: pytest.MonkeyPatch) -> None:
    """Put back what local.aws.update_expressions replaced: moto's own parse, handler maps, validation passes,
    tree copies and condition lexing."""
    patch.setattr(moto.dynamodb.parsing.expressions.UpdateExpressionParser, "make", update_expressions._ORIGINAL_MAKE)  # noqa: SLF001
    traverser = moto.dynamodb.parsing.ast_nodes.DepthFirstTraverser
    patch.setattr(traverser, "nodes_to_be_processed", update_expressions._ORIGINAL_NODES_TO_BE_PROCESSED)  # noqa: SLF001
    patch.setattr(traverser, "process", update_expressions._ORIGINAL_PROCESS)  # noqa: SLF001
    patch.delattr(moto.dynamodb.parsing.ast_nodes.Node, "__deepcopy__")
    for validator in ("ActionCountValidator", "OverlappingPathsValidator"):
        patch.delattr(getattr(moto.dynamodb.parsing.validators, validator), "traverse")
    patch.setattr(ConditionExpressionParser, "_lex_condition_expression", update_expressions._ORIGINAL_LEX_CONDITION)  # noqa: SLF001


def _answer(table: Any, expression: str, condition: str | None) -> Any:
    """The item after the update from a fresh start, or the error moto answers with (or raises, in process)."""
    table.put_item(Item={"k": "job", "a": {"b": 1}, "c": 5, "name": "x", "l": ["y"], "m": {}})
    request: dict[str, Any] = {
        "Key": {"k": "job"},
        "UpdateExpression": expression,
        "ExpressionAttributeNames": {"#n": "name"},
        "ExpressionAttributeValues": {":one": 1, ":text": "t"},
    }
    if condition:
        request["ConditionExpression"] = condition
    try:
        table.update_item(**request)
    except ClientError as error:
        return error.response["Error"]
    except (ValueError, KeyError, AttributeError) as error:  # what moto raises for some malformed conditions
        return type(error).__name__, str(error)
    return table.get_item(Key={"k": "job"})["Item"]


@settings(max_examples=80, deadline=None)
@given(expression=clauses.map(" ".join), condition=st.none() | conditions)
def test_an_update_answers_as_moto_itself_does(expression: str, condition: str | None) -> None:
    """Valid and refused expressions alike (repeated clauses, overlapping or repeated paths, a path into a
    missing map, a type mismatch, a failed, malformed or redundantly parenthesised condition): the same item or
    the same error, with and without local.aws.update_expressions, the same text asked twice in a row."""
    with mock_aws():
        table = boto3.resource("dynamodb", region_name="us-east-1").create_table(
            TableName="updates",
            KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        corrected = [_answer(table, expression, condition) for _ in range(2)]
        with pytest.MonkeyPatch.context() as patch:
            _moto_unchanged(patch)
            original = _answer(table, expression, condition)
    assert corrected == [original, original]


def _subclasses(cls: type) -> Iterator[type]:
    for subclass in cls.__subclasses__():
        yield subclass
        yield from _subclasses(subclass)


def test_an_update_expression_is_parsed_once_and_its_whole_checked_once(
    table: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """moto parsed the text twice per request (request layer and backend), ran the action-count and
    overlapping-path checks on every clause, action, path and value node of the tree (36 of them for this
    expression), built a validation pass's handler map anew for every node it visited, and deep-copied each node
    through the pickle protocol (`copy._reconstruct`)."""
    update_expressions._parsed.cache_clear()  # noqa: SLF001 - counted from a cold cache, whatever ran before
    calls = {"tokenize": 0, "count actions": 0, "check overlaps": 0, "handler map": 0, "node via pickle": 0}
    tokenizer = moto.dynamodb.parsing.expressions.ExpressionTokenizer
    validators = moto.dynamodb.parsing.validators
    monkeypatch.setattr(tokenizer, "make_list", staticmethod(_counting(calls, "tokenize", tokenizer.make_list)))
    for validator, check, name in (
        (validators.ActionCountValidator, "verify_action_counts", "count actions"),
        (validators.OverlappingPathsValidator, "check_for_overlapping_paths", "check overlaps"),
    ):
        monkeypatch.setattr(validator, check, _counting(calls, name, getattr(validator, check)))
    for traverser in _subclasses(moto.dynamodb.parsing.ast_nodes.DepthFirstTraverser):
        if "_processing_map" in vars(traverser):
            handler_map = _counting(calls, "handler map", traverser._processing_map)  # noqa: SLF001
            monkeypatch.setattr(traverser, "_processing_map", handler_map)
    reconstruct = copy._reconstruct  # type: ignore[attr-defined]  # noqa: SLF001

    def counted_reconstruct(x: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(x, moto.dynamodb.parsing.ast_nodes.Node):
            calls["node via pickle"] += 1
        return reconstruct(x, *args, **kwargs)

    monkeypatch.setattr(copy, "_reconstruct", counted_reconstruct)
    expression = "SET parsed_once = :one, b = :one, c = :one, d = :one REMOVE e ADD f :one"
    for _ in range(3):
        table.update_item(Key={"k": "job"}, UpdateExpression=expression, ExpressionAttributeValues={":one": 1})
    passes = calls.pop("handler map")
    assert calls == {"tokenize": 1, "count actions": 3, "check overlaps": 3, "node via pickle": 0}
    assert passes <= 3 * 8  # one map per validation pass; moto built one per node it visited, 1,011 for these three
    assert table.get_item(Key={"k": "job"})["Item"] == {"k": "job", "parsed_once": 1, "b": 1, "c": 1, "d": 1, "f": 3}


def test_a_condition_is_lexed_once_per_text(table: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """moto lexed a condition twice per request (request layer and backend), token by token."""
    update_expressions._condition_tokens.cache_clear()  # noqa: SLF001 - counted from a cold cache
    calls: Counter[str] = Counter()
    lex_one = _counting(calls, "tokens", ConditionExpressionParser._lex_one_node)  # noqa: SLF001
    monkeypatch.setattr(ConditionExpressionParser, "_lex_one_node", lex_one)
    condition = "attribute_not_exists(lexed_once) OR (lexed_once < :three AND NOT lexed_once = :three)"
    for _ in range(3):
        table.update_item(
            Key={"k": "job"},
            UpdateExpression="ADD lexed_once :one",
            ConditionExpression=condition,
            ExpressionAttributeValues={":one": 1, ":three": 3},
        )
    assert calls["tokens"] == 24  # its 24 tokens and spaces, once; 144 without local.aws.update_expressions
    with pytest.raises(ClientError, match="ConditionalCheckFailed"):
        table.update_item(
            Key={"k": "job"},
            UpdateExpression="ADD lexed_once :one",
            ConditionExpression=condition,
            ExpressionAttributeValues={":one": 1, ":three": 3},
        )
    assert table.get_item(Key={"k": "job"})["Item"]["lexed_once"] == 3


scalars = (
    st.text(min_size=1, max_size=12)
    | st.integers(-(10**12), 10**12).map(Decimal)
    | st.binary(min_size=1, max_size=12)
    | st.booleans()
    | st.none()
)
attribute_values = st.recursive(
    scalars
    | st.frozensets(st.text(min_size=1, max_size=6), min_size=1, max_size=3).map(set)
    | st.frozensets(st.integers(0, 999).map(Decimal), min_size=1, max_size=3).map(set),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(min_size=1, max_size=6), inner, max_size=3),
    max_leaves=10,
)


def _reads(table: Any, item: dict[str, Any]) -> list[Any]:
    """What GetItem, Query, Scan and an UpdateItem's old and new images answer about `item`."""
    table.put_item(Item=item)
    key = {"k": item["k"]}
    return [
        table.get_item(Key=key),
        table.query(KeyConditionExpression="k = :k", ExpressionAttributeValues={":k": item["k"]}),
        table.scan(),
        table.update_item(
            Key=key, UpdateExpression="SET touched = :t", ExpressionAttributeValues={":t": 1}, ReturnValues="ALL_OLD"
        ),
        table.update_item(Key=key, UpdateExpression="REMOVE touched", ReturnValues="ALL_NEW"),
    ]


@settings(max_examples=60, deadline=None)
@given(
    attributes=st.dictionaries(
        st.text(min_size=1, max_size=8).filter(lambda name: name != "k"), attribute_values, max_size=8
    )
)
def test_responses_carry_what_moto_itself_serialises(attributes: dict[str, Any]) -> None:
    """Items of every attribute type, nested: the same answers with and without local.aws.response_fields."""
    item = {"k": "job", **attributes}
    with mock_aws():
        table = boto3.resource("dynamodb", region_name="us-east-1").create_table(
            TableName="reads",
            KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        corrected = _reads(table, item)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(
                moto.core.serialize.XFormedAttributePicker,
                "get_possible_keys",
                response_fields._ORIGINAL_GET_POSSIBLE_KEYS,  # noqa: SLF001
            )
            original = _reads(table, item)
    for answer in corrected + original:
        answer.pop("ResponseMetadata")
    assert corrected == original
    assert corrected[0]["Item"] == item


def _members(shape: Any, seen: set[str]) -> Iterator[tuple[str, Any, Any]]:
    """Every (member name, member shape, structure) reachable from `shape`."""
    if shape is None or shape.name in seen:
        return
    seen.add(shape.name)
    if shape.type_name == "structure":
        for name, member in shape.members.items():
            yield name, member, shape
            yield from _members(member, seen)
    elif shape.type_name == "list":
        yield from _members(shape.member, seen)
    elif shape.type_name == "map":
        yield from _members(shape.value, seen)


def test_every_dynamodb_member_is_picked_from_a_dict_as_moto_picks_it() -> None:
    """For each member of each DynamoDB answer's shape, a dict holding some of the member's aliases (each with its
    own value): the corrected picker takes the value moto's own takes, the second time (remembered) as the first."""
    model = moto.core.utils.get_service_model("dynamodb")
    original = response_fields._ORIGINAL_GET_POSSIBLE_KEYS  # noqa: SLF001

    class MotosOwnPicker(moto.core.serialize.XFormedAttributePicker):
        get_possible_keys = original

    picker, motos = moto.core.serialize.XFormedAttributePicker(), MotosOwnPicker()
    seen: set[str] = set()
    checked = 0
    for operation in model.operation_names:
        for name, member, structure in _members(model.operation_model(operation).output_shape, seen):
            member.parent = structure  # as moto's serializer sets it before asking for the member

            def context(obj: dict[str, Any], name: str = name, member: Any = member) -> Any:
                return moto.core.serialize.AttributePickerContext(
                    obj=obj, key=name, shape=member, operation_model=None, service_model=model, key_path=""
                )

            aliases = list(original(picker, context({})))
            for held in (aliases, aliases[1:], aliases[-1:]):
                obj = {alias: f"value of {alias}" for alias in held}
                expected = motos(context(obj))
                assert expected is not None or not held
                for _ in range(2):
                    assert picker(context(obj)) == expected, (operation, name, held)
            checked += 1
    assert checked > 100


def test_a_dict_fields_aliases_are_derived_once(table: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """moto derived every alias of every member of every attribute value again for each value it serialised."""
    calls: Counter[str] = Counter()
    derive = _counting(calls, "derived", response_fields._ORIGINAL_GET_POSSIBLE_KEYS)  # noqa: SLF001
    monkeypatch.setattr(response_fields, "_ORIGINAL_GET_POSSIBLE_KEYS", derive)
    monkeypatch.setattr(response_fields, "_KEYS", {})
    table.put_item(Item={"k": "job", **{f"a{n}": f"value {n}" for n in range(30)}})
    table.get_item(Key={"k": "job"})
    first = calls["derived"]
    for _ in range(3):
        table.get_item(Key={"k": "job"})
    assert first > 10
    assert calls["derived"] == first
