"""Replay upload events that never got submitted, from either queue that keeps them:

- `SubmitFailureQueueUrl` (the submit function's on-failure destination): each message is a Lambda destination
  record whose `requestPayload` is the original event, kept after Lambda's two retries;
- `UploadDeadLetterQueueUrl` (the upload rule's dead-letter queue): each message is the EventBridge event itself,
  which EventBridge could not deliver to the function.

Replaying re-invokes the submit function asynchronously with the event: jobs already handled are recognised (same
job id) and not submitted twice. A message is deleted only after its invocation was accepted.

    python scripts/replay_submit_failures.py --queue-url <SubmitFailureQueueUrl> --function-name <SubmitFunctionName>
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import boto3


def original_event(body: dict[str, Any]) -> tuple[dict[str, Any], list[str], str]:
    """The event to replay, the object keys it names, and why it failed (as far as the message says)."""
    if "requestPayload" in body:
        event = body["requestPayload"]
        reason = str(body.get("responsePayload", {}).get("errorMessage", ""))
    else:
        event, reason = body, "not delivered by EventBridge"
    if "detail" in event:
        keys = [str(event["detail"]["object"]["key"])]
    else:
        keys = [str(record["s3"]["object"]["key"]) for record in event.get("Records", [])]
    return event, keys, reason


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
            event, keys, reason = original_event(json.loads(message["Body"]))
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
