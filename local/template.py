"""Read template.yaml as `sam deploy` does and create its stateful resources on an emulated AWS (moto).

The template goes through the real SAM transform (aws-sam-translator), and everything the local stack knows comes
from the CloudFormation it produces: bucket names, the table's keys and index, queue settings, secrets and the bus
from the resource definitions; each function's handler, environment (Globals merged by SAM), timeout and reserved
concurrency from its AWS::Lambda::Function; event sources from the generated event source mappings, rules, routes
and schedule. Values are resolved the way CloudFormation would (Ref, Fn::Sub, Fn::GetAtt, pseudo parameters).
`not_emulated()` names what of the transformed template the local stack does not emulate.
"""

from __future__ import annotations

import copy
import json
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import boto3
from cfn_tools import load_yaml
from samtranslator.translator.transform import transform

TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "template.yaml"
ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
EMULATED_TYPES = {
    "AWS::S3::Bucket": "moto (versioning, EventBridge notifications)",
    "AWS::DynamoDB::Table": "moto (keys, indexes; each request atomic)",
    "AWS::SQS::Queue": "moto (redrive policies)",
    "AWS::SecretsManager::Secret": "moto",
    "AWS::Events::EventBus": "moto",
    "AWS::Events::Rule": "moto matches the pattern; the target is invoked asynchronously by the stack",
    "AWS::Lambda::Function": "the handler in this process, with the function's environment and concurrency",
    "AWS::Lambda::EventSourceMapping": "polled into the function (batch size, partial batch responses)",
    "AWS::Lambda::EventInvokeConfig": "two retries, then the on-failure queue",
    "AWS::ApiGatewayV2::Api": "the webhook gateway (the routes of its OpenAPI body, payload v2)",
    "AWS::ApiGatewayV2::Stage": "the gateway's $default stage",
    "AWS::Scheduler::Schedule": "a short local interval instead of the expression",
}
"""What the local stack emulates of the transformed template, by resource type (and how)."""
_PLACEHOLDER_CODE = "s3://local-stack/code.zip"  # what `sam package` would have put in CodeUri


class _NoManagedPolicies:
    """The transform asks IAM for managed policy ARNs only for policy names it must expand; ours has none."""

    def load(self) -> dict[str, str]:
        return {}


_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")


class TemplateError(RuntimeError):
    pass


@dataclass
class StackResources:
    """What the emulated stack holds: Ref values and Fn::GetAtt values by logical id."""

    stack_name: str
    parameters: dict[str, str]
    refs: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, dict[str, str]] = field(default_factory=dict)

    def ref(self, logical_id: str) -> str:
        return self.refs[logical_id]


class Template:
    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = document
        self.transformed = _transform(document)
        self.resources: Mapping[str, Any] = self.transformed["Resources"]

    @classmethod
    def load(cls, path: Path = TEMPLATE_PATH) -> Template:
        """The template at `path`, read and transformed once per version of the file (the transform takes ~0.4 s
        and every test stack loads it)."""
        return _load(path, path.stat().st_mtime_ns)

    def parameter_values(self, overrides: Mapping[str, str]) -> dict[str, str]:
        """Defaults and overrides, each checked against the parameter's constraints as CloudFormation checks them."""
        values: dict[str, str] = {}
        for name, spec in self.document.get("Parameters", {}).items():
            if name in overrides:
                values[name] = str(overrides[name])
            elif "Default" in spec:
                values[name] = str(spec["Default"])
            else:
                raise TemplateError(f"parameter {name} has no default; pass it as an override")
            _check_parameter(name, values[name], spec)
        unknown = set(overrides) - set(values)
        if unknown:
            raise TemplateError(f"unknown template parameters: {sorted(unknown)}")
        return values

    def resources_of_type(self, resource_type: str) -> list[tuple[str, Mapping[str, Any]]]:
        return [
            (logical_id, resource.get("Properties", {}))
            for logical_id, resource in self.resources.items()
            if resource["Type"] == resource_type
        ]

    def function(self, logical_id: str) -> Mapping[str, Any]:
        """The AWS::Lambda::Function properties SAM generated (Globals merged in)."""
        resource = self.resources[logical_id]
        if resource["Type"] != "AWS::Lambda::Function":
            raise TemplateError(f"{logical_id} is not a function")
        properties: Mapping[str, Any] = resource["Properties"]
        return properties

    def handler(self, logical_id: str) -> str:
        return str(self.function(logical_id)["Handler"])

    def function_environment(
        self, logical_id: str, stack: StackResources, overrides: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """The function's variables, resolved; `overrides` replace values that point at what the emulation does
        not have (the API Gateway URL) or refuses (an http provider URL)."""
        overrides = overrides or {}
        variables = self.function(logical_id).get("Environment", {}).get("Variables", {})
        return {
            name: overrides[name] if name in overrides else str(resolve(value, stack))
            for name, value in variables.items()
        }

    def http_routes(self, logical_id: str) -> list[tuple[str, str]]:
        """(method, path) of the HTTP API routes integrated with the function, from the generated OpenAPI body."""
        routes = []
        for _, api in self.resources_of_type("AWS::ApiGatewayV2::Api"):
            for path, operations in api.get("Body", {}).get("paths", {}).items():
                for method, operation in operations.items():
                    uri = json.dumps(operation.get("x-amazon-apigateway-integration", {}).get("uri", ""))
                    if f"${{{logical_id}.Arn}}" in uri or f'"{logical_id}", "Arn"' in uri:
                        routes.append((method.upper(), str(path)))
        return routes

    def event_source(self, logical_id: str) -> tuple[str, Mapping[str, Any]]:
        """Logical id of the queue behind the function's event source mapping, and the mapping's properties."""
        for _, mapping in self.resources_of_type("AWS::Lambda::EventSourceMapping"):
            if mapping["FunctionName"] == {"Ref": logical_id}:
                return str(mapping["EventSourceArn"]["Fn::GetAtt"][0]), mapping
        raise TemplateError(f"{logical_id} has no event source mapping")

    def event_patterns(self, logical_id: str, stack: StackResources) -> list[dict[str, Any]]:
        """The resolved event patterns of the rules that target the function."""
        patterns = [
            resolve(rule["EventPattern"], stack)
            for _, rule in self.resources_of_type("AWS::Events::Rule")
            if any(target["Arn"] == {"Fn::GetAtt": [logical_id, "Arn"]} for target in rule.get("Targets", []))
        ]
        if not patterns:
            raise TemplateError(f"no rule targets {logical_id}")
        return patterns

    def not_emulated(self) -> list[str]:
        """Logical id and type of every transformed resource the local stack leaves out (roles, permissions,
        policies, alarms, logs, the KMS key, the alarm topic)."""
        return sorted(
            f"{logical_id} ({resource['Type']})"
            for logical_id, resource in self.resources.items()
            if resource["Type"] not in EMULATED_TYPES
        )

    def create(
        self,
        session: boto3.session.Session,
        *,
        stack_name: str,
        parameters: Mapping[str, str],
        endpoint_url: str | None = None,
        generated_secrets: Mapping[str, str] | None = None,
    ) -> StackResources:
        """Create every emulated resource of the template; returns their Ref and GetAtt values.

        `generated_secrets` fixes the value of secrets the template generates (by logical id), for repeatable tests.
        """
        stack = StackResources(stack_name, self.parameter_values(parameters))
        clients: dict[str, Any] = {}

        def client(service: str) -> Any:
            if service not in clients:
                clients[service] = session.client(service, region_name=REGION, endpoint_url=endpoint_url)  # type: ignore[call-overload]
            return clients[service]

        for logical_id, props in self.resources_of_type("AWS::SQS::Queue"):
            _create_queue(client("sqs"), stack, logical_id, props)
        for logical_id, props in self.resources_of_type("AWS::SQS::Queue"):
            if "RedrivePolicy" in props:
                policy = {k: resolve(v, stack) for k, v in props["RedrivePolicy"].items()}
                client("sqs").set_queue_attributes(
                    QueueUrl=stack.ref(logical_id), Attributes={"RedrivePolicy": json.dumps(policy)}
                )
        for logical_id, props in self.resources_of_type("AWS::S3::Bucket"):
            _create_bucket(client("s3"), stack, logical_id, props)
        for logical_id, props in self.resources_of_type("AWS::DynamoDB::Table"):
            _create_table(client("dynamodb"), stack, logical_id, props)
        for logical_id, props in self.resources_of_type("AWS::SecretsManager::Secret"):
            generated = (generated_secrets or {}).get(logical_id)
            _create_secret(client("secretsmanager"), stack, logical_id, props, generated)
        for logical_id, props in self.resources_of_type("AWS::Events::EventBus"):
            name = str(resolve(props["Name"], stack))
            arn = client("events").create_event_bus(Name=name)["EventBusArn"]
            stack.refs[logical_id] = name
            stack.attributes[logical_id] = {"Arn": arn, "Name": name}
        return stack


@cache
def _load(path: Path, mtime_ns: int) -> Template:
    return Template(load_yaml(path.read_text(encoding="utf-8")))


def _transform(document: Mapping[str, Any]) -> dict[str, Any]:
    """The CloudFormation `sam deploy` would create, for the template's default parameter values."""
    source = copy.deepcopy(dict(document))
    source["Globals"]["Function"]["CodeUri"] = _PLACEHOLDER_CODE
    previous_region = os.environ.get("AWS_DEFAULT_REGION")
    os.environ["AWS_DEFAULT_REGION"] = REGION  # the transform resolves AWS::Region for ARNs it writes
    try:
        result: dict[str, Any] = transform(source, {}, _NoManagedPolicies())
    finally:
        if previous_region is None:
            os.environ.pop("AWS_DEFAULT_REGION", None)
        else:
            os.environ["AWS_DEFAULT_REGION"] = previous_region
    return result


def _check_parameter(name: str, value: str, spec: Mapping[str, Any]) -> None:
    pattern = spec.get("AllowedPattern")
    if pattern is not None and re.fullmatch(str(pattern), value) is None:
        raise TemplateError(f"parameter {name}={value!r} does not match {pattern}")
    allowed = spec.get("AllowedValues")
    if allowed is not None and value not in [str(item) for item in allowed]:
        raise TemplateError(f"parameter {name}={value!r} is not one of {allowed}")
    if spec.get("Type") == "Number":
        number = float(value)
        if ("MinValue" in spec and number < float(spec["MinValue"])) or (
            "MaxValue" in spec and number > float(spec["MaxValue"])
        ):
            raise TemplateError(f"parameter {name}={value} is outside [{spec.get('MinValue')}, {spec.get('MaxValue')}]")


def _default_name(stack: StackResources, logical_id: str) -> str:
    return f"{stack.stack_name}-{logical_id}"


def _create_queue(sqs: Any, stack: StackResources, logical_id: str, props: Mapping[str, Any]) -> None:
    name = str(resolve(props.get("QueueName"), stack)) if "QueueName" in props else _default_name(stack, logical_id)
    attributes = {
        key: str(props[key]) for key in ("VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds") if key in props
    }
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    stack.refs[logical_id] = url
    stack.attributes[logical_id] = {"Arn": arn, "QueueName": name, "QueueUrl": url}


def _create_bucket(s3: Any, stack: StackResources, logical_id: str, props: Mapping[str, Any]) -> None:
    name = str(resolve(props["BucketName"], stack)) if "BucketName" in props else _default_name(stack, logical_id)
    s3.create_bucket(Bucket=name.lower())
    if props.get("VersioningConfiguration", {}).get("Status") == "Enabled":
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    if props.get("NotificationConfiguration", {}).get("EventBridgeConfiguration", {}).get("EventBridgeEnabled"):
        s3.put_bucket_notification_configuration(
            Bucket=name, NotificationConfiguration={"EventBridgeConfiguration": {}}
        )
    stack.refs[logical_id] = name
    stack.attributes[logical_id] = {"Arn": f"arn:aws:s3:::{name}"}


def _create_table(dynamodb: Any, stack: StackResources, logical_id: str, props: Mapping[str, Any]) -> None:
    name = str(resolve(props["TableName"], stack)) if "TableName" in props else _default_name(stack, logical_id)
    kwargs: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": [dict(item) for item in props["AttributeDefinitions"]],
        "KeySchema": [dict(item) for item in props["KeySchema"]],
        "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
    }
    if "GlobalSecondaryIndexes" in props:
        kwargs["GlobalSecondaryIndexes"] = [
            {
                "IndexName": index["IndexName"],
                "KeySchema": [dict(item) for item in index["KeySchema"]],
                "Projection": dict(index["Projection"]),
            }
            for index in props["GlobalSecondaryIndexes"]
        ]
    description = dynamodb.create_table(**kwargs)["TableDescription"]
    stack.refs[logical_id] = name
    stack.attributes[logical_id] = {"Arn": description["TableArn"]}


def _create_secret(
    sm: Any, stack: StackResources, logical_id: str, props: Mapping[str, Any], generated: str | None
) -> None:
    if "SecretString" in props:
        value = str(resolve(props["SecretString"], stack))
    else:
        length = int(props.get("GenerateSecretString", {}).get("PasswordLength", 32))
        value = generated or secrets.token_urlsafe(length)[:length]
    arn = sm.create_secret(Name=_default_name(stack, logical_id), SecretString=value)["ARN"]
    stack.refs[logical_id] = arn
    stack.attributes[logical_id] = {"Id": arn}


def resolve(value: Any, stack: StackResources) -> Any:
    """Evaluate Ref / Fn::Sub / Fn::GetAtt / Fn::Join against the emulated stack."""
    if isinstance(value, Mapping):
        if "Ref" in value:
            return _ref(str(value["Ref"]), stack)
        if "Fn::Sub" in value:
            return _sub(value["Fn::Sub"], stack)
        if "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            logical_id, attribute = target if isinstance(target, list) else str(target).split(".", 1)
            return _getatt(logical_id, attribute, stack)
        if "Fn::Join" in value:
            separator, items = value["Fn::Join"]
            return separator.join(str(resolve(item, stack)) for item in items)
        return {key: resolve(item, stack) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve(item, stack) for item in value]
    return value


def _ref(name: str, stack: StackResources) -> str:
    pseudo = {
        "AWS::StackName": stack.stack_name,
        "AWS::AccountId": ACCOUNT_ID,
        "AWS::Region": REGION,
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
    }
    if name in pseudo:
        return pseudo[name]
    if name in stack.parameters:
        return stack.parameters[name]
    if name in stack.refs:
        return stack.refs[name]
    raise TemplateError(f"cannot resolve Ref {name} in the emulated stack")


def _getatt(logical_id: str, attribute: str, stack: StackResources) -> str:
    try:
        return stack.attributes[logical_id][attribute]
    except KeyError:
        raise TemplateError(f"cannot resolve Fn::GetAtt {logical_id}.{attribute} in the emulated stack") from None


def _sub(spec: Any, stack: StackResources) -> str:
    text, variables = (spec, {}) if isinstance(spec, str) else (spec[0], spec[1])

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in variables:
            return str(resolve(variables[name], stack))
        if "." in name and not name.startswith("AWS::"):
            logical_id, attribute = name.split(".", 1)
            return _getatt(logical_id, attribute, stack)
        return _ref(name, stack)

    return _SUB_VARIABLE.sub(replace, str(text))
