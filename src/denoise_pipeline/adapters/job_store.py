"""DynamoDB job store: one item per job, every transition a conditional update, final states never change.

Key schema: `job_id` (hash). GSI `by-status`: `status` (hash) + `status_at` (range, ISO-8601 UTC), so the
reconciler and the capacity queue list jobs by state, oldest first, without a Scan. This module is the one place
that knows the item's attribute names.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from boto3.dynamodb.conditions import ConditionBase, Key

from ..clock import iso, utc_now
from ..domain.job import FINAL_STATES, NON_FINAL_STATES, Job, JobNotFound, JobStatus, TransitionRejected
from ..domain.outcome import ConversionOutcome, Verdict
from ..domain.outputs import OutputName
from ..domain.redaction import EXCERPT_CHARS
from ..domain.source import SourceObject
from ..domain.submission import SubmitResult

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table
    from mypy_boto3_dynamodb.type_defs import UpdateItemOutputTableTypeDef

STATUS_INDEX = "by-status"
PENDING_EVENTS_INDEX = "pending-events"  # sparse: only final jobs whose event is not yet published
EVENT_PENDING = "pending"


def job_from_item(item: dict[str, Any]) -> Job:
    return Job(
        job_id=str(item["job_id"]),
        status=JobStatus(item["status"]),
        source_bucket=str(item["source_bucket"]),
        source_key=str(item["source_key"]),
        source_size=int(item.get("source_size", 0)),
        source_etag=str(item.get("source_etag", "")),
        source_version_id=str(item.get("source_version_id", "")),
        task_id=item.get("task_id"),
        conversion_id=item.get("conversion_id"),
        eta=int(item["eta"]) if item.get("eta") is not None else None,
        credit_estimate=item.get("credit_estimate"),
        conversion_cost=item.get("conversion_cost"),
        conversion_duration=item.get("conversion_duration"),
        output_urls=dict(item.get("output_urls", {})),
        output_bucket=item.get("output_bucket"),
        output_keys=dict(item.get("output_keys", {})),
        error_code=item.get("error_code"),
        error_message=item.get("error_message"),
        queue_reason=item.get("queue_reason"),
        submit_attempts=int(item.get("submit_attempts", 0)),
        created_at=str(item.get("created_at", "")),
        status_at=str(item.get("status_at", "")),
        lease_until=item.get("lease_until"),
        early_callback=_outcome_from_map(item["early_callback"]) if item.get("early_callback") else None,
        copy_attempts=int(item.get("copy_attempts", 0)),
        copy_lease_until=item.get("copy_lease_until"),
        last_copy_error=item.get("last_copy_error"),
        sweep_failures=int(item.get("sweep_failures", 0)),
        timestamps={k: str(v) for k, v in item.items() if k.endswith("_at") and isinstance(v, str)},
    )


class JobStore:
    def __init__(self, table: Table, *, lease_seconds: int = 120) -> None:
        self._table = table
        self._lease = timedelta(seconds=lease_seconds)
        self._conditional_failure = table.meta.client.exceptions.ConditionalCheckFailedException

    def get(self, job_id: str) -> Job:
        item = self._table.get_item(Key={"job_id": job_id}, ConsistentRead=True).get("Item")
        if item is None or "status" not in item:
            raise JobNotFound(job_id)
        return job_from_item(item)

    def find(self, job_id: str) -> Job | None:
        try:
            return self.get(job_id)
        except JobNotFound:
            return None

    def create_claimed(self, source: SourceObject, now: datetime | None = None) -> Job | None:
        """Create the job in RECEIVED with the submit lease held by the caller; None if it already exists."""
        now = now or utc_now()
        return self._create(
            source, JobStatus.RECEIVED, now, {"submit_attempts": 1, "lease_until": iso(now + self._lease)}
        )

    def create_queued(self, source: SourceObject, reason: str, now: datetime | None = None) -> Job | None:
        """Create the job straight in QUEUED (no slot free): one write instead of a create and a transition."""
        now = now or utc_now()
        return self._create(
            source, JobStatus.QUEUED, now, {"submit_attempts": 0, "queued_at": iso(now), "queue_reason": reason}
        )

    def _create(self, source: SourceObject, status: JobStatus, now: datetime, extra: dict[str, Any]) -> Job | None:
        stamp = iso(now)
        item: dict[str, Any] = {
            "job_id": source.job_id,
            "status": status.value,
            "status_at": stamp,
            "created_at": stamp,
            "received_at": stamp,
            "updated_at": stamp,
            "source_bucket": source.bucket,
            "source_key": source.key,
            "source_size": source.size,
            "source_etag": source.etag,
            "source_version_id": source.version_id,
            **extra,
        }
        try:
            self._table.put_item(Item=item, ConditionExpression="attribute_not_exists(job_id)")
        except self._conditional_failure:
            return None
        return job_from_item(item)

    def claim(self, job_id: str, now: datetime | None = None) -> Job | None:
        """Take the submit lease of a waiting job (RECEIVED/QUEUED) unless a live one is held; None if not."""
        now = now or utc_now()
        try:
            result = self._table.update_item(
                Key={"job_id": job_id},
                UpdateExpression="SET lease_until = :until, updated_at = :now ADD submit_attempts :one",
                ConditionExpression=f"#s IN (:received, :queued) AND {_lapsed('lease_until')}",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={
                    ":until": iso(now + self._lease),
                    ":now": iso(now),
                    ":one": 1,
                    ":received": JobStatus.RECEIVED.value,
                    ":queued": JobStatus.QUEUED.value,
                },
                ReturnValues="ALL_NEW",
            )
        except self._conditional_failure:
            return None
        return job_from_item(result["Attributes"])

    def release_lease(self, job_id: str) -> None:
        """Give the lease back after a transient failure so the next retry can claim the job at once."""
        self._write_if_held(
            job_id,
            "REMOVE lease_until",
            "#s IN (:received, :queued)",
            {":received": JobStatus.RECEIVED.value, ":queued": JobStatus.QUEUED.value},
        )

    def mark_queued(self, job_id: str, reason: str, now: datetime | None = None) -> Job:
        """RECEIVED/QUEUED → QUEUED; the queue position (`status_at`) is kept when the job was already queued.

        Waiting for capacity (no free slot, or the provider's 429) is not a failed submit attempt, so the count the
        claim added is given back: a job that waits long behind a busy provider is never failed as exhausted.
        """
        stamp = iso(now or utc_now())
        return self._update(
            job_id,
            JobStatus.QUEUED,
            "SET #s = :queued, queued_at = if_not_exists(queued_at, :now), "
            "status_at = if_not_exists(queued_at, :now), queue_reason = :reason, updated_at = :now "
            "REMOVE lease_until ADD submit_attempts :undo",
            "#s IN (:received, :queued)",
            {
                ":received": JobStatus.RECEIVED.value,
                ":queued": JobStatus.QUEUED.value,
                ":now": stamp,
                ":reason": reason,
                ":undo": -1,
            },
        )

    def mark_submitted(self, job_id: str, result: SubmitResult, now: datetime | None = None) -> Job:
        stamp = iso(now or utc_now())
        values: dict[str, Any] = {
            ":submitted": JobStatus.SUBMITTED.value,
            ":received": JobStatus.RECEIVED.value,
            ":queued": JobStatus.QUEUED.value,
            ":now": stamp,
            ":task": result.task_id,
            ":conversion": result.conversion_id,
        }
        sets = ["#s = :submitted", "status_at = :now", "submitted_at = :now", "updated_at = :now"]
        sets += ["task_id = :task", "conversion_id = :conversion"]
        for name, value in (
            ("eta", result.eta),
            ("credit_estimate", result.credit_estimate),
            ("provider_status", result.status),
            ("provider_message", result.message),
        ):
            if value is not None and value != "":
                sets.append(f"{name} = :{name}")
                values[f":{name}"] = value
        return self._update(
            job_id,
            JobStatus.SUBMITTED,
            "SET " + ", ".join(sets) + " REMOVE lease_until, queue_reason",
            "#s IN (:received, :queued)",
            values,
        )

    def mark_copying(self, job_id: str, outcome: ConversionOutcome, now: datetime | None = None) -> None:
        """SUBMITTED → COPYING with the output URLs: the durable record of an accepted callback.

        Nothing is read back: this write is the webhook's acknowledgement, and the item (returned whole, it is the
        largest response the job store asks for) is not needed there; the copy worker reads the job it copies.
        """
        sets, values = _outcome_values(outcome, iso(now or utc_now()))
        sets += ["#s = :copying", "status_at = :now", "copying_at = :now", "output_urls = :urls"]
        values |= {
            ":copying": JobStatus.COPYING.value,
            ":submitted": JobStatus.SUBMITTED.value,
            ":urls": {name.value: url for name, url in outcome.outputs.items()},
        }
        self._write(
            job_id,
            JobStatus.COPYING,
            "SET " + ", ".join(sets) + " REMOVE early_callback",
            "#s = :submitted AND " + _same_task(outcome, values),
            values,
        )

    def record_progress(self, job_id: str, outcome: ConversionOutcome, now: datetime | None = None) -> Job:
        """A SUBMITTED job heard from the provider without finishing: the time and what it said are noted."""
        sets, values = _outcome_values(outcome, iso(now or utc_now()))
        values[":submitted"] = JobStatus.SUBMITTED.value
        return self._update(
            job_id, None, "SET " + ", ".join(sets), "#s = :submitted AND " + _same_task(outcome, values), values
        )

    def keep_early_callback(self, job_id: str, outcome: ConversionOutcome, now: datetime | None = None) -> Job:
        """Keep a callback for a job that has no task id yet (waiting, or its submit is under way).

        A final callback replaces a kept one that is not final (progress, unclear), never the other way round.
        """
        stamp = iso(now or utc_now())
        values: dict[str, Any] = {
            ":kept": _outcome_to_map(outcome, stamp),
            ":now": stamp,
            ":received": JobStatus.RECEIVED.value,
            ":queued": JobStatus.QUEUED.value,
        }
        replaceable = "attribute_not_exists(early_callback)"
        if outcome.verdict.is_final:
            replaceable += " OR early_callback.verdict IN (:pending, :unclear)"
            values[":pending"] = Verdict.PENDING.value
            values[":unclear"] = Verdict.UNCLEAR.value
        return self._update(
            job_id,
            None,
            "SET early_callback = :kept, last_callback_at = :now, updated_at = :now",
            f"#s IN (:received, :queued) AND attribute_not_exists(task_id) AND ({replaceable})",
            values,
        )

    def record_surprise(
        self, job_id: str, where: str, reasons: Sequence[str], answer: str, now: datetime | None = None
    ) -> None:
        """Keep what we did not understand (reasons and a scrubbed excerpt, bounded in size) on the job."""
        surprise = {
            "at": iso(now or utc_now()),
            "where": where,
            "reasons": [reason[:200] for reason in reasons[:20]],
            "answer": answer[:EXCERPT_CHARS],
        }
        self._table.update_item(
            Key={"job_id": job_id},
            UpdateExpression="SET last_surprise = :surprise ADD surprises :one",
            ConditionExpression="attribute_exists(job_id)",
            ExpressionAttributeValues={":surprise": surprise, ":one": 1},
        )

    def mark_completed(
        self,
        job_id: str,
        owner: str,
        bucket: str,
        output_keys: dict[str, str],
        copied_bytes: int,
        now: datetime | None = None,
    ) -> Job:
        """COPYING → COMPLETED, by the holder of the copy lease only."""
        stamp = iso(now or utc_now())
        return self._update(
            job_id,
            JobStatus.COMPLETED,
            "SET #s = :completed, status_at = :now, completed_at = :now, updated_at = :now, "
            "output_bucket = :bucket, output_keys = :keys, copied_bytes = :bytes, event_pending = :pending "
            "REMOVE copy_lease_until, copy_owner",
            "#s = :copying AND copy_owner = :owner",
            {
                ":completed": JobStatus.COMPLETED.value,
                ":copying": JobStatus.COPYING.value,
                ":owner": owner,
                ":now": stamp,
                ":bucket": bucket,
                ":keys": output_keys,
                ":bytes": copied_bytes,
                ":pending": EVENT_PENDING,
            },
        )

    def mark_failed(
        self,
        job_id: str,
        code: str,
        message: str,
        *,
        from_states: Iterable[JobStatus] = NON_FINAL_STATES,
        target: JobStatus = JobStatus.FAILED,
        outcome: ConversionOutcome | None = None,
        now: datetime | None = None,
    ) -> Job:
        """Any non-final state → FAILED (or TIMED_OUT) with the reason kept; `outcome` also requires its task."""
        stamp = iso(now or utc_now())
        allowed = sorted(set(from_states) - FINAL_STATES)
        values: dict[str, Any] = {
            ":target": target.value,
            ":now": stamp,
            ":code": code,
            ":message": message[:1000],
            ":pending": EVENT_PENDING,
            **{f":from{i}": state.value for i, state in enumerate(allowed)},
        }
        condition = f"#s IN ({', '.join(f':from{i}' for i in range(len(allowed)))})"
        if outcome is not None:
            condition += " AND " + _same_task(outcome, values)
        attribute = f"{target.value.lower()}_at"
        return self._update(
            job_id,
            target,
            f"SET #s = :target, status_at = :now, {attribute} = :now, updated_at = :now, "
            "error_code = :code, error_message = :message, event_pending = :pending "
            "REMOVE lease_until, early_callback, copy_lease_until, copy_owner",
            condition,
            values,
        )

    def claim_copy(
        self, job_id: str, owner: str, until: datetime, max_attempts: int, now: datetime | None = None
    ) -> Job | None:
        """Start a copy attempt of a COPYING job: take its copy lease (none live) and count the attempt, in one write.

        Counting at the start means an attempt is counted whatever ends it, a crash or Lambda's timeout included.
        None when another worker's lease is live, the attempts are used up, or the job is no longer COPYING.
        """
        stamp = iso(now or utc_now())
        try:
            result = self._table.update_item(
                Key={"job_id": job_id},
                UpdateExpression="SET copy_lease_until = :until, copy_owner = :owner, updated_at = :now "
                "ADD copy_attempts :one",
                ConditionExpression="#s = :copying"
                f" AND {_lapsed('copy_lease_until')}"
                " AND (attribute_not_exists(copy_attempts) OR copy_attempts < :max)",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={
                    ":until": iso(until),
                    ":owner": owner,
                    ":now": stamp,
                    ":one": 1,
                    ":copying": JobStatus.COPYING.value,
                    ":max": max_attempts,
                },
                ReturnValues="ALL_NEW",
            )
        except self._conditional_failure:
            return None
        return job_from_item(result["Attributes"])

    def end_copy_attempt(self, job_id: str, owner: str, error: str, retry_at: datetime) -> None:
        """A copy attempt failed: keep its reason, and hold the lease (without an owner) until its retry is due, so
        the reconciler does not queue another attempt during the back-off (only the owner's own lease)."""
        self._write_if_held(
            job_id,
            "SET last_copy_error = :error, copy_lease_until = :retry REMOVE copy_owner",
            "#s = :copying AND copy_owner = :owner",
            {
                ":error": error[:1000],
                ":owner": owner,
                ":retry": iso(retry_at),
                ":copying": JobStatus.COPYING.value,
            },
        )

    def record_sweep_failure(self, job_id: str, error: str, now: datetime | None = None) -> int:
        """The reconciler failed on this job: count it (in a row) and keep the reason; returns the count.

        A job a submit or a copy is working on right now (its lease is live) is not counted: 0 is returned, so a
        sweep that fails beside a running attempt never fails the job under it.
        """
        stamp = iso(now or utc_now())
        try:
            result = self._table.update_item(
                Key={"job_id": job_id},
                UpdateExpression="SET last_sweep_error = :error, updated_at = :now ADD sweep_failures :one",
                ConditionExpression=(
                    f"attribute_exists(job_id) AND {_lapsed('lease_until')} AND {_lapsed('copy_lease_until')}"
                ),
                ExpressionAttributeValues={":error": error[:1000], ":now": stamp, ":one": 1},
                ReturnValues="UPDATED_NEW",
            )
        except self._conditional_failure:
            return 0
        return int(str(result["Attributes"]["sweep_failures"]))

    def clear_sweep_failures(self, job_id: str) -> None:
        """A sweep went through for this job: its failures are no longer in a row."""
        with contextlib.suppress(self._conditional_failure):
            self._table.update_item(
                Key={"job_id": job_id},
                UpdateExpression="REMOVE sweep_failures, last_sweep_error",
                ConditionExpression="attribute_exists(sweep_failures)",
            )

    def mark_event_published(self, job_id: str) -> None:
        self._table.update_item(Key={"job_id": job_id}, UpdateExpression="REMOVE event_pending")

    def list_pending_events(self, *, older_than: datetime, limit: int = 100) -> list[Job]:
        """Final jobs whose event was not published yet (a crash or an EventBridge error after the transition)."""
        page = self._table.query(
            IndexName=PENDING_EVENTS_INDEX,
            KeyConditionExpression=Key("event_pending").eq(EVENT_PENDING) & Key("status_at").lt(iso(older_than)),
            Limit=limit,
        )
        return [job_from_item(item) for item in page.get("Items", [])]

    def list_by_status(
        self, status: JobStatus, *, older_than: datetime | None = None, limit: int = 100
    ) -> Iterator[Job]:
        """Jobs in `status`, oldest first, optionally only those that entered it before `older_than`."""
        condition: ConditionBase = Key("status").eq(status.value)
        if older_than:
            condition &= Key("status_at").lt(iso(older_than))
        kwargs: dict[str, Any] = {
            "IndexName": STATUS_INDEX,
            "KeyConditionExpression": condition,
            "ScanIndexForward": True,
            "Limit": min(limit, 100),
        }
        returned = 0
        while returned < limit:
            page = self._table.query(**kwargs)
            for item in page.get("Items", []):
                if returned >= limit:
                    return
                returned += 1
                yield job_from_item(item)
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _update(
        self,
        job_id: str,
        target: JobStatus | None,
        expression: str,
        condition: str,
        values: dict[str, Any],
    ) -> Job:
        """The conditional update, then the job as it now is."""
        result = self._write(job_id, target, expression, condition, values, returns="ALL_NEW")
        return job_from_item(result["Attributes"])

    def _write_if_held(self, job_id: str, expression: str, condition: str, values: dict[str, Any]) -> None:
        """The conditional update, reading nothing back; when the condition does not hold (the job moved on, or
        someone else holds it) nothing is written, and only a job that is gone raises (JobNotFound)."""
        try:
            self._write(job_id, None, expression, condition, values)
        except TransitionRejected:
            self.get(job_id)

    def _write(
        self,
        job_id: str,
        target: JobStatus | None,
        expression: str,
        condition: str,
        values: dict[str, Any],
        *,
        returns: Literal["NONE", "ALL_NEW"] = "NONE",
    ) -> UpdateItemOutputTableTypeDef:
        """One conditional UpdateItem on an existing job; TransitionRejected when the condition does not hold."""
        try:
            return self._table.update_item(
                Key={"job_id": job_id},
                UpdateExpression=expression,
                ConditionExpression="attribute_exists(job_id) AND " + condition,
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=values,
                ReturnValues=returns,
            )
        except self._conditional_failure as exc:
            raise TransitionRejected(job_id, target or JobStatus.RECEIVED) from exc


def _lapsed(lease: str) -> str:
    """Condition: no `lease` attribute, or it ended before `:now` (nobody holds it)."""
    return f"(attribute_not_exists({lease}) OR {lease} < :now)"


def _same_task(outcome: ConversionOutcome, values: dict[str, Any]) -> str:
    """The condition that the job carries the outcome's task (and its conversion, once one was recorded)."""
    values[":task"] = outcome.task_id
    if not outcome.conversion_id:
        return "task_id = :task"
    values |= {":conversion": outcome.conversion_id, ":none": ""}
    return "task_id = :task AND (attribute_not_exists(conversion_id) OR conversion_id IN (:none, :conversion))"


def _outcome_values(outcome: ConversionOutcome, stamp: str) -> tuple[list[str], dict[str, Any]]:
    """SET clauses and values for what an outcome tells about the conversion (numbers, their raw text, message)."""
    sets = ["last_callback_at = :now", "updated_at = :now", "provider_message = :message"]
    values: dict[str, Any] = {":now": stamp, ":message": outcome.message}
    for name, value in (
        ("provider_status", outcome.status),
        ("conversion_cost", outcome.conversion_cost),
        ("conversion_duration", outcome.conversion_duration),
        *((f"{name}_raw", raw) for name, raw in outcome.unreadable.items()),
    ):
        if value is not None:
            sets.append(f"{name} = :{name}")
            values[f":{name}"] = value
    return sets, values


def _outcome_to_map(outcome: ConversionOutcome, received_at: str) -> dict[str, Any]:
    kept: dict[str, Any] = {
        "task_id": outcome.task_id,
        "verdict": outcome.verdict.value,
        "message": outcome.message,
        "outputs": {name.value: url for name, url in outcome.outputs.items()},
        "received_at": received_at,
    }
    optional = {
        "conversion_id": outcome.conversion_id,
        "status": outcome.status,
        "conversion_cost": outcome.conversion_cost,
        "conversion_duration": outcome.conversion_duration,
    }
    return kept | {name: value for name, value in optional.items() if value is not None}


def _outcome_from_map(kept: dict[str, Any]) -> ConversionOutcome:
    return ConversionOutcome(
        task_id=str(kept["task_id"]),
        verdict=Verdict(kept["verdict"]),
        message=str(kept.get("message", "")),
        outputs={OutputName(name): str(url) for name, url in kept.get("outputs", {}).items()},
        conversion_id=kept.get("conversion_id"),
        status=kept.get("status"),
        conversion_cost=kept.get("conversion_cost"),
        conversion_duration=kept.get("conversion_duration"),
    )
