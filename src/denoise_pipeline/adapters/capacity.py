"""Provider capacity: at most `MaxParallelJobs` jobs at the provider at once, counted without a Scan or a race.

One item in the jobs table (`job_id = "#capacity"`) holds the set of job ids that own a slot. Acquiring is a
conditional ADD (set smaller than the limit, or already a member, and no back-off pause in force); releasing is a
DELETE from the set, which is a no-op the second time, so a slot is released exactly once whoever releases it.
The item has no `status`, so it never appears in the status index.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..clock import iso, utc_now

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

CAPACITY_KEY = "#capacity"
SLOTS_TAKEN = "waiting for a free provider slot"
BASE_BACKOFF_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 300.0


@dataclass(frozen=True)
class CapacityState:
    """The capacity record as read: who holds a slot, and whether admission is paused (429s)."""

    holders: frozenset[str]
    paused_until: str | None
    pause_reason: str | None
    consecutive_rate_limits: int


@dataclass(frozen=True)
class Slot:
    """A slot taken for one job."""

    rate_limit_streak: int
    """429s in a row before this admission; a successful submit then resets the back-off (one write, only then)."""


@dataclass(frozen=True)
class Pause:
    """Admission is paused until `until` (ISO time), `seconds` from when the pause was set."""

    until: str
    seconds: float


class CapacityGate:
    def __init__(self, table: Table, max_parallel: int) -> None:
        self._table = table
        self._max = max_parallel
        self._conditional_failure = table.meta.client.exceptions.ConditionalCheckFailedException

    @property
    def limit(self) -> int:
        return self._max

    def try_acquire(self, job_id: str, now: datetime | None = None) -> Slot | None:
        """Take a slot for the job (or keep the one it has); None when all are taken or admission is paused."""
        now = now or utc_now()
        try:
            result = self._table.update_item(
                Key={"job_id": CAPACITY_KEY},
                UpdateExpression="ADD holders :job",
                ConditionExpression="(attribute_not_exists(holders) OR size(holders) < :max "
                "OR contains(holders, :id)) AND (attribute_not_exists(paused_until) OR paused_until < :now)",
                ExpressionAttributeValues={":job": {job_id}, ":id": job_id, ":max": self._max, ":now": iso(now)},
                ReturnValues="ALL_NEW",
            )
        except self._conditional_failure:
            return None
        attributes: dict[str, Any] = dict(result.get("Attributes", {}))
        return Slot(rate_limit_streak=int(attributes.get("consecutive_rate_limits", 0)))

    def release(self, job_id: str) -> bool:
        """Free the job's slot; True only for the call that actually freed it."""
        try:
            self._table.update_item(
                Key={"job_id": CAPACITY_KEY},
                UpdateExpression="DELETE holders :job",
                ConditionExpression="contains(holders, :id)",
                ExpressionAttributeValues={":job": {job_id}, ":id": job_id},
            )
        except self._conditional_failure:
            return False
        return True

    def state(self) -> CapacityState:
        item: dict[str, Any] = self._table.get_item(Key={"job_id": CAPACITY_KEY}, ConsistentRead=True).get("Item") or {}
        return CapacityState(
            holders=frozenset(str(h) for h in item.get("holders", set())),
            paused_until=item.get("paused_until"),
            pause_reason=item.get("pause_reason"),
            consecutive_rate_limits=int(item.get("consecutive_rate_limits", 0)),
        )

    def free_slots(self, now: datetime | None = None) -> int:
        state = self.state()
        if state.paused_until and state.paused_until >= iso(now or utc_now()):
            return 0
        return max(0, self._max - len(state.holders))

    def wait_reason(self, job_id: str, now: datetime | None = None) -> str | None:
        """Why this job cannot have a slot now (admission paused after a 429, or every slot taken), else None.

        One read, so a job that has to wait costs no failed conditional write; a race after it is still settled
        by try_acquire's condition.
        """
        state = self.state()
        if state.paused_until and state.paused_until >= iso(now or utc_now()):
            return f"admission paused until {state.paused_until} ({state.pause_reason or 'provider rate limit'})"
        if job_id not in state.holders and len(state.holders) >= self._max:
            return SLOTS_TAKEN
        return None

    def pause(self, reason: str, retry_after: float | None, now: datetime | None = None) -> Pause:
        """The provider said 429 although we had a slot: stop admitting for Retry-After or an exponential back-off.

        The account may be shared with other systems, so our own count is not the whole truth.
        Returns when admission resumes.
        """
        now = now or utc_now()
        streak = self.state().consecutive_rate_limits
        if retry_after is None:
            backoff = min(MAX_BACKOFF_SECONDS, BASE_BACKOFF_SECONDS * 2**streak)
            retry_after = backoff * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not security
        until = iso(now + timedelta(seconds=retry_after))
        self._table.update_item(
            Key={"job_id": CAPACITY_KEY},
            UpdateExpression="SET paused_until = :until, pause_reason = :reason ADD consecutive_rate_limits :one",
            ExpressionAttributeValues={":until": until, ":reason": reason[:500], ":one": 1},
        )
        return Pause(until, retry_after)

    def record_success(self) -> None:
        """A submit went through: the provider has room again, so the back-off streak starts over."""
        with contextlib.suppress(self._conditional_failure):  # no streak: nothing to reset
            self._table.update_item(
                Key={"job_id": CAPACITY_KEY},
                UpdateExpression="REMOVE consecutive_rate_limits, pause_reason",
                ConditionExpression="attribute_exists(consecutive_rate_limits)",
            )


class LookupBudget:
    """The provider's limit on status lookups per minute (20 / 200 / 500 by plan), shared by every function.

    One counter per calendar minute on the capacity item: taking a lookup is a conditional ADD within the minute,
    or a reset when a new minute has begun.
    """

    def __init__(self, table: Table, per_minute: int) -> None:
        self._table = table
        self._per_minute = per_minute
        self._conditional_failure = table.meta.client.exceptions.ConditionalCheckFailedException

    def take(self, now: datetime | None = None) -> float:
        """Take one lookup: 0.0 when granted, else the seconds until the next minute's budget."""
        now = now or utc_now()
        window = now.strftime("%Y-%m-%dT%H:%M")
        within_minute = ("ADD lookups :one", "lookup_window = :window AND lookups < :limit")
        new_minute = (
            "SET lookup_window = :window, lookups = :one",
            "attribute_not_exists(lookups) OR lookup_window <> :window",
        )
        for update, condition in (within_minute, new_minute):
            values: dict[str, Any] = {":window": window, ":one": 1}
            if ":limit" in condition:
                values[":limit"] = self._per_minute
            try:
                self._table.update_item(
                    Key={"job_id": CAPACITY_KEY},
                    UpdateExpression=update,
                    ConditionExpression=condition,
                    ExpressionAttributeValues=values,
                )
            except self._conditional_failure:
                continue
            return 0.0
        return 60.0 - now.second - now.microsecond / 1e6
