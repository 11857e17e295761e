"""Replay S3 events whose submit failed after Lambda's retries (the SubmitFunction's on-failure queue).

Each message is a Lambda destination record; its `requestPayload` is the original S3 event. Replaying re-invokes
the submit function asynchronously with that event: jobs already handled are recognised (same job id) and not
submitted twice. A message is deleted only after its invocation was accepted.

    python scripts/replay_submit_failures.py --queue-url <SubmitFailureQueueUrl> --function-name <SubmitFunction>
"""

from __future__ import annotations

import argparse
import json

import boto3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queue-url", required=True)
    parser.add_argument("--function-name", required=True)
    parser.add_argument("--dry-run", action="store_true", help="show what would be replayed, change nothing")
    args = parser.parse_args()
    sqs = boto3.client("sqs")
    lambda_client = boto3.client("lambda")
    replayed = 0
    while messages := sqs.receive_message(QueueUrl=args.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
        "Messages", []
    ):
        for message in messages:
            record = json.loads(message["Body"])
            event = record["requestPayload"]
            keys = [r["s3"]["object"]["key"] for r in event.get("Records", [])]
            reason = record.get("responsePayload", {}).get("errorMessage", "")
            print(f"{'would replay' if args.dry_run else 'replaying'} {keys} (failed with: {reason[:120]})")
            if args.dry_run:
                continue
            lambda_client.invoke(FunctionName=args.function_name, InvocationType="Event", Payload=json.dumps(event))
            sqs.delete_message(QueueUrl=args.queue_url, ReceiptHandle=message["ReceiptHandle"])
            replayed += 1
        if args.dry_run:
            break
    print(f"replayed {replayed} event(s)")


if __name__ == "__main__":
    main()
