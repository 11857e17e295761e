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
import fnmatch
import hashlib
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

TEMPLATE_PATH = Path(__file__).resolve().parents[2] / "template.yaml"
ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
EMULATED_TYPES = {
    "AWS::S3::Bucket": "moto (versioning, EventBridge notifications)",
    "AWS::S3::BucketPolicy": "moto, evaluated with aws:SecureTransport true (local.aws.authorization)",
    "AWS::DynamoDB::Table": "moto (keys, indexes; each request atomic)",
    "AWS::SQS::Queue": "moto (visibility timeout, redrive policies)",
    "AWS::SQS::QueuePolicy": "moto (set on the queue)",
    "AWS::SecretsManager::Secret": "moto",
    "AWS::Events::EventBus": "moto",
    "AWS::Events::Rule": "moto matches the pattern; its Lambda target is invoked asynchronously (local.lambdas)",
    "AWS::IAM::Role": "moto IAM with authorization on: each function runs with its role's credentials",
    "AWS::Logs::LogGroup": "moto (created); the functions' lines go to one local file per function",
    "AWS::Lambda::Function": "one process per execution environment running the sam build artifact (local.lambdas)",
    "AWS::Lambda::EventSourceMapping": "polled with the function's role (batch size, window, partial batch "
    "responses, maximum concurrency)",
    "AWS::Lambda::EventInvokeConfig": "retries and maximum event age, then the on-failure destination",
    "AWS::ApiGatewayV2::Api": "the webhook gateway (the routes of its OpenAPI body, payload v2)",
    "AWS::ApiGatewayV2::Stage": "the gateway's $default stage (no throttling, no access log)",
    "AWS::Scheduler::Schedule": "a short local interval instead of the expression",
    "AWS::Lambda::Permission": "checked: a rule or route without one cannot invoke its function",
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

    def queue_url(self, arn: str) -> str:
        """The URL of the stack's queue with this ARN."""
        for logical_id, attributes in self.attributes.items():
            if attributes.get("Arn") == arn and "QueueUrl" in attributes:
                return self.refs[logical_id]
        raise TemplateError(f"no queue {arn} in the stack")


@dataclass(frozen=True)
class FunctionConfig:
    """An AWS::Lambda::Function of the transformed template, resolved against the emulated stack."""

    logical_id: str
    name: str
    arn: str
    handler: str
    timeout_seconds: int
    memory_mb: int
    role_arn: str
    reserved_concurrency: int | None
    log_group: str
    log_format: str
    application_log_level: str
    environment: dict[str, str]


@dataclass(frozen=True)
class QueueSource:
    """An AWS::Lambda::EventSourceMapping on an SQS queue (logical ids)."""

    logical_id: str
    function: str
    queue: str
    batch_size: int
    batching_window_seconds: float
    reports_item_failures: bool
    maximum_concurrency: int | None


@dataclass(frozen=True)
class RuleSource:
    """An EventBridge rule with a function target; the pattern resolved against the stack."""

    logical_id: str
    function: str
    pattern: dict[str, Any]
    dead_letter_arn: str | None


@dataclass(frozen=True)
class AsyncInvokeConfig:
    maximum_retry_attempts: int = 2
    maximum_event_age_seconds: int = 21600
    on_failure_arn: str | None = None


@dataclass(frozen=True)
class ScheduleSource:
    logical_id: str
    function: str
    expression: str


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

    def function_config(
        self, logical_id: str, stack: StackResources, overrides: Mapping[str, str] | None = None
    ) -> FunctionConfig:
        """What Lambda would run for the function once `create` and `create_access` made the stack."""
        properties = self.function(logical_id)
        reserved = properties.get("ReservedConcurrentExecutions")
        logging_config = properties.get("LoggingConfig", {})
        return FunctionConfig(
            logical_id=logical_id,
            name=stack.ref(logical_id),
            arn=stack.attributes[logical_id]["Arn"],
            handler=str(properties["Handler"]),
            timeout_seconds=int(properties.get("Timeout", 3)),
            memory_mb=int(properties.get("MemorySize", 128)),
            role_arn=str(resolve(properties["Role"], stack)),
            reserved_concurrency=None if reserved is None else int(resolve(reserved, stack)),
            log_group=str(resolve(logging_config.get("LogGroup", f"/aws/lambda/{stack.ref(logical_id)}"), stack)),
            log_format=str(logging_config.get("LogFormat", "Text")),
            application_log_level=str(logging_config.get("ApplicationLogLevel", "INFO")),
            environment=self.function_environment(logical_id, stack, overrides),
        )

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

    def queue_sources(self) -> list[QueueSource]:
        """The SQS event source mappings, as Lambda's pollers read them."""
        sources = []
        for logical_id, mapping in self.resources_of_type("AWS::Lambda::EventSourceMapping"):
            scaling = mapping.get("ScalingConfig", {}).get("MaximumConcurrency")
            sources.append(
                QueueSource(
                    logical_id=logical_id,
                    function=_target_function(mapping["FunctionName"]),
                    queue=str(mapping["EventSourceArn"]["Fn::GetAtt"][0]),
                    batch_size=int(mapping.get("BatchSize", 10)),
                    batching_window_seconds=float(mapping.get("MaximumBatchingWindowInSeconds", 0)),
                    reports_item_failures="ReportBatchItemFailures" in mapping.get("FunctionResponseTypes", []),
                    maximum_concurrency=None if scaling is None else int(scaling),
                )
            )
        return sources

    def rule_sources(self, stack: StackResources) -> list[RuleSource]:
        """EventBridge rules whose target is one of the template's functions (invoked asynchronously)."""
        sources = []
        for logical_id, rule in self.resources_of_type("AWS::Events::Rule"):
            for target in rule.get("Targets", []):
                arn = target["Arn"]
                if isinstance(arn, Mapping) and "Fn::GetAtt" in arn:
                    dead_letters = target.get("DeadLetterConfig", {}).get("Arn")
                    sources.append(
                        RuleSource(
                            logical_id=logical_id,
                            function=str(arn["Fn::GetAtt"][0]),
                            pattern=resolve(rule["EventPattern"], stack),
                            dead_letter_arn=None if dead_letters is None else str(resolve(dead_letters, stack)),
                        )
                    )
        return sources

    def async_invoke_config(self, function: str, stack: StackResources) -> AsyncInvokeConfig:
        """The function's EventInvokeConfig, or Lambda's defaults (two retries, six hours, no destination)."""
        for _, config in self.resources_of_type("AWS::Lambda::EventInvokeConfig"):
            if _target_function(config["FunctionName"]) == function:
                on_failure = config.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
                return AsyncInvokeConfig(
                    maximum_retry_attempts=int(config.get("MaximumRetryAttempts", 2)),
                    maximum_event_age_seconds=int(config.get("MaximumEventAgeInSeconds", 21600)),
                    on_failure_arn=None if on_failure is None else str(resolve(on_failure, stack)),
                )
        return AsyncInvokeConfig()

    def schedules(self, stack: StackResources) -> list[ScheduleSource]:
        return [
            ScheduleSource(
                logical_id=logical_id,
                function=str(schedule["Target"]["Arn"]["Fn::GetAtt"][0]),
                expression=str(resolve(schedule["ScheduleExpression"], stack)),
            )
            for logical_id, schedule in self.resources_of_type("AWS::Scheduler::Schedule")
        ]

    def invoke_permitted(self, function: str, principal: str, source_arn: str, stack: StackResources) -> bool:
        """Whether an AWS::Lambda::Permission lets `principal` invoke the function from `source_arn` (the rule, the
        API route): without one, EventBridge or API Gateway cannot invoke it in AWS."""
        for _, permission in self.resources_of_type("AWS::Lambda::Permission"):
            if (
                _target_function(permission["FunctionName"]) == function
                and permission.get("Action") in ("lambda:InvokeFunction", "lambda:*")
                and permission.get("Principal") == principal
                and fnmatch.fnmatchcase(source_arn, str(resolve(permission.get("SourceArn", "*"), stack)))
            ):
                return True
        return False

    def not_emulated(self) -> list[str]:
        """Logical id and type of every transformed resource the local stack leaves out (alarms, the dashboard,
        the KMS key, the alarm topic and its subscription)."""
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
        self._name_the_rest(stack, client("logs"))
        return stack

    def _name_the_rest(self, stack: StackResources, logs: Any) -> None:
        """Names and ARNs of the rules and functions (run by the local stack) and the log groups."""
        for logical_id, _ in self.resources_of_type("AWS::Events::Rule"):  # created by the local stack
            name = _default_name(stack, logical_id)
            stack.refs[logical_id] = name
            stack.attributes[logical_id] = {"Arn": f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/{name}"}
        for logical_id, _ in self.resources_of_type("AWS::Lambda::Function"):
            name = _default_name(stack, logical_id)
            stack.refs[logical_id] = name
            stack.attributes[logical_id] = {"Arn": f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}"}
        for logical_id, _ in self.resources_of_type("AWS::ApiGatewayV2::Api"):
            stack.refs[logical_id] = hashlib.sha256(_default_name(stack, logical_id).encode()).hexdigest()[:10]
        for logical_id, _ in self.resources_of_type("AWS::Logs::LogGroup"):
            name = _default_name(stack, logical_id)
            logs.create_log_group(logGroupName=name)
            stack.refs[logical_id] = name
            stack.attributes[logical_id] = {"Arn": f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:{name}:*"}

    def create_access(
        self, session: boto3.session.Session, stack: StackResources, *, endpoint_url: str | None = None
    ) -> None:
        """The template's IAM roles (inline policies) and resource policies (bucket, queue), after `create`.

        Apart from `create` because moto evaluates bucket policies even with authorization off and without a
        request context: the DenyInsecureTransport statements would refuse every object request unless
        local.aws.authorization is installed, which only the local stack does.
        """
        iam = session.client("iam", region_name=REGION, endpoint_url=endpoint_url)
        for logical_id, props in self.resources_of_type("AWS::IAM::Role"):
            if props.get("ManagedPolicyArns"):
                raise TemplateError(f"{logical_id}: managed policies are not available in the local stack")
            name = _default_name(stack, logical_id)[:64]
            role = iam.create_role(
                RoleName=name,
                AssumeRolePolicyDocument=json.dumps(resolve(props["AssumeRolePolicyDocument"], stack)),
            )["Role"]
            stack.refs[logical_id] = name
            stack.attributes[logical_id] = {"Arn": role["Arn"], "RoleId": role["RoleId"]}
        for logical_id, props in self.resources_of_type("AWS::IAM::Role"):
            for policy in props.get("Policies", []):
                iam.put_role_policy(
                    RoleName=stack.ref(logical_id),
                    PolicyName=str(policy["PolicyName"]),
                    PolicyDocument=json.dumps(_versioned(resolve(policy["PolicyDocument"], stack))),
                )
        s3 = session.client("s3", region_name=REGION, endpoint_url=endpoint_url)
        for _, props in self.resources_of_type("AWS::S3::BucketPolicy"):
            s3.put_bucket_policy(
                Bucket=str(resolve(props["Bucket"], stack)), Policy=json.dumps(resolve(props["PolicyDocument"], stack))
            )
        sqs = session.client("sqs", region_name=REGION, endpoint_url=endpoint_url)
        for _, props in self.resources_of_type("AWS::SQS::QueuePolicy"):
            document = json.dumps(resolve(props["PolicyDocument"], stack))
            for queue_url in resolve(props["Queues"], stack):
                sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": document})


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


def _versioned(document: dict[str, Any]) -> dict[str, Any]:
    """IAM reads a policy without Version as 2008-10-17 (SAM writes such policies); moto refuses it. Statements
    without policy variables mean the same under 2012-10-17."""
    return {"Version": "2012-10-17", **document}


def _target_function(reference: Any) -> str:
    """The logical id in a FunctionName of the transformed template (`Ref: Fn`)."""
    if isinstance(reference, Mapping) and "Ref" in reference:
        return str(reference["Ref"])
    raise TemplateError(f"unsupported function reference {reference!r}")


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
