"""The local stack fails where Lambda would: a policy statement missing, a timeout, a dependency missing from the zip.

Each test changes one thing against what ships (a copy of template.yaml, a copy of the built artifact) and shows
the failure Lambda would report, the call that failed and the state the job ends in.
"""

from __future__ import annotations

import json
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from local.cli import upload
from local.lambdas.runtime import ensure_artifacts
from local.stack import LocalStack, LocalStackConfig
from tests.e2e.audio import SAMPLES
from tests.e2e.test_local_stack import endpoints_of, jobs_table, wait_final

pytestmark = pytest.mark.e2e
TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


def template_copy(tmp_path: Path, old: str, new: str) -> Path:
    """template.yaml with one exact, unique passage replaced."""
    text = TEMPLATE.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} is not unique in template.yaml"
    path = tmp_path / "template.yaml"
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


def log_text(stack: LocalStack, function: str) -> str:
    return Path(stack.state()["logs"][function]).read_text(encoding="utf-8")


@pytest.fixture
def stalled_server() -> Iterator[str]:
    """A server that accepts connections (the kernel's backlog) and never answers."""
    with socket.create_server(("127.0.0.1", 0), backlog=64) as server:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def test_a_policy_statement_removed_fails_exactly_that_call_and_the_job_ends_recorded(tmp_path: Path) -> None:
    """Without s3:PutObject on the output bucket, every copy attempt is refused by IAM: the job ends FAILED
    COPY_FAILED with the AccessDenied recorded, and nothing reaches the output bucket."""
    template = template_copy(
        tmp_path,
        "Action: [s3:PutObject, s3:AbortMultipartUpload, s3:GetObject, s3:DeleteObject, s3:DeleteObjectVersion]",
        "Action: [s3:AbortMultipartUpload, s3:GetObject, s3:DeleteObject, s3:DeleteObjectVersion]",
    )
    config = LocalStackConfig(state_dir=tmp_path / "state", template_path=template, parameters={"MaxCopyAttempts": "2"})
    with LocalStack(config) as stack:
        endpoints = endpoints_of(stack)
        job_id = upload(endpoints, SAMPLES / "noisy_speech.wav", "iam/noisy.wav")

        item = wait_final(endpoints, [job_id], timeout=120)[job_id]

        assert item["status"] == "FAILED", item
        assert item["error_code"] == "COPY_FAILED"
        assert "AccessDenied" in item["last_copy_error"]
        listed = endpoints.client("s3").list_object_versions(Bucket=endpoints.output_bucket)
        assert "Versions" not in listed
        denial = (
            f"assumed-role/denoise-local-WebhookRole/denoise-local-WebhookFunction is not authorized to perform: "
            f's3:PutObject on resource: "arn:aws:s3:::{endpoints.output_bucket}/'
        )
        assert denial in item["last_copy_error"]
        assert denial.split(' "')[0] in log_text(stack, "WebhookFunction")  # JSON-escaped quotes in the log


def test_the_same_call_is_allowed_with_the_template_as_written(tmp_path: Path) -> None:
    """The control for the test above, and a check that the functions really run with their roles: the output
    bucket refuses the submit function's role what it grants the webhook function's."""
    with LocalStack(LocalStackConfig(state_dir=tmp_path / "state")) as stack:
        endpoints = endpoints_of(stack)
        job_id = upload(endpoints, SAMPLES / "noisy_speech.wav", "iam/noisy.wav")
        assert wait_final(endpoints, [job_id])[job_id]["status"] == "COMPLETED"

        submit = stack.function_configs["SubmitFunction"]
        s3 = stack.aws.client("s3", stack.aws.role_credentials(submit.role_arn, submit.name))
        with pytest.raises(Exception, match="AccessDenied"):
            s3.put_object(Bucket=endpoints.output_bucket, Key="denoised/forged.wav", Body=b"x")
        dynamodb = stack.aws.client("dynamodb", stack.aws.role_credentials(submit.role_arn, submit.name))
        with pytest.raises(Exception, match="AccessDeniedException"):
            dynamodb.delete_item(TableName=endpoints.jobs_table, Key={"job_id": {"S": job_id}})


def test_a_handler_past_its_timeout_is_killed_and_its_event_retried(tmp_path: Path, stalled_server: str) -> None:
    """The submit function with a 3 s timeout, its provider never answering: the attempt is killed at 3 s
    (Sandbox.Timedout, the whole process), and the asynchronous invocation is retried in a fresh environment,
    which finds the job already RECEIVED (left to the reconciler) instead of submitting it twice."""
    template = template_copy(
        tmp_path,
        "      Handler: denoise_pipeline.handlers.submit.handler\n",
        "      Handler: denoise_pipeline.handlers.submit.handler\n      Timeout: 3\n",
    )
    config = LocalStackConfig(
        state_dir=tmp_path / "state", template_path=template, environment={"MUSICGPT_API_URL": stalled_server}
    )
    with LocalStack(config) as stack:
        endpoints = endpoints_of(stack)
        job_id = upload(endpoints, SAMPLES / "noisy_speech.wav", "slow/noisy.wav")
        submit = stack.functions["SubmitFunction"]
        deadline = time.monotonic() + 60
        while submit.invocations < 2 and time.monotonic() < deadline:  # counted when an invocation ends
            time.sleep(0.2)

        log = log_text(stack, "SubmitFunction")
        assert log.count("Task timed out after 3.00 seconds") == 1
        assert "Status: timeout" in log
        assert '"outcome":"DUPLICATE"' in log  # the retry, in a new environment, did not submit again
        assert submit.errors == 1
        assert submit.cold_starts == 2  # a timed-out environment is never reused
        item = jobs_table(endpoints).get_item(Key={"job_id": job_id}, ConsistentRead=True)["Item"]
        assert item["status"] == "RECEIVED"


def test_an_artifact_without_a_dependency_fails_as_in_lambda_and_the_event_is_kept(tmp_path: Path) -> None:
    """The submit function's own build output minus aws_lambda_powertools: every attempt fails to initialise
    (Runtime.ImportModuleError), and after Lambda's two retries the event lands in the on-failure queue."""
    built = ensure_artifacts(["SubmitFunction"])["SubmitFunction"]
    broken = tmp_path / "artifact"
    shutil.copytree(built, broken, ignore=shutil.ignore_patterns("aws_lambda_powertools*"))
    config = LocalStackConfig(state_dir=tmp_path / "state", artifacts={"SubmitFunction": broken})
    with LocalStack(config) as stack:
        endpoints = endpoints_of(stack)
        job_id = upload(endpoints, SAMPLES / "noisy_speech.wav", "broken/noisy.wav")

        record = _receive_one(stack, "SubmitFailureQueue", timeout=60)

        assert record["requestContext"]["condition"] == "RetriesExhausted"
        assert record["requestContext"]["approximateInvokeCount"] == 3
        assert record["responsePayload"]["errorType"] == "Runtime.ImportModuleError"
        assert "No module named 'aws_lambda_powertools'" in record["responsePayload"]["errorMessage"]
        assert record["requestPayload"]["detail"]["object"]["key"] == "broken/noisy.wav"
        assert "Item" not in jobs_table(endpoints).get_item(Key={"job_id": job_id})
        assert isinstance(stack.run_reconciler(), dict)  # the other artifacts are intact


def _receive_one(stack: LocalStack, queue: str, timeout: float) -> dict[str, Any]:
    assert stack.resources is not None
    sqs = boto3.client("sqs")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        messages = sqs.receive_message(QueueUrl=stack.resources.ref(queue), WaitTimeSeconds=1).get("Messages", [])
        if messages:
            body: dict[str, Any] = json.loads(messages[0]["Body"])
            return body
    raise AssertionError(f"nothing in {queue} after {timeout}s")
