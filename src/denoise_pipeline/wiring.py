"""Builds the adapters once per Lambda container from the typed settings (the composition root)."""

from __future__ import annotations

import time
from datetime import timedelta
from functools import cache
from typing import TYPE_CHECKING

import boto3
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
from botocore.config import Config

from .capacity import CapacityGate
from .complete import CompletionDeps
from .events import EventPublisher
from .jobs import JobStore
from .musicgpt import MusicGptClient
from .queues import JobQueue
from .reconcile import ReconcilePolicy
from .settings import Settings
from .sources import InputObjects, WebhookLinks
from .submit import SubmitDeps
from .transfer import OutputCopier, UrlPolicy

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

AWS_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30)


class SecretUnavailable(RuntimeError):
    """A secret could not be read (deleted, access denied, Secrets Manager down); names the secret, never its value."""

    def __init__(self, secret_id: str, cause: Exception) -> None:
        super().__init__(f"cannot read secret {secret_id}: {cause}")
        self.secret_id = secret_id


class SecretReader:
    """Cached Secrets Manager reads through Powertools Parameters.

    The previous version (AWSPREVIOUS) is read by its own provider because Powertools' cache key ignores
    the version stage; it keeps webhook tokens of in-flight jobs valid across a rotation.
    """

    def __init__(self, max_age: int) -> None:
        self._max_age = max_age
        self._current = SecretsProvider(boto_config=AWS_CONFIG)
        self._previous = SecretsProvider(boto_config=AWS_CONFIG)
        self._no_previous_until: dict[str, float] = {}

    def current(self, secret_id: str) -> str:
        try:
            return str(self._current.get(secret_id, max_age=self._max_age))
        except GetParameterError as exc:
            raise SecretUnavailable(secret_id, exc) from exc

    def current_and_previous(self, secret_id: str) -> list[str]:
        secrets = [self.current(secret_id)]
        if self._no_previous_until.get(secret_id, 0.0) > time.monotonic():
            return secrets
        try:
            secrets.append(str(self._previous.get(secret_id, max_age=self._max_age, VersionStage="AWSPREVIOUS")))
        except GetParameterError:  # never rotated: no previous version; remember that as long as a value is cached
            self._no_previous_until[secret_id] = time.monotonic() + self._max_age
        return secrets


@cache
def settings() -> Settings:
    return Settings.from_env()


@cache
def _secrets() -> SecretReader:
    return SecretReader(settings().secret_max_age_seconds)


@cache
def _table() -> Table:
    return boto3.resource("dynamodb", config=AWS_CONFIG).Table(settings().jobs_table)


@cache
def _provider() -> MusicGptClient:
    config = settings()
    return MusicGptClient(
        config.api_url,
        lambda: _secrets().current(config.api_key_secret_id),
        connect_timeout=config.provider_connect_timeout,
        read_timeout=config.provider_read_timeout,
        max_retries=config.provider_max_retries,
    )


@cache
def _events() -> EventPublisher:
    config = settings()
    return EventPublisher(boto3.client("events", config=AWS_CONFIG), config.event_bus_name, config.output_bucket)


def signing_secrets() -> list[str]:
    return _secrets().current_and_previous(settings().signing_secret_id)


@cache
def submit_deps() -> SubmitDeps:
    """What the submit path needs; built on first use so a missing setting fails the first invocation loudly."""
    config = settings()
    config.require("webhook_base_url", "admission_queue_url")
    return SubmitDeps(
        store=JobStore(_table()),
        gate=CapacityGate(_table(), config.max_parallel_jobs),
        provider=_provider(),
        inputs=InputObjects(boto3.client("s3", config=AWS_CONFIG), config.presign_expiry_seconds),
        links=WebhookLinks(config.webhook_base_url, lambda: _secrets().current(config.signing_secret_id)),
        events=_events(),
        admission=JobQueue(boto3.client("sqs", config=AWS_CONFIG), config.admission_queue_url),
        mode=config.submit_mode,
        max_attempts=config.max_submit_attempts,
    )


@cache
def completion_deps() -> CompletionDeps:
    config = settings()
    config.require("copy_queue_url", "admission_queue_url")
    sqs = boto3.client("sqs", config=AWS_CONFIG)
    copier = OutputCopier(
        boto3.client("s3", config=AWS_CONFIG),
        UrlPolicy(config.output_allowlist),
        max_bytes=config.copy_max_bytes,
        connect_timeout=config.copy_connect_timeout,
        read_timeout=config.copy_read_timeout,
    )
    return CompletionDeps(
        store=JobStore(_table()),
        gate=CapacityGate(_table(), config.max_parallel_jobs),
        copier=copier,
        copy_queue=JobQueue(sqs, config.copy_queue_url),
        admission=JobQueue(sqs, config.admission_queue_url),
        events=_events(),
        output_bucket=config.output_bucket,
        output_prefix=config.output_prefix,
        max_copy_attempts=config.max_copy_attempts,
        provider=_provider(),
        confirm_with_status_lookup=config.confirm_with_status_lookup,
    )


def reconcile_policy() -> ReconcilePolicy:
    config = settings()
    return ReconcilePolicy(
        stale_after=timedelta(seconds=config.stale_after_seconds),
        max_age=timedelta(seconds=config.max_job_age_seconds),
        lookup_limit=config.reconcile_lookup_limit,
    )


def reset() -> None:
    """Forget every cached adapter and setting (tests and the local stack re-point the environment)."""
    for cached in (settings, _secrets, _table, _provider, _events, submit_deps, completion_deps):
        cached.cache_clear()
