"""Regenerate events/*.json: the sample events used by `sam local invoke -e` and by the tests.

The webhook events carry a token signed with the test signing secret below (never a real one), for a job id
derived from the sample upload, so they verify against the stack the tests build. events/env.json holds each
function's environment as template.yaml resolves it in a deployed stack (`sam local invoke -n events/env.json`),
with example physical names where AWS would generate them.
"""

from __future__ import annotations

import json
from pathlib import Path

from denoise_pipeline.domain.source import SourceObject
from denoise_pipeline.domain.tokens import sign
from local.aws.template import ACCOUNT_ID, REGION, StackResources, Template, resolve
from local.lambdas.events import http_api_event, s3_object_created_event, s3_put_record, scheduled_event, sqs_event

EVENTS = Path(__file__).resolve().parent.parent / "events"
INPUT_BUCKET = "denoise-test-input-123456789012-us-east-1"
EXAMPLE_STACK = "denoise-pipeline"
FUNCTIONS = ("SubmitFunction", "WebhookFunction", "ReconcileFunction")
SIGNING_SECRET = "test-signing-secret-not-for-production-0123456789"  # noqa: S105 - a test value
SAMPLE_KEY = "uploads/My Song+(1) é.wav"
SAMPLE_ETAG = "9b2cf535f27731c974343645a3985328"
TASK_ID = "5f0b8c9e-2d6a-4c1b-9a51-3e8f1c2d7a40"
CONVERSION_ID = "a1c2e3f4-5b6d-4e8f-9a0b-1c2d3e4f5a6b"
FILES = "https://lalals.s3.amazonaws.com/conversions/denoise"
ROUTE = "POST /webhooks/{job_id}/{token}"


def _write(name: str, event: object) -> None:
    (EVENTS / name).write_text(json.dumps(event, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _webhook(job_id: str, token: str, payload: dict[str, object]) -> dict[str, object]:
    body = json.dumps(payload).encode()
    headers = {"content-type": "application/json", "user-agent": "python-requests/2.32.3"}
    path = f"/webhooks/{job_id}/{token}"
    return http_api_event("POST", path, ROUTE, {"job_id": job_id, "token": token}, headers, body, "34.201.10.20")


def example_stack(template: Template) -> StackResources:
    """The Ref and GetAtt values of a stack deployed as EXAMPLE_STACK, names AWS generates shown as examples."""
    stack = StackResources(EXAMPLE_STACK, template.parameter_values({"MusicGptApiKey": "example-api-key"}))
    for logical_id, resource in template.resources.items():
        props, kind = resource.get("Properties", {}), resource["Type"]
        generated = f"{EXAMPLE_STACK}-{logical_id}-EXAMPLE1A2B3C"
        if kind == "AWS::S3::Bucket":
            name = str(resolve(props["BucketName"], stack))
            stack.refs[logical_id] = name
            stack.attributes[logical_id] = {"Arn": f"arn:aws:s3:::{name}"}
        elif kind == "AWS::DynamoDB::Table":
            stack.refs[logical_id] = generated
            stack.attributes[logical_id] = {"Arn": f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{generated}"}
        elif kind == "AWS::SQS::Queue":
            url = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT_ID}/{generated}"
            stack.refs[logical_id] = url
            arn = f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{generated}"
            stack.attributes[logical_id] = {"Arn": arn, "QueueName": generated, "QueueUrl": url}
        elif kind == "AWS::SecretsManager::Secret":
            arn = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT_ID}:secret:{logical_id}-EXAMPLE1A2B3C-AbCdEf"
            stack.refs[logical_id] = arn
            stack.attributes[logical_id] = {"Id": arn}
        elif kind == "AWS::Events::EventBus":
            name = str(resolve(props["Name"], stack))
            stack.refs[logical_id] = name
            stack.attributes[logical_id] = {
                "Arn": f"arn:aws:events:{REGION}:{ACCOUNT_ID}:event-bus/{name}",
                "Name": name,
            }
        elif kind == "AWS::ApiGatewayV2::Api":
            stack.refs[logical_id] = "a1b2c3d4e5"
    return stack


def environment_file() -> dict[str, dict[str, str]]:
    template = Template.load()
    stack = example_stack(template)
    return {name: template.function_environment(name, stack) for name in FUNCTIONS}


def main() -> None:
    sample = SourceObject(INPUT_BUCKET, SAMPLE_KEY, 524_288, SAMPLE_ETAG)
    job_id = sample.job_id
    token = sign(SIGNING_SECRET, job_id)
    completed = {
        "success": True,
        "conversion_type": "Denoise",
        "task_id": TASK_ID,
        "conversion_id": CONVERSION_ID,
        "audio_path": f"files/{CONVERSION_ID}.wav",
        "no_noise": f"{FILES}/{CONVERSION_ID}_nonoise.mp3",
        "no_noise_wav": f"{FILES}/{CONVERSION_ID}_nonoise.wav",
        "noise": f"{FILES}/{CONVERSION_ID}_noise.mp3",
        "noise_wav": f"{FILES}/{CONVERSION_ID}_noise.wav",
        "message": "de_noising conversion Completed",
        "conversion_duration": 136.8,
        "conversion_cost": "0.48",
    }
    failed = {
        "success": False,
        "conversion_type": "Denoise",
        "task_id": TASK_ID,
        "conversion_id": CONVERSION_ID,
        "message": "Audio could not be decoded",
    }
    _write("s3-put.json", {"Records": [s3_put_record(INPUT_BUCKET, SAMPLE_KEY, sample.size, SAMPLE_ETAG)]})
    _write(
        "s3-put-multiple.json",
        {
            "Records": [
                s3_put_record(INPUT_BUCKET, "uploads/interview take 2.mp3", 1_048_576, "0c8e2f8b1d4a4f0e8a51c3e7"),
                s3_put_record(INPUT_BUCKET, "uploads/LOUD ROOM.WAV", 2_097_152, "7d1f3c5a9e2b4d6f8a0c1e3b5d7f9a2c"),
                s3_put_record(INPUT_BUCKET, "uploads/notes.txt", 512, "3e5a7c9b1d2f4a6c8e0b2d4f6a8c0e1b"),
                s3_put_record(INPUT_BUCKET, "uploads/empty.flac", 0, "d41d8cd98f00b204e9800998ecf8427e"),
                s3_put_record(INPUT_BUCKET, "uploads/folder/", 0, "d41d8cd98f00b204e9800998ecf8427e"),
            ]
        },
    )
    _write("webhook-completed.json", _webhook(job_id, token, completed))
    _write("webhook-duplicate.json", _webhook(job_id, token, completed))
    _write("webhook-failed.json", _webhook(job_id, token, failed))
    forged = sign("not-the-signing-secret", job_id)
    _write("webhook-forged.json", _webhook(job_id, forged, completed))
    copy_queue_arn = "arn:aws:sqs:us-east-1:123456789012:denoise-test-CopyQueue"
    _write("sqs-copy.json", sqs_event(copy_queue_arn, [("6c9d1e2f-copy-0001", json.dumps({"job_id": job_id}), 1)]))
    admission_arn = "arn:aws:sqs:us-east-1:123456789012:denoise-test-AdmissionQueue"
    _write("sqs-admission.json", sqs_event(admission_arn, [("7a8b9c0d-admit-0001", json.dumps({"job_id": job_id}), 1)]))
    _write("schedule.json", scheduled_event())
    _write(
        "eventbridge-object-created.json",
        s3_object_created_event(
            INPUT_BUCKET, "uploads/Take 2.Mp3", 1_048_576, SAMPLE_ETAG, "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"
        ),
    )
    _write("env.json", environment_file())


if __name__ == "__main__":
    main()
