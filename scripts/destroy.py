"""Delete a deployed stack completely: `make destroy` (CONFIG_ENV=dev|prod, KEEP_JOBS_TABLE=1 to keep the jobs).

CloudFormation cannot delete a bucket that holds objects, and both buckets are versioned, so every version, delete
marker and unfinished multipart upload goes first; then `sam delete` removes the stack and its packaged code; then
the jobs table, which the template retains on purpose (DeletionPolicy: Retain), is deleted too unless kept. A copy
that lands while the stack is being deleted makes CloudFormation fail on the bucket: the buckets are emptied again
and the deletion retried once, so the run ends with no stack, no bucket and no table left behind.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

REPO = Path(__file__).resolve().parent.parent
SAM = Path(sys.executable).parent / "sam"


def stack_name_of(config_env: str) -> str:
    """The stack the environment deploys: `sam deploy --guided` saves its answer under deploy.parameters."""
    config = tomllib.loads((REPO / "samconfig.toml").read_text(encoding="utf-8"))[config_env]
    for command in ("deploy", "global"):
        name = config.get(command, {}).get("parameters", {}).get("stack_name")
        if name:
            return str(name)
    raise SystemExit(f"samconfig.toml has no stack_name for {config_env}; pass --stack-name")


def empty_bucket(s3: Any, bucket: str) -> int:
    """Delete every object version, delete marker and multipart upload; returns how many versions went."""
    removed = 0
    for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
        for upload in page.get("Uploads", []):
            s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    while True:  # list the first page again after each deletion: never page through a listing being deleted
        page = s3.list_object_versions(Bucket=bucket, MaxKeys=1000)
        entries = [
            {"Key": entry["Key"], "VersionId": entry["VersionId"]}
            for entry in page.get("Versions", []) + page.get("DeleteMarkers", [])
        ]
        if not entries:
            break
        answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": entries[:1000], "Quiet": True})
        if errors := answer.get("Errors"):
            raise RuntimeError(f"{bucket}: {len(errors)} versions refused removal, e.g. {errors[0]}")
        removed += len(entries[:1000])
    return removed


def physical_ids(cloudformation: Any, stack_name: str) -> dict[str, str]:
    """Logical id → physical id of what the stack holds; unlike Outputs, also there after a failed first create."""
    ids: dict[str, str] = {}
    for page in cloudformation.get_paginator("list_stack_resources").paginate(StackName=stack_name):
        for resource in page["StackResourceSummaries"]:
            if resource.get("PhysicalResourceId"):
                ids[resource["LogicalResourceId"]] = resource["PhysicalResourceId"]
    return ids


def empty_buckets(s3: Any, resources: dict[str, str]) -> None:
    for name in ("InputBucket", "OutputBucket"):
        bucket = resources.get(name)
        if bucket is None:
            continue
        try:
            print(f"emptying s3://{bucket}: {empty_bucket(s3, bucket)} versions removed")
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "NoSuchBucket":
                raise


def delete_table(dynamodb: Any, table: str) -> None:
    try:
        dynamodb.delete_table(TableName=table)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
        return
    dynamodb.get_waiter("table_not_exists").wait(TableName=table)
    print(f"deleted the jobs table {table}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-env", default="dev", help="samconfig.toml environment naming the stack")
    parser.add_argument("--stack-name", help="overrides the stack name of --config-env")
    parser.add_argument("--region", default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))
    parser.add_argument("--keep-jobs-table", action="store_true", help="keep the retained jobs table")
    args = parser.parse_args(argv)
    stack_name = args.stack_name or stack_name_of(args.config_env)
    session = boto3.session.Session(region_name=args.region)
    s3, cloudformation = session.client("s3"), session.client("cloudformation")
    resources = physical_ids(cloudformation, stack_name)
    for attempt in (1, 2):
        empty_buckets(s3, resources)
        command = [str(SAM), "delete", "--stack-name", stack_name, "--region", session.region_name, "--no-prompts"]
        if subprocess.run(command, check=False).returncode == 0:  # noqa: S603
            break
        if attempt == 2:
            print(
                f"sam delete failed twice; see the stack's events: aws cloudformation describe-stack-events "
                f"--stack-name {stack_name}",
                file=sys.stderr,
            )
            return 1
    table = resources.get("JobsTable")
    if table is None:
        return 0
    if args.keep_jobs_table:
        print(f"kept the jobs table {table} (delete it with aws dynamodb delete-table)")
    else:
        delete_table(session.client("dynamodb"), table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
