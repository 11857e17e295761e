"""Credentials for callers of the emulated AWS, minted directly in moto's backends.

moto's server runs in this process (ThreadedMotoServer), so its IAM and STS state is the `moto.backends` state here:
no HTTP round trip, and no dependence on IAM being reachable with enforcement on.
"""

from __future__ import annotations

import json

from moto.iam.exceptions import NoSuchEntity
from moto.iam.models import iam_backends
from moto.sts.models import sts_backends
from moto.utilities.utils import get_partition

DEFAULT_ACCOUNT_ID = "123456789012"  # moto's default account
ADMIN_USER = "local-admin"
_ALLOW_EVERYTHING = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
)
_SESSION_SECONDS = 12 * 3600  # moto does not expire sessions; the longest a role session can last on AWS


def admin_credentials(account_id: str = DEFAULT_ACCOUNT_ID) -> dict[str, str]:
    """An IAM user allowed everything, for the stack itself and tests: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.

    Idempotent: the user, its inline policy and its first access key are reused (IAM allows two keys per user).
    """
    iam = iam_backends[account_id][get_partition("us-east-1")]
    try:
        user = iam.get_user(ADMIN_USER)
    except NoSuchEntity:
        user = iam.create_user(region_name="us-east-1", user_name=ADMIN_USER)
    iam.put_user_policy(ADMIN_USER, "allow-everything", _ALLOW_EVERYTHING)
    key = user.access_keys[0] if user.access_keys else iam.create_access_key(ADMIN_USER)
    return {"AWS_ACCESS_KEY_ID": key.access_key_id, "AWS_SECRET_ACCESS_KEY": key.secret_access_key}


def role_credentials(
    role_arn: str, session_name: str, account_id: str = DEFAULT_ACCOUNT_ID, region: str = "us-east-1"
) -> dict[str, str]:
    """A session of role_arn named session_name (the function's name, as Lambda does): AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN, whose calls moto attributes to
    arn:aws:sts::<account>:assumed-role/<role>/<session_name> and checks against the role's policies.

    This stands in for the Lambda service assuming the function's role. It is minted in-process because
    sts:AssumeRole over HTTP cannot do it: with enforcement on, moto answers HTTP 500 when the role's trust policy
    names only a Service principal (`_check_principal` tests `principal in None`), and a caller would need a
    principal the trust policy admits anyway. The trust policy is therefore not checked here; the role must exist.
    """
    partition = get_partition(region)
    iam_backends[account_id][partition].get_role_by_arn(role_arn)  # raises NotFoundException
    # No session policy, no external id: moto annotates both as str, but its AssumeRole handler passes None.
    session = sts_backends[account_id][partition].assume_role(
        region_name=region,
        role_session_name=session_name,
        role_arn=role_arn,
        policy=None,  # type: ignore[arg-type]
        duration=_SESSION_SECONDS,
        external_id=None,  # type: ignore[arg-type]
    )
    return {
        "AWS_ACCESS_KEY_ID": session.access_key_id,
        "AWS_SECRET_ACCESS_KEY": session.secret_access_key,
        "AWS_SESSION_TOKEN": session.session_token,
    }
