"""IAM enforced by the emulated AWS (local.aws.authorization) for role sessions shaped like the template's roles.

One moto server for the module, provisioned with enforcement off, then switched on: each test calls it through
boto3 with the credentials a function (or the stack) would hold. The last test switches enforcement off again and
checks that plain moto, `mock_aws` included, behaves as without the hooks; it resets moto's backends, so it stays last.
"""

from __future__ import annotations

import html
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError
from hypothesis import given
from hypothesis import strategies as st
from moto import mock_aws
from moto.iam.access_control import IAMPolicyStatement, PermissionResult
from moto.iam.exceptions import NotFoundException
from moto.server import ThreadedMotoServer

from local.aws.authorization import disable, enable, install
from local.aws.credentials import admin_credentials, role_credentials

ACCOUNT = "123456789012"
REGION = "us-east-1"
KEY = "uploads/a b.wav"
ITEM = {"job_id": {"S": "j1"}, "status": {"S": "QUEUED"}}
EVENT = {"Source": "denoise.pipeline", "DetailType": "job", "Detail": "{}"}


def arn(service: str, resource: str) -> str:
    return f"arn:aws:{service}:{REGION}:{ACCOUNT}:{resource}"


def bucket_arn(bucket: str) -> str:
    return f"arn:aws:s3:::{bucket}"


def session_arn(role: str, function: str) -> str:
    return f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{function}"


def implicit_denial(principal: str, action: str, resource: str) -> str:
    return (
        f"User: {principal} is not authorized to perform: {action} on resource: {resource} "
        f"because no identity-based policy allows the {action} action"
    )


def policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(actions: list[str], resources: list[str], **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": actions, "Resource": resources, **extra}


def deny_insecure_transport(bucket: str) -> str:
    """The bucket policy template.yaml gives its buckets."""
    return policy(
        {
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [bucket_arn(bucket), bucket_arn(bucket) + "/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
    )


@dataclass(frozen=True)
class Emulated:
    endpoint: str
    secrets: dict[str, str]  # name -> full ARN (with moto's random suffix)
    queues: dict[str, str]  # name -> URL
    credentials: dict[str, dict[str, str]]  # who -> AWS_* variables

    def client(self, who: str, service: str, **config: Any) -> Any:
        variables = self.credentials[who]
        return boto3.client(
            service,
            region_name=REGION,
            endpoint_url=self.endpoint,
            aws_access_key_id=variables["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=variables["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=variables.get("AWS_SESSION_TOKEN"),
            config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}, **config),
        )


def _provision(endpoint: str) -> tuple[dict[str, str], dict[str, str]]:
    """The resources the roles below name and resources they do not, created with enforcement off (any key works)."""
    anyone = {"AWS_ACCESS_KEY_ID": "AKIAPROVISIONING000", "AWS_SECRET_ACCESS_KEY": "unused"}
    boot = Emulated(endpoint, {}, {}, {"boot": anyone})
    dynamodb = boot.client("boot", "dynamodb")
    for table in ("jobs", "other"):
        dynamodb.create_table(
            TableName=table,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[
                {"AttributeName": "job_id", "AttributeType": "S"},
                {"AttributeName": "status", "AttributeType": "S"},
            ],
            KeySchema=[{"AttributeName": "job_id", "KeyType": "HASH"}],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": "by-status",
                    "KeySchema": [{"AttributeName": "status", "KeyType": "HASH"}],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
        )
        dynamodb.put_item(TableName=table, Item=ITEM)
    secretsmanager = boot.client("boot", "secretsmanager")
    secrets = {
        name: secretsmanager.create_secret(Name=name, SecretString=name)["ARN"]
        for name in ("musicgpt-key", "other-secret")
    }
    events = boot.client("boot", "events")
    for bus in ("denoise", "other-bus"):
        events.create_event_bus(Name=bus)
    sqs = boot.client("boot", "sqs")
    queues = {name: sqs.create_queue(QueueName=name)["QueueUrl"] for name in ("admission", "other-queue")}
    s3 = boot.client("boot", "s3")
    for bucket in ("in-bucket", "out-bucket", "other-bucket"):
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        s3.put_object(Bucket=bucket, Key=KEY, Body=b"RIFF")
        s3.put_bucket_policy(Bucket=bucket, Policy=deny_insecure_transport(bucket))
    iam = boot.client("boot", "iam")
    trust = policy({"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"})
    roles = {
        # template.yaml SubmitRole, on these resources
        "submit-role": policy(
            allow(["logs:CreateLogStream", "logs:PutLogEvents"], [arn("logs", "log-group:/aws/lambda/submit:*")]),
            allow(["xray:PutTraceSegments", "xray:PutTelemetryRecords"], ["*"]),
            allow(
                ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query"],
                [arn("dynamodb", "table/jobs"), arn("dynamodb", "table/jobs/index/*")],
            ),
            allow(["s3:GetObject", "s3:GetObjectVersion"], [bucket_arn("in-bucket") + "/*"]),
            allow(["secretsmanager:GetSecretValue"], [secrets["musicgpt-key"]]),
            allow(["events:PutEvents"], [arn("events", "event-bus/denoise")]),
            allow(["sqs:SendMessage"], [arn("sqs", "admission")]),
            allow(
                ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"],
                [arn("sqs", "admission")],
            ),
        ),
        # template.yaml WebhookRole's outputs: objects plus s3:ListBucket, so a missing output is a 404
        "webhook-role": policy(
            allow(["dynamodb:GetItem", "dynamodb:UpdateItem"], [arn("dynamodb", "table/jobs")]),
            allow(
                ["s3:PutObject", "s3:AbortMultipartUpload", "s3:GetObject", "s3:DeleteObject"],
                [bucket_arn("out-bucket") + "/*"],
            ),
            allow(["s3:ListBucket"], [bucket_arn("out-bucket")]),
        ),
        # conditions, evaluated against the request context
        "guarded-role": policy(
            allow(
                ["dynamodb:GetItem"],
                ["*"],
                Condition={"StringEquals": {"aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT}:role/guarded-role"}},
            ),
            allow(["dynamodb:Query"], ["*"], Condition={"StringEquals": {"aws:PrincipalTag/team": "audio"}}),
            allow(["dynamodb:Scan"], ["*"], Condition={"StringEquals": {"aws:RequestedRegion": "eu-west-1"}}),
            allow(["dynamodb:PutItem", "dynamodb:DeleteItem"], ["*"]),
            {"Effect": "Deny", "Action": "dynamodb:DeleteItem", "Resource": arn("dynamodb", "table/jobs")},
            {
                "Effect": "Deny",
                "Action": "dynamodb:*",
                "Resource": "*",
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
        ),
    }
    for role, document in roles.items():
        iam.create_role(RoleName=role, AssumeRolePolicyDocument=trust)
        iam.put_role_policy(RoleName=role, PolicyName=role, PolicyDocument=document)
    return secrets, queues


@pytest.fixture(scope="module")
def emulated() -> Iterator[Emulated]:
    install()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        requests.post(f"{endpoint}/moto-api/reset", timeout=10).raise_for_status()
        secrets, queues = _provision(endpoint)
        enable(endpoint)
        credentials = {"admin": admin_credentials()}
        for role, function in (("submit", "SubmitFunction"), ("webhook", "WebhookFunction"), ("guarded", "Guarded")):
            credentials[role] = role_credentials(f"arn:aws:iam::{ACCOUNT}:role/{role}-role", function)
        yield Emulated(endpoint, secrets, queues, credentials)
    finally:
        disable(endpoint)
        server.stop()


def denied(call: Callable[[], object], code: str, status: int) -> str:
    """The error's message, once its code and HTTP status are the ones AWS answers."""
    with pytest.raises(ClientError) as caught:
        call()
    response = caught.value.response
    assert (response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]) == (code, status)
    return str(response["Error"].get("Message", ""))


SUBMIT = session_arn("submit-role", "SubmitFunction")
WEBHOOK = session_arn("webhook-role", "WebhookFunction")
GUARDED = session_arn("guarded-role", "Guarded")


def test_dynamodb_is_authorized_per_table_index_and_item_operation(emulated: Emulated) -> None:
    dynamodb = emulated.client("submit", "dynamodb")
    key = {"job_id": ITEM["job_id"]}
    by_status = {
        "IndexName": "by-status",
        "KeyConditionExpression": "#s = :s",
        "ExpressionAttributeNames": {"#s": "status"},
        "ExpressionAttributeValues": {":s": {"S": "QUEUED"}},
    }
    assert dynamodb.get_item(TableName="jobs", Key=key)["Item"] == ITEM
    assert dynamodb.get_item(TableName=arn("dynamodb", "table/jobs"), Key=key)["Item"] == ITEM
    assert dynamodb.query(TableName="jobs", **by_status)["Count"] == 1
    dynamodb.transact_write_items(TransactItems=[{"Put": {"TableName": "jobs", "Item": ITEM}}])  # as PutItem

    def refused(call: Callable[[], object], action: str, resource: str) -> None:
        message = denied(call, "AccessDeniedException", 400)
        assert message == implicit_denial(SUBMIT, f"dynamodb:{action}", arn("dynamodb", resource))

    refused(lambda: dynamodb.get_item(TableName="other", Key=key), "GetItem", "table/other")
    refused(lambda: dynamodb.query(TableName="other", **by_status), "Query", "table/other/index/by-status")
    refused(lambda: dynamodb.delete_item(TableName="jobs", Key=key), "DeleteItem", "table/jobs")
    refused(lambda: dynamodb.batch_get_item(RequestItems={"jobs": {"Keys": [key]}}), "BatchGetItem", "table/jobs")
    refused(
        lambda: dynamodb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": "jobs", "Item": ITEM}},
                {"Put": {"TableName": "other", "Item": ITEM}},
            ]
        ),
        "PutItem",
        "table/other",
    )
    refused(
        lambda: dynamodb.transact_get_items(TransactItems=[{"Get": {"TableName": "other", "Key": key}}]),
        "GetItem",
        "table/other",
    )
    webhook = emulated.client("webhook", "dynamodb")
    assert webhook.get_item(TableName="jobs", Key=key)["Item"] == ITEM
    message = denied(lambda: webhook.query(TableName="jobs", **by_status), "AccessDeniedException", 400)
    assert message == implicit_denial(WEBHOOK, "dynamodb:Query", arn("dynamodb", "table/jobs/index/by-status"))


def test_secrets_are_authorized_on_their_full_arn_however_named(emulated: Emulated) -> None:
    secrets = emulated.client("submit", "secretsmanager")
    granted = emulated.secrets["musicgpt-key"]
    for secret_id in (granted, "musicgpt-key", granted.rsplit("-", 1)[0]):  # full ARN, name, partial ARN
        assert secrets.get_secret_value(SecretId=secret_id)["SecretString"] == "musicgpt-key"
    other = emulated.secrets["other-secret"]
    for call, action, resource in (
        (partial(secrets.get_secret_value, SecretId="other-secret"), "GetSecretValue", other),
        (partial(secrets.describe_secret, SecretId=granted), "DescribeSecret", granted),
        # AccessDenied before ResourceNotFound, on the ARN the name would have
        (
            partial(secrets.get_secret_value, SecretId="no-such-secret"),
            "GetSecretValue",
            arn("secretsmanager", "secret:no-such-secret"),
        ),
    ):
        message = denied(call, "AccessDeniedException", 400)
        assert message == implicit_denial(SUBMIT, f"secretsmanager:{action}", resource)


def test_events_are_authorized_per_bus(emulated: Emulated) -> None:
    events = emulated.client("submit", "events")
    for bus in ("denoise", arn("events", "event-bus/denoise")):
        assert events.put_events(Entries=[{**EVENT, "EventBusName": bus}])["FailedEntryCount"] == 0
    for entries, bus in (
        ([{**EVENT, "EventBusName": "other-bus"}], "other-bus"),
        ([EVENT], "default"),
        ([{**EVENT, "EventBusName": "denoise"}, {**EVENT, "EventBusName": "other-bus"}], "other-bus"),
    ):
        message = denied(partial(events.put_events, Entries=entries), "AccessDeniedException", 400)
        assert message == implicit_denial(SUBMIT, "events:PutEvents", arn("events", f"event-bus/{bus}"))


def test_sqs_is_authorized_per_queue_with_batches_as_their_action(emulated: Emulated) -> None:
    sqs = emulated.client("submit", "sqs")
    admission, other = emulated.queues["admission"], emulated.queues["other-queue"]
    sqs.send_message(QueueUrl=admission, MessageBody="one")
    sqs.send_message_batch(QueueUrl=admission, Entries=[{"Id": "1", "MessageBody": "two"}])
    received = sqs.receive_message(QueueUrl=admission, MaxNumberOfMessages=10)["Messages"]
    sqs.delete_message_batch(
        QueueUrl=admission,
        Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(received)],
    )
    for call, action, queue in (
        (lambda: sqs.send_message(QueueUrl=other, MessageBody="x"), "SendMessage", "other-queue"),
        (lambda: sqs.purge_queue(QueueUrl=admission), "PurgeQueue", "admission"),
        (lambda: sqs.get_queue_url(QueueName="admission"), "GetQueueUrl", "admission"),
    ):
        assert denied(call, "AccessDenied", 403) == implicit_denial(SUBMIT, f"sqs:{action}", arn("sqs", queue))


def test_s3_objects_are_authorized_per_bucket_and_action(emulated: Emulated) -> None:
    s3 = emulated.client("submit", "s3")
    # in-bucket denies insecure transport, as the template's buckets do: the SDK's requests are TLS on AWS
    assert s3.get_object(Bucket="in-bucket", Key=KEY)["Body"].read() == b"RIFF"
    version = s3.head_object(Bucket="in-bucket", Key=KEY)["VersionId"]
    assert s3.get_object(Bucket="in-bucket", Key=KEY, VersionId=version)["Body"].read() == b"RIFF"

    def refused(call: Callable[[], object], action: str, resource: str) -> None:
        assert denied(call, "AccessDenied", 403) == implicit_denial(SUBMIT, f"s3:{action}", f'"{resource}"')

    refused(lambda: s3.get_object(Bucket="other-bucket", Key=KEY), "GetObject", bucket_arn("other-bucket/") + KEY)
    refused(lambda: s3.put_object(Bucket="in-bucket", Key="x", Body=b"1"), "PutObject", bucket_arn("in-bucket/x"))
    refused(
        lambda: s3.copy_object(Bucket="in-bucket", Key="copy", CopySource={"Bucket": "other-bucket", "Key": KEY}),
        "GetObject",
        bucket_arn("other-bucket/") + KEY,
    )
    # no body in a HEAD answer: botocore reports the status
    denied(lambda: s3.head_bucket(Bucket="in-bucket"), "403", 403)  # s3:ListBucket
    webhook = emulated.client("webhook", "s3")
    webhook.copy_object(Bucket="out-bucket", Key="copy", CopySource={"Bucket": "out-bucket", "Key": KEY})
    webhook.head_bucket(Bucket="out-bucket")
    message = denied(lambda: webhook.get_object(Bucket="out-bucket", Key=KEY, VersionId=version), "AccessDenied", 403)
    assert message == implicit_denial(WEBHOOK, "s3:GetObjectVersion", f'"{bucket_arn("out-bucket/")}{KEY}"')


def test_a_missing_key_is_404_only_to_callers_allowed_to_list_the_bucket(emulated: Emulated) -> None:
    submit, webhook = emulated.client("submit", "s3"), emulated.client("webhook", "s3")
    message = denied(lambda: submit.get_object(Bucket="in-bucket", Key="missing"), "AccessDenied", 403)
    assert message == implicit_denial(SUBMIT, "s3:ListBucket", f'"{bucket_arn("in-bucket")}"')
    denied(lambda: submit.head_object(Bucket="in-bucket", Key="missing"), "403", 403)
    denied(lambda: webhook.get_object(Bucket="out-bucket", Key="missing"), "NoSuchKey", 404)
    denied(lambda: webhook.head_object(Bucket="out-bucket", Key="missing"), "404", 404)


@pytest.mark.parametrize("config", [{}, {"signature_version": "s3v4"}], ids=["default-sigv2", "sigv4"])
def test_presigned_urls_carry_the_signers_permissions_and_expire(emulated: Emulated, config: dict[str, str]) -> None:
    s3 = emulated.client("submit", "s3", **config)

    def presign(bucket: str, expires: int = 300, **params: str) -> str:
        url: str = s3.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": KEY, **params}, ExpiresIn=expires
        )
        return url

    version = s3.head_object(Bucket="in-bucket", Key=KEY)["VersionId"]
    for url in (presign("in-bucket"), presign("in-bucket", VersionId=version)):
        answer = requests.get(url, timeout=10)
        assert (answer.status_code, answer.content) == (200, b"RIFF")
    answer = requests.get(presign("other-bucket"), timeout=10)
    assert answer.status_code == 403
    assert "<Code>AccessDenied</Code>" in answer.text
    message = implicit_denial(SUBMIT, "s3:GetObject", f'"{bucket_arn("other-bucket/")}{KEY}"')
    assert f"<Message>{message}</Message>" in html.unescape(answer.text)
    expiring = presign("in-bucket", expires=1)
    time.sleep(1.5)
    answer = requests.get(expiring, timeout=10)
    assert answer.status_code == 403
    assert "Request has expired" in answer.text


def test_conditions_see_the_request_context(emulated: Emulated) -> None:
    dynamodb = emulated.client("guarded", "dynamodb")
    key = {"job_id": ITEM["job_id"]}
    # aws:PrincipalArn is the role's ARN; the Deny on aws:SecureTransport false does not apply
    assert dynamodb.get_item(TableName="other", Key=key)["Item"] == ITEM
    dynamodb.put_item(TableName="other", Item=ITEM)
    dynamodb.delete_item(TableName="other", Key=key)
    # a condition on a missing key (no principal tags) or another region: the Allow does not apply
    message = denied(
        lambda: dynamodb.query(
            TableName="jobs",
            KeyConditionExpression="job_id = :j",
            ExpressionAttributeValues={":j": key["job_id"]},
        ),
        "AccessDeniedException",
        400,
    )
    assert message == implicit_denial(GUARDED, "dynamodb:Query", arn("dynamodb", "table/jobs"))
    denied(lambda: dynamodb.scan(TableName="jobs"), "AccessDeniedException", 400)
    message = denied(lambda: dynamodb.delete_item(TableName="jobs", Key=key), "AccessDeniedException", 400)
    assert message == (
        f"User: {GUARDED} is not authorized to perform: dynamodb:DeleteItem on resource: "
        f"{arn('dynamodb', 'table/jobs')} with an explicit deny in an identity-based policy"
    )


def test_the_admin_user_may_do_anything(emulated: Emulated) -> None:
    assert "other" in emulated.client("admin", "dynamodb").list_tables()["TableNames"]
    secret = emulated.client("admin", "secretsmanager").get_secret_value(SecretId="other-secret")
    assert secret["SecretString"] == "other-secret"
    emulated.client("admin", "events").put_events(Entries=[{**EVENT, "EventBusName": "other-bus"}])
    emulated.client("admin", "sqs").purge_queue(QueueUrl=emulated.queues["other-queue"])
    s3 = emulated.client("admin", "s3")
    s3.head_bucket(Bucket="other-bucket")
    assert s3.get_object(Bucket="other-bucket", Key=KEY)["Body"].read() == b"RIFF"
    assert len(emulated.client("admin", "iam").list_roles()["Roles"]) == 3
    assert admin_credentials() == emulated.credentials["admin"]  # the same user and key again


def test_unknown_credentials_are_refused_as_aws_refuses_them(emulated: Emulated) -> None:
    stranger = {"AWS_ACCESS_KEY_ID": "AKIANOBODY0000000000", "AWS_SECRET_ACCESS_KEY": "x"}
    wrong_secret = {**emulated.credentials["admin"], "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    calls = Emulated(emulated.endpoint, {}, {}, {"stranger": stranger, "wrong": wrong_secret})
    denied(lambda: calls.client("stranger", "dynamodb").list_tables(), "UnrecognizedClientException", 400)
    denied(lambda: calls.client("wrong", "dynamodb").list_tables(), "InvalidSignatureException", 400)
    denied(lambda: calls.client("stranger", "sqs").get_queue_url(QueueName="admission"), "InvalidClientTokenId", 403)
    denied(lambda: calls.client("stranger", "s3").get_object(Bucket="in-bucket", Key=KEY), "InvalidAccessKeyId", 403)
    with pytest.raises(NotFoundException):
        role_credentials(f"arn:aws:iam::{ACCOUNT}:role/no-such-role", "Nobody")


def test_disabled_enforcement_is_plain_moto_again(emulated: Emulated) -> None:
    disable(emulated.endpoint)
    anyone = Emulated(
        emulated.endpoint, {}, {}, {"anyone": {"AWS_ACCESS_KEY_ID": "AKIAANYONE", "AWS_SECRET_ACCESS_KEY": "x"}}
    )
    assert "other" in anyone.client("anyone", "dynamodb").list_tables()["TableNames"]
    anyone.client("anyone", "sqs").send_message(QueueUrl=emulated.queues["other-queue"], MessageBody="x")
    anyone.client("anyone", "secretsmanager").describe_secret(SecretId="other-secret")
    anyone.client("anyone", "events").put_events(Entries=[EVENT])
    assert anyone.client("anyone", "s3").get_object(Bucket="other-bucket", Key=KEY)["Body"].read() == b"RIFF"
    with mock_aws():  # resets moto's backends: the server's resources are gone from here on
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="plain")
        s3.put_bucket_policy(Bucket="plain", Policy=deny_insecure_transport("plain"))
        s3.put_object(Bucket="plain", Key=KEY, Body=b"RIFF")
        assert s3.get_object(Bucket="plain", Key=KEY)["Body"].read() == b"RIFF"
        table = boto3.client("dynamodb", region_name=REGION)
        table.create_table(
            TableName="plain",
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "job_id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "job_id", "KeyType": "HASH"}],
        )
        table.put_item(TableName="plain", Item={"job_id": {"S": "j1"}})


# ------------------------------------------------------------------------------------------------ conditions
def applies(operator: str, key: str, expected: Any, context: dict[str, str]) -> bool:
    """Whether an Allow statement with this one condition grants s3:GetObject, through moto's evaluation."""
    install()
    statement = IAMPolicyStatement(
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*", "Condition": {operator: {key: expected}}}
    )
    return bool(
        statement.is_action_permitted("s3:GetObject", "*", incoming_condition_values=context)
        == PermissionResult.PERMITTED
    )


condition_keys = st.from_regex(r"(aws|sts|s3):[A-Za-z][A-Za-z/]{0,20}", fullmatch=True)
condition_values = st.text(max_size=12)


@given(key=condition_keys, actual=condition_values, expected=st.lists(condition_values, min_size=1, max_size=3))
def test_string_equals_and_not_equals_are_complements_when_the_key_is_present(
    key: str, actual: str, expected: list[str]
) -> None:
    context = {key: actual}
    equals = applies("StringEquals", key, expected, context)
    assert equals == (actual in expected)
    assert applies("StringNotEquals", key, expected, context) == (not equals)
    assert applies("StringEqualsIfExists", key, expected, context) == equals
    assert applies("StringNotEqualsIfExists", key, expected, context) == (not equals)


@given(key=condition_keys, expected=condition_values)
def test_a_missing_key_matches_no_value(key: str, expected: str) -> None:
    """AWS: a key absent from the request context matches nothing, so a negated operator holds; ...IfExists holds."""
    assert not applies("StringEquals", key, expected, {})
    assert applies("StringNotEquals", key, expected, {})
    assert applies("StringEqualsIfExists", key, expected, {})
    assert applies("StringNotEqualsIfExists", key, expected, {})
    assert applies("Null", key, "true", {})
    assert not applies("Null", key, "false", {})


@pytest.mark.parametrize(
    ("operator", "expected", "actual", "holds"),
    [
        ("Bool", False, "false", True),  # a JSON boolean in the policy
        ("Bool", "true", "false", False),
        ("StringEqualsIgnoreCase", "Audio", "aUDIO", True),
        ("StringNotEqualsIgnoreCase", "Audio", "aUDIO", False),
        ("StringLike", "in-*/uploads/?.wav", "in-bucket/uploads/a.wav", True),
        ("StringLike", "[ab]", "a", False),  # only * and ? are wildcards
        ("StringNotLike", "in-*", "out-bucket", True),
        ("ArnLike", "arn:aws:iam::*:role/submit-*", "arn:aws:iam::123456789012:role/submit-role", True),
        ("ArnEquals", "arn:aws:iam::*:role/x", "arn:aws:iam::1:2:role/x", False),  # * stays within one part
        ("ArnNotLike", "arn:aws:iam::*:role/webhook-*", "arn:aws:iam::123456789012:role/submit-role", True),
        ("Null", "false", "anything", True),
        ("NumericLessThan", "10", "5", False),  # not implemented: an Allow does not apply (a Deny does, below)
        ("ForAnyValue:StringEquals", "a", "a", False),
    ],
)
def test_condition_operators(operator: str, expected: Any, actual: str, holds: bool) -> None:
    assert applies(operator, "aws:SomeKey", expected, {"aws:somekey": actual}) == holds


def test_an_unmet_condition_on_a_deny_is_neutral_not_a_deny() -> None:
    install()
    statement = IAMPolicyStatement(
        {
            "Effect": "Deny",
            "Action": "s3:*",
            "Resource": "*",
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
    )
    context = {"aws:SecureTransport": "true"}
    assert statement.is_action_permitted("s3:GetObject", "*", incoming_condition_values=context) == (
        PermissionResult.NEUTRAL
    )


def test_a_deny_with_an_operator_the_emulation_does_not_know_applies() -> None:
    """Fail closed: an unknown operator never lets the emulation grant what AWS might refuse."""
    install()
    deny = IAMPolicyStatement(
        {"Effect": "Deny", "Action": "s3:*", "Resource": "*", "Condition": {"NumericLessThan": {"s3:max-keys": "10"}}}
    )
    allow = IAMPolicyStatement({**deny._statement, "Effect": "Allow"})
    assert deny.is_action_permitted("s3:ListBucket", "*", incoming_condition_values={}) == PermissionResult.DENIED
    assert allow.is_action_permitted("s3:ListBucket", "*", incoming_condition_values={}) == PermissionResult.NEUTRAL
