"""IAM enforcement in moto that evaluates the template's policies the way AWS does, for the services the app uses.

moto (5.2) checks every request against the caller's identity policies once `INITIAL_NO_AUTH_ACTION_COUNT` requests
have passed (`inf` by default: off). As shipped it gets most of it wrong for this app:

- DynamoDB, Secrets Manager and EventBridge are checked against resource "*", so a statement scoped to a table,
  secret or bus never matches and every call is denied; S3's HeadBucket, SQS's *Batch actions and copy sources are
  checked under the wrong action or not at all;
- conditions: only StringEquals is understood, other operators count as met, and an unmet condition turns an Allow
  into an explicit Deny; there is no request context (aws:SecureTransport, aws:PrincipalArn, ...);
- bucket policies are evaluated for object requests even with enforcement off, so the template's
  `Deny if aws:SecureTransport is false` answers 403 to every GetObject and PutObject;
- presigned URLs answer HTTP 500 (the check reads the Authorization header);
- DynamoDB, Secrets Manager and EventBridge answer AccessDenied (and unknown keys, bad signatures) as XML with
  HTTP 403, which botocore reports as code "403".

`install()` patches moto's classes in place, process-wide (ThreadedMotoServer runs in this process): per-service
(action, resource) checks evaluated with moto's own policy objects, AWS's error shapes and messages, and a condition
evaluator with a request context. `enable()`/`disable()` switch enforcement for a running server.

With enforcement off, requests take moto's own path unchanged (the patched methods only count the request, as moto
does). The one exception is on purpose: bucket policies, which moto evaluates whatever the mode, now see
`aws:SecureTransport = "true"` and conditions evaluated as AWS does, so the template's TLS-only bucket policy no longer
blocks every object in plain `mock_aws` tests either.

Not covered: resource-based policies beyond moto's bucket-policy check, NotResource, policy variables, multi-valued
keys (ForAnyValue:/ForAllValues:), session policies and session expiry, presigned URL signatures (the signer's
identity and the URL's expiry are checked, the signature is not recomputed), SigV2 Authorization headers (moto
answers 500; botocore signs S3 calls with SigV4 unless told otherwise), and DeleteObjects, which moto checks once as
s3:DeleteObject on the bucket's ARN (a caller allowed only on objects gets AccessDenied for every key).
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import requests
from moto import settings
from moto.core.authorization import ActionAuthenticatorMixin
from moto.core.exceptions import InvalidClientTokenIdError, JsonRESTError, SignatureDoesNotMatchError
from moto.core.responses import BaseResponse
from moto.dynamodb.responses import DynamoHandler
from moto.events.responses import EventsHandler
from moto.iam.access_control import (
    AssumedRoleAccessKey,
    CreateAccessKeyFailure,
    IAMPolicy,
    IAMPolicyStatement,
    IAMRequest,
    IAMUserAccessKey,
    PermissionResult,
    S3IAMRequest,
    create_access_key,
)
from moto.s3.exceptions import (
    BucketAccessDeniedError,
    S3ClientError,
    S3InvalidAccessKeyIdError,
    S3InvalidTokenError,
)
from moto.s3.models import FakeBucket, FakeKey
from moto.s3.responses import S3Response
from moto.secretsmanager.responses import SecretsManagerResponse
from moto.sqs.responses import SQSResponse
from moto.utilities.utils import get_partition

_Check = tuple[str, str]  # (IAM action without its service prefix, resource ARN)
_Principal = IAMUserAccessKey | AssumedRoleAccessKey

# The SDK always talks TLS to AWS (every endpoint is https), so a real request never arrives with
# aws:SecureTransport false; locally the SDK talks plain http to moto on 127.0.0.1, which says nothing about
# what AWS would see. Bucket policies that deny insecure transport must therefore not fire here.
SECURE_TRANSPORT = "true"

_TRANSPORT_ONLY = {"aws:SecureTransport": SECURE_TRANSPORT}
_context = threading.local()  # the request context of the check running on this thread (ThreadedMotoServer)
_install_lock = threading.Lock()
_installed = False
_NORMAL_ACTION = "_authenticate_and_authorize_normal_action"  # the check moto runs for every non-S3 request
_ORIGINAL_GET_PERMISSION = FakeBucket.get_permission
_ORIGINAL_IS_ACTION_PERMITTED = IAMPolicyStatement.is_action_permitted


def enable(moto_url: str) -> None:
    """Enforce IAM from the next request on, for the moto server at moto_url."""
    _reset_auth(moto_url, b"0")


def disable(moto_url: str) -> None:
    """Back to moto's default: every request is accepted, whatever its credentials."""
    _reset_auth(moto_url, b"inf")


def _reset_auth(moto_url: str, unchecked_requests: bytes) -> None:
    """moto's server-mode switch: the number of requests to let through before checking (and a reset counter)."""
    requests.post(f"{moto_url}/moto-api/reset-auth", data=unchecked_requests, timeout=10).raise_for_status()


def install() -> None:
    """Patch moto's request handlers and policy evaluation; process-wide and idempotent."""
    global _installed
    with _install_lock:
        if _installed:
            return
        patches: list[tuple[type, str, Callable[..., Any]]] = [
            (DynamoHandler, _NORMAL_ACTION, _authorizer(_dynamodb_checks, _json_error)),
            (SecretsManagerResponse, _NORMAL_ACTION, _authorizer(_secrets_checks, _json_error)),
            (EventsHandler, _NORMAL_ACTION, _authorizer(_events_checks, _json_error)),
            (SQSResponse, _NORMAL_ACTION, _authorizer(_sqs_checks, _sqs_error)),
            (S3Response, "_authenticate_and_authorize_s3_action", _authorize_s3),
            (FakeBucket, "get_permission", _bucket_permission),
            (IAMPolicyStatement, "is_action_permitted", _statement_is_action_permitted),
        ]
        for cls, name, function in patches:
            setattr(cls, name, function)
        _installed = True


# ------------------------------------------------------------------------------------------------ evaluation
def _enforcing() -> bool:
    """moto's own gate (core/authorization.py), counting the request the same way when it lets it through."""
    if ActionAuthenticatorMixin.request_count < settings.INITIAL_NO_AUTH_ACTION_COUNT:
        ActionAuthenticatorMixin.request_count += 1
        return False
    return True


@contextmanager
def _request_context(values: Mapping[str, str]) -> Iterator[None]:
    previous = getattr(_context, "values", None)
    _context.values = values
    try:
        yield
    finally:
        _context.values = previous


def _principal_context(principal: _Principal, region: str) -> dict[str, str]:
    """The global condition keys this emulation knows; aws:PrincipalArn of a role session is the role's ARN."""
    arn: str = principal.arn
    role_session = re.fullmatch(r"arn:([^:]+):sts::(\d+):assumed-role/([^/]+)/.+", arn)
    if role_session:
        partition, account, role = role_session.groups()
        arn = f"arn:{partition}:iam::{account}:role/{role}"
    return {
        "aws:SecureTransport": SECURE_TRANSPORT,
        "aws:PrincipalArn": arn,
        "aws:PrincipalAccount": principal.account_id,
        "aws:RequestedRegion": region,
    }


def _decide(principal: _Principal, action: str, resource: str, context: Mapping[str, str]) -> PermissionResult:
    """moto's identity-policy evaluation (IAMRequestBase.check_action_permitted) for one (action, resource), keeping
    an explicit Deny (DENIED) apart from no Allow (NEUTRAL): AWS's message names which one it was."""
    permitted = False
    with _request_context(context):
        for policy in principal.collect_policies():
            result = IAMPolicy(policy).is_action_permitted(action, resource)
            if result == PermissionResult.DENIED:
                return result
            permitted = permitted or result == PermissionResult.PERMITTED
    return PermissionResult.PERMITTED if permitted else PermissionResult.NEUTRAL


def _denial(principal_arn: str, action: str, resource: str, result: PermissionResult) -> str:
    """AWS's wording, e.g. "User: arn:aws:sts::…:assumed-role/R/S is not authorized to perform: dynamodb:GetItem on
    resource: arn:aws:dynamodb:…:table/T because no identity-based policy allows the dynamodb:GetItem action"."""
    if result == PermissionResult.DENIED:
        why = "with an explicit deny in an identity-based policy"
    else:
        why = f"because no identity-based policy allows the {action} action"
    return f"User: {principal_arn} is not authorized to perform: {action} on resource: {resource} {why}"


# ------------------------------------------------------------------------------------------------ JSON services
class _ServiceError(JsonRESTError):
    """An error in the AWS JSON protocol: {"__type": ..., "message": ...} with the given HTTP status."""

    def __init__(self, error_type: str, message: str, status: int) -> None:
        super().__init__(error_type, message)
        self.code = status


# DynamoDB, Secrets Manager and EventBridge answer these with HTTP 400 under their own names.
_JSON_ERROR_TYPES = {
    "AccessDenied": "AccessDeniedException",
    "InvalidClientTokenId": "UnrecognizedClientException",
    "SignatureDoesNotMatch": "InvalidSignatureException",
}


def _json_error(response: BaseResponse, code: str, message: str) -> Exception:
    return _ServiceError(_JSON_ERROR_TYPES[code], message, 400)


def _sqs_error(response: BaseResponse, code: str, message: str) -> Exception:
    """SQS speaks JSON with awsQueryCompatible: botocore takes the code from the x-amzn-query-error header. moto's
    call_action drops an HTTPException's own headers, so the header goes on the response's headers."""
    response.response_headers["x-amzn-query-error"] = f"{code};Sender"
    return _ServiceError(f"com.amazon.coral.service#{_JSON_ERROR_TYPES[code]}", message, 403)


def _authorizer[R: BaseResponse](
    checks: Callable[[R, str], list[_Check]], error: Callable[[R, str, str], Exception]
) -> Callable[[R, str], None]:
    """A replacement for ActionAuthenticatorMixin._authenticate_and_authorize_normal_action."""

    def _authenticate_and_authorize_normal_action(self: R, resource: str = "*") -> None:
        if not _enforcing():
            return
        try:
            request = _signed_request(IAMRequest, self, self._get_action())
        except (InvalidClientTokenIdError, SignatureDoesNotMatchError) as failure:
            raise error(self, failure.error_type, failure.message) from None
        principal = request._access_key
        denied = _first_denial(principal, request._service, checks(self, resource), self.region)
        if denied is not None:
            raise error(self, "AccessDenied", _denial(principal.arn, *denied))

    return _authenticate_and_authorize_normal_action


def _signed_request[Q: IAMRequest | S3IAMRequest](kind: type[Q], response: BaseResponse, action: str) -> Q:
    """moto's request model for `response`, its signature checked (raises for an unknown key or a bad signature)."""
    path = response.raw_path + (f"?{query}" if (query := urlparse(response.uri).query) else "")
    request = kind(
        account_id=response.current_account,
        method=response.method,
        path=path,
        data=response.data,
        body=response.raw_body,
        headers=response.headers,
        action=action,
    )
    request.check_signature()
    return request


def _first_denial(
    principal: _Principal, service: str, checks: list[_Check], region: str
) -> tuple[str, str, PermissionResult] | None:
    """(service:action, resource ARN, result) of the first check the principal's policies do not permit."""
    context = _principal_context(principal, region)
    for action, arn in checks:
        qualified = f"{service}:{action}"
        result = _decide(principal, qualified, arn, context)
        if result != PermissionResult.PERMITTED:
            return qualified, arn, result
    return None


def _arn_prefix(response: BaseResponse, service: str) -> str:
    return f"arn:{get_partition(response.region)}:{service}:{response.region}:{response.current_account}:"


def _dynamodb_checks(response: DynamoHandler, _resource: str) -> list[_Check]:
    """Table (and index) ARNs; batch and transaction requests are authorized per table, as AWS does."""
    action: str = response._get_action()
    prefix = _arn_prefix(response, "dynamodb") + "table/"

    def table(name: str) -> str:
        return name if name.startswith("arn:") else prefix + name

    if action in ("BatchGetItem", "BatchWriteItem"):
        return [(action, table(name)) for name in response._get_param("RequestItems", {})]
    if action == "TransactWriteItems":
        per_item = {
            "Put": "PutItem",
            "Update": "UpdateItem",
            "Delete": "DeleteItem",
            "ConditionCheck": "ConditionCheckItem",
        }
        return [
            (per_item[kind], table(operation["TableName"]))
            for item in response._get_param("TransactItems", [])
            for kind, operation in item.items()
            if kind in per_item
        ]
    if action == "TransactGetItems":
        return [("GetItem", table(item["Get"]["TableName"])) for item in response._get_param("TransactItems", [])]
    if name := response._get_param("TableName"):
        arn = table(name)
        if (index := response._get_param("IndexName")) and action in ("Query", "Scan"):
            arn += f"/index/{index}"
        return [(action, arn)]
    return [(action, response._get_param("ResourceArn") or "*")]


def _secrets_checks(response: SecretsManagerResponse, _resource: str) -> list[_Check]:
    """A secret's full ARN (random suffix included) whether the caller named it by name, full or partial ARN."""
    action: str = response._get_action()
    prefix = _arn_prefix(response, "secretsmanager") + "secret:"

    def secret(secret_id: str) -> str:
        found = response.backend.secrets.get(secret_id)  # resolves names, full and partial ARNs
        if found is not None:
            return str(found.arn)
        # unknown: AWS answers AccessDenied before ResourceNotFound to a caller not allowed on it
        return secret_id if secret_id.startswith("arn:") else prefix + secret_id

    if action == "BatchGetSecretValue" and (ids := response._get_param("SecretIdList")):
        return [("GetSecretValue", secret(secret_id)) for secret_id in ids]
    if secret_id := response._get_param("SecretId"):
        return [(action, secret(secret_id))]
    if action == "CreateSecret" and (name := response._get_param("Name")):
        return [(action, prefix + name)]
    return [(action, "*")]


def _events_checks(response: EventsHandler, _resource: str) -> list[_Check]:
    """PutEvents is authorized once per event bus its entries name (the default bus when they name none)."""
    action: str = response._get_action()
    prefix = _arn_prefix(response, "events") + "event-bus/"

    def bus(name: str | None) -> str:
        name = name or "default"
        return name if name.startswith("arn:") else prefix + name

    if action == "PutEvents":
        buses = dict.fromkeys(bus(entry.get("EventBusName")) for entry in response._get_param("Entries", []))
        return [(action, arn) for arn in buses] or [(action, bus(None))]
    if action in ("CreateEventBus", "DescribeEventBus", "DeleteEventBus") and (name := response._get_param("Name")):
        return [(action, bus(name))]
    return [(action, "*")]


# The batch operations have no IAM action of their own.
_SQS_BATCH_ACTIONS = {
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}


def _sqs_checks(response: SQSResponse, resource: str) -> list[_Check]:
    """moto resolves the queue ARN from QueueUrl (the resource given); GetQueueUrl names the queue instead."""
    action: str = response._get_action()
    if action == "GetQueueUrl":
        owner = response._get_param("QueueOwnerAWSAccountId") or response.current_account
        resource = (
            f"arn:{get_partition(response.region)}:sqs:{response.region}:{owner}:{response._get_param('QueueName')}"
        )
    return [(_SQS_BATCH_ACTIONS.get(action, action), resource)]


# ------------------------------------------------------------------------------------------------ S3
class _S3AccessDenied(BucketAccessDeniedError):
    """S3's XML AccessDenied with AWS's message. A BucketAccessDeniedError, which moto's DeleteObjects expects."""

    def __init__(self, bucket: str | None, message: str) -> None:
        super().__init__(bucket or "")
        self.message = message


def _s3_denial(principal_arn: str, action: str, resource: str, result: PermissionResult) -> str:
    """S3 words it as IAM does, with the resource in quotes."""
    return _denial(principal_arn, action, f'"{resource}"', result)


def _s3_checks(response: S3Response, bucket_name: str | None, key_name: str | None) -> list[_Check]:
    partition = get_partition(response.region)
    action: str = response._get_action()  # moto's S3 IAM action for this request (set in its querystring)
    target = f"{bucket_name or '*'}/{key_name}" if key_name else (bucket_name or "*")
    if action == "HeadBucket":
        action = "ListBucket"  # HeadBucket has no IAM action of its own
    elif action == "GetObject" and key_name and "versionId" in response.querystring:
        action = "GetObjectVersion"  # moto maps HEAD with versionId to GetObject
    checks = [(action, f"arn:{partition}:s3:::{target}")]
    if (
        action in ("GetObject", "GetObjectVersion")
        and key_name
        and bucket_name
        and _missing(response, bucket_name, key_name)
    ):
        checks.append(("ListBucket", f"arn:{partition}:s3:::{bucket_name}"))  # else S3 answers 403, not 404
    source = response.headers.get("x-amz-copy-source")
    if source and key_name and response.method == "PUT":
        path, _, version = source.partition("?")
        read = "GetObjectVersion" if "versionId=" in version else "GetObject"
        checks.insert(0, (read, f"arn:{partition}:s3:::{unquote(path.lstrip('/'))}"))
    return checks


def _missing(response: S3Response, bucket_name: str, key_name: str) -> bool:
    try:
        bucket = response.backend.get_bucket(bucket_name)
    except S3ClientError:
        return False  # no such bucket: moto answers NoSuchBucket
    return not isinstance(bucket.keys.get(key_name), FakeKey)  # absent, or a delete marker


def _authorize_s3(self: S3Response, bucket_name: str | None = None, key_name: str | None = None) -> None:
    """A replacement for ActionAuthenticatorMixin._authenticate_and_authorize_s3_action."""
    if not _enforcing():
        return
    checks = _s3_checks(self, bucket_name, key_name)
    if "Authorization" in self.headers:
        principal, region = _signed_request(S3IAMRequest, self, checks[0][0])._access_key, self.region
    else:
        principal, region = _presigned_principal(self)
    denied = _first_denial(principal, "s3", checks, region)
    if denied is not None:
        raise _S3AccessDenied(bucket_name, _s3_denial(principal.arn, *denied))


def _presigned_principal(response: S3Response) -> tuple[_Principal, str]:
    """The signer of a presigned URL (SigV4 X-Amz-Credential, SigV2 AWSAccessKeyId) and the URL's region, once its
    expiry is checked. moto itself would answer HTTP 500 here: its check reads the Authorization header."""
    query = {name.lower(): values[0] for name, values in parse_qs(urlparse(response.uri).query).items()}
    credential = query.get("x-amz-credential", "").split("/")
    key_id = credential[0] or query.get("awsaccesskeyid")
    if not key_id:
        raise S3ClientError("AccessDenied", "Access Denied")  # anonymous: nothing in this app is public
    now = dt.datetime.now(dt.UTC)
    if "x-amz-date" in query:
        signed = dt.datetime.strptime(query["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
        expired = now > signed + dt.timedelta(seconds=int(query.get("x-amz-expires", "0")))
    else:
        expired = now.timestamp() > int(query.get("expires", "0"))
    if expired:
        raise S3ClientError("AccessDenied", "Request has expired")
    headers = {"X-Amz-Security-Token": query["x-amz-security-token"]} if "x-amz-security-token" in query else {}
    region = credential[2] if len(credential) > 2 else response.region
    try:
        principal = create_access_key(
            account_id=response.current_account,
            partition=get_partition(region),
            access_key_id=key_id,
            headers=headers,
        )
    except CreateAccessKeyFailure as failure:
        raise (S3InvalidTokenError() if failure.reason == "InvalidToken" else S3InvalidAccessKeyIdError()) from None
    return principal, region


def _bucket_permission(self: FakeBucket, action: str, resource: str) -> PermissionResult:
    """FakeBucket.get_permission: moto evaluates bucket policies for object requests in any mode and before the
    identity check (s3/responses.py _key_response), with no context; give them at least the transport."""
    with _request_context(getattr(_context, "values", None) or _TRANSPORT_ONLY):
        result: PermissionResult = _ORIGINAL_GET_PERMISSION(self, action, resource)
    return result


# ------------------------------------------------------------------------------------------------ conditions
def _like(value: str, pattern: str) -> bool:
    """IAM wildcards: * any run of characters, ? one character; everything else literal."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.DOTALL) is not None


def _arn_like(value: str, pattern: str) -> bool:
    """ArnEquals and ArnLike: each of the six colon-separated parts is matched on its own, wildcards included."""
    values, patterns = value.split(":", 5), pattern.split(":", 5)
    return len(values) == len(patterns) == 6 and all(map(_like, values, patterns))


_MATCHERS: dict[str, Callable[[str, str], bool]] = {
    "StringEquals": str.__eq__,
    "StringEqualsIgnoreCase": lambda value, expected: value.casefold() == expected.casefold(),
    "StringLike": _like,
    "ArnEquals": _arn_like,
    "ArnLike": _arn_like,
    "Bool": lambda value, expected: value.lower() == expected.lower(),
}
_NEGATIONS = {
    "StringNotEquals": "StringEquals",
    "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
    "StringNotLike": "StringLike",
    "ArnNotEquals": "ArnEquals",
    "ArnNotLike": "ArnLike",
}


def _as_strings(expected: Any) -> list[str]:
    """Policy values may be JSON booleans or numbers (`"Bool": {"aws:SecureTransport": false}`)."""
    values = expected if isinstance(expected, list) else [expected]
    return [str(value).lower() if isinstance(value, bool) else str(value) for value in values]


def _condition_holds(operator: str, expected: list[str], actual: str | None, *, deny: bool = False) -> bool:
    """One operator on one key. An operator this evaluator does not know (Numeric*, Date*, IpAddress, ForAnyValue:
    ...) fails closed: an Allow does not apply and a Deny does, so the emulation never grants what AWS refuses."""
    if operator == "Null":
        return (actual is None) == (expected[0].lower() == "true")
    base = operator.removesuffix("IfExists")
    positive = _NEGATIONS.get(base, base)
    if positive not in _MATCHERS:
        return deny
    if_exists, negated = base != operator, positive != base
    if actual is None:  # a missing key matches no value: negated operators hold (AWS's rule), and ...IfExists
        return if_exists or negated
    matched = any(_MATCHERS[positive](actual, value) for value in expected)
    return matched != negated


def _conditions_hold(
    conditions: Mapping[str, Mapping[str, Any]], context: Mapping[str, str], *, deny: bool = False
) -> bool:
    """A statement's Condition block: every operator, every key (condition keys are case-insensitive)."""
    values = {key.lower(): value for key, value in context.items()}
    return all(
        _condition_holds(operator, _as_strings(expected), values.get(key.lower()), deny=deny)
        for operator, block in conditions.items()
        for key, expected in block.items()
    )


def _statement_is_action_permitted(
    self: IAMPolicyStatement,
    action: str,
    resource: str = "*",
    principal: str | None = None,
    incoming_condition_values: dict[str, str] | None = None,
) -> PermissionResult:
    """IAMPolicyStatement.is_action_permitted: a statement whose conditions do not hold does not apply (moto: an
    explicit Deny); otherwise moto decides on action, principal and resource as before."""
    conditions = self._statement.get("Condition")
    if not conditions:
        return _ORIGINAL_IS_ACTION_PERMITTED(self, action, resource, principal, incoming_condition_values)
    context = {**(getattr(_context, "values", None) or {}), **(incoming_condition_values or {})}
    if not _conditions_hold(conditions, context, deny=self._statement.get("Effect") == "Deny"):
        return PermissionResult.NEUTRAL
    unconditional = IAMPolicyStatement({name: value for name, value in self._statement.items() if name != "Condition"})
    return _ORIGINAL_IS_ACTION_PERMITTED(unconditional, action, resource, principal, incoming_condition_values)
