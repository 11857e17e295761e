"""`make destroy`: what CloudFormation cannot delete (a versioned bucket with objects, the retained jobs table) is
removed first, so the stack deletion cannot fail on it and nothing is left behind."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from scripts.destroy import delete_table, empty_bucket, physical_ids, stack_name_of


def test_a_versioned_bucket_with_versions_markers_and_uploads_is_emptied_and_can_be_deleted() -> None:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="out")
        s3.put_bucket_versioning(Bucket="out", VersioningConfiguration={"Status": "Enabled"})
        for index in range(1205):  # more than one delete_objects batch
            s3.put_object(Bucket="out", Key=f"denoised/{index % 3}/noise.wav", Body=b"x")
        s3.delete_object(Bucket="out", Key="denoised/0/noise.wav")  # a delete marker
        s3.create_multipart_upload(Bucket="out", Key=".staging/job/noise.wav")
        with pytest.raises(ClientError, match="BucketNotEmpty"):
            s3.delete_bucket(Bucket="out")

        assert empty_bucket(s3, "out") == 1206

        assert s3.list_multipart_uploads(Bucket="out").get("Uploads", []) == []
        s3.delete_bucket(Bucket="out")


def test_the_retained_jobs_table_is_deleted_and_a_missing_one_is_not_an_error() -> None:
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        dynamodb.create_table(
            TableName="jobs",
            AttributeDefinitions=[{"AttributeName": "job_id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "job_id", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        delete_table(dynamodb, "jobs")
        assert dynamodb.list_tables()["TableNames"] == []
        delete_table(dynamodb, "jobs")


def test_each_config_env_names_its_own_stack() -> None:
    assert stack_name_of("dev") != stack_name_of("prod")


def test_the_stacks_buckets_and_table_are_found_by_their_logical_ids() -> None:
    template = {
        "Resources": {
            "InputBucket": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "s-input"}},
            "OutputBucket": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "s-output"}},
            "JobsTable": {
                "Type": "AWS::DynamoDB::Table",
                "Properties": {
                    "AttributeDefinitions": [{"AttributeName": "job_id", "AttributeType": "S"}],
                    "KeySchema": [{"AttributeName": "job_id", "KeyType": "HASH"}],
                    "BillingMode": "PAY_PER_REQUEST",
                },
            },
        }
    }
    with mock_aws():
        cloudformation = boto3.client("cloudformation", region_name="us-east-1")
        cloudformation.create_stack(StackName="s", TemplateBody=json.dumps(template))  # no Outputs at all

        ids = physical_ids(cloudformation, "s")

    assert ids["InputBucket"] == "s-input"
    assert ids["OutputBucket"] == "s-output"
    assert ids["JobsTable"]  # the name CloudFormation generated
