"""The emulation itself must behave like DynamoDB under concurrency, or race tests measure moto instead of us."""

from __future__ import annotations

import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import moto.backends
import moto.core.utils
import moto.s3.models
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

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


def test_a_send_does_not_read_the_clock_once_per_queued_message(
    deep_queue: tuple[Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """moto counts every queued message on each SendMessage, reading the clock through datetime arithmetic for each
    one; local.aws.sqs_clock makes that clock a plain time.time() (conftest applies it, as the local stack does)."""
    sqs, url = deep_queue
    reads = 0
    original = moto.core.utils.utcnow

    def counted() -> Any:
        nonlocal reads
        reads += 1
        return original()

    monkeypatch.setattr(moto.core.utils, "utcnow", counted)
    sqs.send_message(QueueUrl=url, MessageBody="{}")
    assert reads < 20  # 801 without local.aws.sqs_clock (four reads per queued message)


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
    listings = 0
    original = moto.backends.list_of_moto_modules

    def counted() -> Any:
        nonlocal listings
        listings += 1
        return original()

    monkeypatch.setattr(moto.backends, "list_of_moto_modules", counted)
    host = "dynamodb.eu-west-3.amazonaws.com"  # a host no other test routes, so its first lookup happens here
    assert [dispatcher.get_backend_for_host(host) for _ in range(3)] == ["dynamodb"] * 3
    assert listings == 1


# ---------------------------------------------------------------- S3: a part copy reads its range, not the object


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
    promotion in two parts read 2 GiB); local.aws.s3_part_copy reads the range alone (conftest applies it, as the
    local stack does)."""
    s3, version, body = versioned_source
    [key] = [
        key
        for key in moto.s3.models.s3_backends[DEFAULT_ACCOUNT_ID]["aws"].buckets["parts"].keys.getlist("source")
        if key.version_id == version
    ]
    read: list[int] = []

    class CountedBuffer:
        def __init__(self, buffer: Any) -> None:
            self._buffer = buffer

        def read(self, *size: int) -> bytes:
            data: bytes = self._buffer.read(*size)
            read.append(len(data))
            return data

        def __getattr__(self, name: str) -> Any:
            return getattr(self._buffer, name)

    monkeypatch.setattr(key, "_value_buffer", CountedBuffer(key._value_buffer))  # noqa: SLF001 - the spy
    upload = s3.create_multipart_upload(Bucket="parts", Key="copy")["UploadId"]
    s3.upload_part_copy(
        Bucket="parts",
        Key="copy",
        UploadId=upload,
        PartNumber=1,
        CopySource={"Bucket": "parts", "Key": "source", "VersionId": version},
        CopySourceRange=f"bytes={MIB}-{2 * MIB - 1}",
    )
    assert sum(read) == MIB  # 12 MiB, the whole source, without local.aws.s3_part_copy
    part = moto.s3.models.s3_backends[DEFAULT_ACCOUNT_ID]["aws"].buckets["parts"].multiparts[upload].parts[1]
    assert part.value == body[MIB : 2 * MIB]
