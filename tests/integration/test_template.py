"""template.yaml as `sam deploy` sees it: translated by the real SAM transform (aws-sam-translator), then read as
a deployer would. moto evaluates the upload rule's event pattern with EventBridge's matcher."""

from __future__ import annotations

import copy
import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from denoise_pipeline.domain.source import AUDIO_SUFFIXES
from denoise_pipeline.settings import ReconcileSettings, SubmitSettings, WebhookSettings
from local.aws.template import Template, TemplateError
from scripts.make_events import environment_file

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = {
    "SubmitFunction": SubmitSettings,
    "WebhookFunction": WebhookSettings,
    "ReconcileFunction": ReconcileSettings,
}
# Types whose physical name must be unique in an account (and region): two stacks side by side must never share one.
NAMED = {
    "AWS::S3::Bucket": "BucketName",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::IAM::Role": "RoleName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::CloudWatch::Dashboard": "DashboardName",
    "AWS::CloudWatch::Alarm": "AlarmName",
    "AWS::Events::EventBus": "Name",
    "AWS::Events::Rule": "Name",
    "AWS::Scheduler::Schedule": "Name",
    "AWS::SecretsManager::Secret": "Name",
    "AWS::KMS::Alias": "AliasName",
}


@pytest.fixture(scope="module")
def transformed() -> dict[str, Any]:
    return Template.load().transformed


def _of_type(transformed: dict[str, Any], kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for logical_id, resource in transformed["Resources"].items():
        if resource["Type"] == kind:
            yield logical_id, resource.get("Properties", {})


def _statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [statement for policy in role.get("Policies", []) for statement in policy["PolicyDocument"]["Statement"]]


def test_every_physical_name_is_unique_to_the_stack(transformed: dict[str, Any]) -> None:
    named = 0
    for resource in transformed["Resources"].values():
        prop = NAMED.get(resource["Type"])
        if prop and prop in resource.get("Properties", {}):
            named += 1
            assert "AWS::StackName" in json.dumps(resource["Properties"][prop]), resource
    assert named >= 4  # buckets, bus, dashboard: names given, each with the stack's name in it
    (schedule,) = [props for _, props in _of_type(transformed, "AWS::Scheduler::Schedule")]
    assert "Name" not in schedule  # OmitName: CloudFormation generates a stack-unique one


def test_no_role_has_an_account_wide_managed_policy_or_another_stacks_queue(transformed: dict[str, Any]) -> None:
    roles = dict(_of_type(transformed, "AWS::IAM::Role"))
    assert {"SubmitRole", "WebhookRole", "ReconcileRole"} <= set(roles)
    for logical_id, role in roles.items():
        assert role.get("ManagedPolicyArns", []) == [], logical_id
        for statement in _statements(role):
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if statement["Resource"] == "*":
                assert all(action.startswith("xray:") for action in actions), (logical_id, statement)
            if any(action.startswith("sqs:") for action in actions):
                resources = (
                    statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
                )
                assert all("Fn::GetAtt" in resource for resource in resources), (logical_id, statement)
    functions = dict(_of_type(transformed, "AWS::Lambda::Function"))
    for name, function in functions.items():
        assert function["Role"] == {"Fn::GetAtt": [name.replace("Function", "Role"), "Arn"]}


def test_secrets_are_readable_only_by_the_functions_that_use_them(transformed: dict[str, Any]) -> None:
    roles = dict(_of_type(transformed, "AWS::IAM::Role"))

    def secrets(role: str) -> set[str]:
        found: set[str] = set()
        for statement in _statements(roles[role]):
            if "secretsmanager:GetSecretValue" in json.dumps(statement["Action"]):
                resources = (
                    statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
                )
                found |= {resource["Ref"] for resource in resources}
        return found

    assert secrets("SubmitRole") == {"MusicGptApiKeySecret", "WebhookSigningSecret"}
    assert secrets("ReconcileRole") == {"MusicGptApiKeySecret", "WebhookSigningSecret"}
    assert secrets("WebhookRole") == {"WebhookSigningSecret"}  # callbacks never need the provider's key


def test_alarms_can_notify_and_watch_this_stacks_metrics_only(transformed: dict[str, Any]) -> None:
    (topic,) = [props for _, props in _of_type(transformed, "AWS::SNS::Topic")]
    key_id = topic["KmsMasterKeyId"]["Ref"]
    key = transformed["Resources"][key_id]["Properties"]
    cloudwatch = [s for s in key["KeyPolicy"]["Statement"] if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}]
    assert cloudwatch
    assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= set(cloudwatch[0]["Action"])
    alarms = dict(_of_type(transformed, "AWS::CloudWatch::Alarm"))
    for logical_id, alarm in alarms.items():
        assert alarm["AlarmActions"] == alarm["OKActions"] == [{"Ref": "AlarmTopic"}], logical_id
        if alarm["Namespace"] == "DenoisePipeline":
            assert alarm["Dimensions"] == [{"Name": "service", "Value": {"Ref": "AWS::StackName"}}], logical_id
    watched = {(alarm["Namespace"], alarm["MetricName"]) for alarm in alarms.values()}
    assert {("AWS/ApiGateway", "5xx"), ("AWS/SQS", "ApproximateAgeOfOldestMessage")} <= watched
    assert {"ReconcileErrorsAlarm", "CopyQueueAgeAlarm", "AdmissionQueueAgeAlarm", "CopyDeadLetterAlarm"} <= set(alarms)
    for name, function in _of_type(transformed, "AWS::Lambda::Function"):
        assert function["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] == {"Ref": "AWS::StackName"}, name


def test_the_upload_rule_matches_audio_suffixes_in_any_case_and_nothing_else(transformed: dict[str, Any]) -> None:
    (rule,) = [props for _, props in _of_type(transformed, "AWS::Events::Rule")]
    (target,) = rule["Targets"]
    assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0
    assert "Arn" in target["DeadLetterConfig"]
    suffixes = {entry["suffix"]["equals-ignore-case"] for entry in rule["EventPattern"]["detail"]["object"]["key"]}
    assert suffixes == set(AUDIO_SUFFIXES)  # the rule and the handler agree on what is audio
    pattern = copy.deepcopy(rule["EventPattern"])
    pattern["detail"]["bucket"]["name"] = ["input-bucket"]
    audio = ["Song.Wav", "Take.Mp3", "a/b/LOUD.FLAC", "x.m4A", "y.Ogg", "z.aac", "My Song+(1) é.wav"]
    other = ["notes.txt", "song.wav.txt", "wav", "folder/", "song.wave"]

    with mock_aws():  # S3 → EventBridge → the rule → a queue standing in for the function, as the local stack does
        s3 = boto3.client("s3", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        events = boto3.client("events", region_name="us-east-1")
        queue = sqs.create_queue(QueueName="submit")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name="upload", EventPattern=json.dumps(pattern))
        events.put_targets(Rule="upload", Targets=[{"Id": "submit", "Arn": queue_arn}])
        for bucket in ("input-bucket", "another-bucket"):
            s3.create_bucket(Bucket=bucket)
            s3.put_bucket_notification_configuration(
                Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}}
            )
        for key in audio + other:
            s3.put_object(Bucket="input-bucket", Key=key, Body=b"x")
            s3.delete_object(Bucket="input-bucket", Key=key)  # "Object Deleted" never invokes the function
        s3.put_object(Bucket="another-bucket", Key="Song.Wav", Body=b"x")
        delivered: list[str] = []
        while messages := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
            for message in messages:
                delivered.append(json.loads(message["Body"])["detail"]["object"]["key"])
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])

    assert sorted(delivered) == sorted(audio)


def test_the_provider_url_must_be_https() -> None:
    template = Template.load()
    https = template.parameter_values({"MusicGptApiKey": "example-api-key"})
    assert https["MusicGptApiUrl"].startswith("https://")
    for url in ("http://api.musicgpt.com/api/public/v1", "https://api.musicgpt.com/", "ftp://x"):
        with pytest.raises(TemplateError, match="MusicGptApiUrl"):
            template.parameter_values({"MusicGptApiKey": "example-api-key", "MusicGptApiUrl": url})


def test_outputs_name_what_the_readme_commands_need(transformed: dict[str, Any]) -> None:
    outputs = set(transformed["Outputs"])
    assert {
        "SubmitFunctionName",
        "WebhookFunctionName",
        "ReconcileFunctionName",
        "CopyQueueUrl",
        "CopyDeadLetterQueueArn",
        "AdmissionDeadLetterQueueArn",
        "SubmitFailureQueueUrl",
        "UploadDeadLetterQueueUrl",
        "EventBusName",
        "DashboardUrl",
        "InputBucketName",
        "OutputBucketName",
    } <= outputs
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    placeholders = set(re.findall(r"<([A-Z][A-Za-z]+(?:Name|Url|Arn|Group))>", readme))
    assert placeholders
    assert placeholders <= outputs, placeholders - outputs  # every <Output> a README command uses exists


def test_events_env_json_is_current_and_gives_every_variable_each_function_reads() -> None:
    written = json.loads((ROOT / "events" / "env.json").read_text(encoding="utf-8"))
    assert written == environment_file()  # regenerate with `python -m scripts.make_events`
    for function, settings in SETTINGS.items():
        assert settings.required() <= set(written[function]), function
        assert all("Ref" not in value and "${" not in value for value in written[function].values())


def test_samconfig_has_dev_and_prod_and_only_dev_syncs() -> None:
    config = tomllib.loads((ROOT / "samconfig.toml").read_text(encoding="utf-8"))
    template = Template.load()
    assert {"dev", "prod"} <= set(config)
    assert config["dev"]["sync"]["parameters"]["watch"] is True
    assert all("sync" not in config[env] for env in config if env not in ("dev", "version"))
    for env in ("dev", "prod"):
        overrides = dict(
            pair.split("=", 1) for pair in config[env]["deploy"]["parameters"]["parameter_overrides"].split()
        )
        template.parameter_values(
            {"MusicGptApiKey": "example-api-key", **overrides}
        )  # each value passes its constraints


def test_only_the_upload_rule_and_the_webhook_route_may_invoke_their_functions() -> None:
    """The local stack checks each rule's and route's Lambda permission: what AWS would refuse, it refuses."""
    template = Template.load()
    with mock_aws():
        stack = template.create(
            boto3.session.Session(region_name="us-east-1"), stack_name="perm", parameters={"MusicGptApiKey": "k" * 32}
        )
    rule = stack.attributes["SubmitFunctionUpload"]["Arn"]
    api = stack.ref("WebhookApi")
    route = f"arn:aws:execute-api:us-east-1:123456789012:{api}/$default/POST/webhooks/{{job_id}}/{{token}}"

    assert template.invoke_permitted("SubmitFunction", "events.amazonaws.com", rule, stack)
    assert template.invoke_permitted("WebhookFunction", "apigateway.amazonaws.com", route, stack)
    assert not template.invoke_permitted("SubmitFunction", "events.amazonaws.com", rule + "-other", stack)
    assert not template.invoke_permitted("WebhookFunction", "events.amazonaws.com", rule, stack)
    assert not template.invoke_permitted("ReconcileFunction", "apigateway.amazonaws.com", route, stack)
    assert not template.invoke_permitted(
        "WebhookFunction", "apigateway.amazonaws.com", route.replace("POST", "GET"), stack
    )
