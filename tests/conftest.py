"""Shared fixtures: the emulated stack is built from template.yaml, never from a resource list kept here."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from moto import mock_aws

from denoise_pipeline import wiring
from local.aws.emulator import correct_moto
from local.aws.template import StackResources, Template
from scripts.make_events import SIGNING_SECRET  # the secret events/webhook-*.json are signed with
from tests.file_server import OutputFileServer, output_file_server
from tests.s3_limits import S3LimitEnforcer, s3_limits_everywhere

EVENTS = Path(__file__).resolve().parent.parent / "events"
STACK_NAME = "denoise-test"

# Powertools reads these when a handler module is imported, which happens at collection, before any fixture. The
# service is the stack's name, as the template sets it: a module imported later, inside a test (the copy worker is
# imported on the first SQS event), must find its parent logger under the same name, or its child logger is an
# orphan whose first append_keys raises (and the batch processor reports every copy message as failed).
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "DenoisePipeline")
os.environ["POWERTOOLS_SERVICE_NAME"] = STACK_NAME  # not setdefault: a shell's own value would split the names
API_KEY = "test-api-key-0123456789"
WEBHOOK_BASE_URL = "https://abc123defg.execute-api.us-east-1.amazonaws.com"
FUNCTIONS = ("SubmitFunction", "WebhookFunction", "ReconcileFunction")


def load_event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text(encoding="utf-8"))
    return event


class FakeContext:
    function_name = "denoise-test"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:denoise-test"
    aws_request_id = "00000000-0000-0000-0000-000000000000"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000


@dataclass
class Stack:
    resources: StackResources
    template: Template
    session: boto3.session.Session

    @property
    def input_bucket(self) -> str:
        return self.resources.ref("InputBucket")

    @property
    def output_bucket(self) -> str:
        return self.resources.ref("OutputBucket")

    @property
    def table(self) -> Any:
        return self.session.resource("dynamodb", region_name="us-east-1").Table(self.resources.ref("JobsTable"))

    def client(self, service: str) -> Any:
        return self.session.client(service, region_name="us-east-1")

    def job_items(self) -> list[dict[str, Any]]:
        items = self.table.scan()["Items"]  # tests only: production code never scans
        return [item for item in items if "status" in item]

    def drain(self, logical_id: str) -> list[dict[str, Any]]:
        """Receive every message of a queue (by logical id)."""
        sqs = self.client("sqs")
        messages: list[dict[str, Any]] = []
        while True:
            batch = sqs.receive_message(
                QueueUrl=self.resources.ref(logical_id),
                MaxNumberOfMessages=10,
                WaitTimeSeconds=0,
                AttributeNames=["ApproximateReceiveCount"],
            ).get("Messages", [])
            if not batch:
                return messages
            messages.extend(batch)
            for message in batch:
                sqs.delete_message(QueueUrl=self.resources.ref(logical_id), ReceiptHandle=message["ReceiptHandle"])

    def published_events(self) -> list[dict[str, Any]]:
        return [json.loads(message["Body"]) for message in self.drain_tap()]

    def drain_tap(self) -> list[dict[str, Any]]:
        sqs = self.client("sqs")
        url = sqs.get_queue_url(QueueName="events-tap")["QueueUrl"]
        messages: list[dict[str, Any]] = []
        while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            messages.extend(batch)
            for message in batch:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return messages


def function_env(template: Template, resources: StackResources, **overrides: str) -> dict[str, str]:
    """The union of the three functions' environments (shared names carry the same values)."""
    env: dict[str, str] = {}
    for function in FUNCTIONS:
        env |= template.function_environment(function, resources, {"WEBHOOK_BASE_URL": WEBHOOK_BASE_URL})
    return env | overrides


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_METRICS_NAMESPACE": "DenoisePipeline",
        "POWERTOOLS_SERVICE_NAME": STACK_NAME,
        "POWERTOOLS_DEV": "false",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def _tap_events(session: boto3.session.Session, bus_name: str) -> None:
    """Route every event on the bus to an SQS queue so tests can see what was published."""
    sqs = session.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="events-tap")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events = session.client("events", region_name="us-east-1")
    events.put_rule(Name="tap", EventBusName=bus_name, EventPattern=json.dumps({"source": ["denoise.pipeline"]}))
    events.put_targets(Rule="tap", EventBusName=bus_name, Targets=[{"Id": "tap", "Arn": arn}])


@pytest.fixture(autouse=True, scope="session")
def moto_corrected() -> None:
    """Real DynamoDB applies each request atomically and real SQS is as fast with a full queue as with an empty one;
    moto is corrected for both here as in the local stack (local.aws.emulator.correct_moto)."""
    correct_moto()


@pytest.fixture(autouse=True, scope="session")
def real_s3_limits() -> Iterator[S3LimitEnforcer]:
    """moto accepts keys, metadata and parts that S3 refuses: every S3 client in the tests refuses them too."""
    with s3_limits_everywhere() as enforcer:
        yield enforcer


@pytest.fixture
def own_s3_limits(real_s3_limits: S3LimitEnforcer) -> Iterator[None]:
    """For the tests of the limits themselves, which scale them down: AWS's real limits step aside meanwhile."""
    real_s3_limits.active = False
    yield
    real_s3_limits.active = True


@pytest.fixture
def files() -> Iterator[OutputFileServer]:
    """Provider output files on a real local socket."""
    with output_file_server() as server:
        yield server


@pytest.fixture
def stack_overrides(files: OutputFileServer) -> dict[str, str]:
    """Template parameter overrides; the file server's origin is allowlisted through the production parameter."""
    return {"OutputHostAllowlist": f"lalals.s3.amazonaws.com,{files.origin}"}


@pytest.fixture
def stack(
    aws_credentials: None,
    monkeypatch: pytest.MonkeyPatch,
    stack_overrides: dict[str, str],
    env_overrides: dict[str, str],
) -> Iterator[Stack]:
    template = Template.load()
    with mock_aws():
        session = boto3.session.Session()
        resources = template.create(
            session,
            stack_name=STACK_NAME,
            parameters={"MusicGptApiKey": API_KEY, **stack_overrides},
            generated_secrets={"WebhookSigningSecret": SIGNING_SECRET},
        )
        _tap_events(session, resources.ref("EventBus"))
        for name, value in function_env(template, resources, **env_overrides).items():
            monkeypatch.setenv(name, value)
        wiring.reset()
        parameters.clear_caches()  # type: ignore[no-untyped-call]
        yield Stack(resources, template, session)
        wiring.reset()
        parameters.clear_caches()  # type: ignore[no-untyped-call]


@pytest.fixture
def provider(httpserver: Any) -> Iterator[Any]:
    from tests.provider_double import ProviderDouble

    double = ProviderDouble(httpserver)
    yield double
    httpserver.clear()


@pytest.fixture
def env_overrides(provider: Any) -> dict[str, str]:
    """Point the functions at the provider double; one quick retry keeps failure tests fast."""
    return {"MUSICGPT_API_URL": provider.base_url, "PROVIDER_MAX_RETRIES": "1", "COPY_RETRY_DELAY_SECONDS": "0"}
