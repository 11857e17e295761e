"""The composition root: each function's workflow dependencies, built once per Lambda container from its settings.

Nothing is built at import time, so a handler module imports without any environment; the first invocation reads
the function's settings (a missing value fails it loudly) and builds the adapters, which later invocations reuse.
What only the submit and reconcile functions use (the provider's HTTP client, input objects, the submit and
reconcile workflows) is imported by the builders that need it, so the webhook function never loads it; the copy
worker's copier and workflow likewise, so neither do the submit and reconcile functions (nor a callback).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

from .adapters.capacity import CapacityGate, LookupBudget
from .adapters.event_bus import EventPublisher
from .adapters.job_store import JobStore
from .adapters.queues import JobQueue
from .adapters.reservations import Reservations
from .adapters.secrets import SecretReader
from .adapters.url_policy import UrlPolicy
from .domain.tokens import WebhookLinks
from .settings import (
    JobsSettings,
    ProviderSettings,
    ReconcileSettings,
    SubmitSettings,
    SubmittingSettings,
    WebhookSettings,
)
from .workflows.callback import CallbackDeps, LookupDeps, Recorder
from .workflows.lifecycle import Lifecycle

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

    from .adapters.musicgpt import MusicGptClient
    from .workflows.copy import CopyDeps
    from .workflows.reconcile import ReconcileDeps
    from .workflows.submit import SubmitDeps

AWS_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30)

_BUILDING = threading.RLock()


class _BuiltOnce[**P, T]:
    """Like `functools.cache`, under one lock: concurrent first calls (the fault tests run handlers on threads)
    build one set of clients, not one per thread."""

    def __init__(self, factory: Callable[P, T]) -> None:
        self._factory = factory
        self._built: dict[tuple[object, ...], T] = {}

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> T:
        key = (*args, *sorted(kwargs.items()))
        with _BUILDING:
            if key not in self._built:
                self._built[key] = self._factory(*args, **kwargs)
            return self._built[key]

    def cache_clear(self) -> None:
        with _BUILDING:
            self._built.clear()


def built_once[**P, T](factory: Callable[P, T]) -> _BuiltOnce[P, T]:
    return _BuiltOnce(factory)


# ---------------------------------------------------------------- settings, one per function
@built_once
def submit_settings() -> SubmitSettings:
    return SubmitSettings.from_env()


@built_once
def webhook_settings() -> WebhookSettings:
    return WebhookSettings.from_env()


@built_once
def reconcile_settings() -> ReconcileSettings:
    return ReconcileSettings.from_env()


# ---------------------------------------------------------------- what each function's workflows get
@built_once
def submit_deps() -> SubmitDeps:
    return _submit_deps(submit_settings())


@built_once
def callback_deps() -> CallbackDeps:
    config = webhook_settings()
    recorder = _recorder(config, config.copy_queue_url)
    return CallbackDeps(recorder, UrlPolicy(config.output_allowlist), config.confirm_every_callback)


@built_once
def lookup_deps() -> LookupDeps:
    """The submit function settles unclear callbacks with the status lookup (it holds the provider's key)."""
    config = submit_settings()
    recorder = _recorder(config, config.copy_queue_url)
    return LookupDeps(recorder, _provider(config, config.secret_max_age_seconds), _budget(config))


@built_once
def copy_deps() -> CopyDeps:
    from .adapters.output_copier import OutputCopier  # the copy worker's only: callbacks never load it
    from .workflows.copy import CopyDeps

    config = webhook_settings()
    copier = OutputCopier(
        boto3.client("s3", config=AWS_CONFIG),
        UrlPolicy(config.output_allowlist),
        max_bytes=config.copy_max_bytes,
        connect_timeout=config.copy_connect_timeout,
        read_timeout=config.copy_read_timeout,
        ca_bundle=config.output_ca_bundle or None,
        min_bytes_per_second=config.copy_min_bytes_per_second,
    )
    return CopyDeps(
        store=_store(config.jobs_table),
        lifecycle=_lifecycle(config),
        copier=copier,
        output_bucket=config.output_bucket,
        output_prefix=config.output_prefix,
        max_attempts=config.max_copy_attempts,
        copy_queue=JobQueue(boto3.client("sqs", config=AWS_CONFIG), config.copy_queue_url),
        retry_delay_seconds=config.copy_retry_delay_seconds,
    )


@built_once
def reconcile_deps() -> ReconcileDeps:
    from .workflows.reconcile import ReconcileDeps, ReconcilePolicy

    config = reconcile_settings()
    policy = ReconcilePolicy(
        stale_after=timedelta(seconds=config.stale_after_seconds),
        max_age=timedelta(seconds=config.max_job_age_seconds),
        lookup_limit=config.lookup_limit,
    )
    return ReconcileDeps(_submit_deps(config), _budget(config), policy)


def signing_secrets() -> list[str]:
    """The webhook signing secret, current and previous version (tokens stay valid across a rotation)."""
    config = webhook_settings()
    return _secrets(config.secret_max_age_seconds).current_and_previous(config.signing_secret_id)


def reset() -> None:
    """Forget every cached setting and adapter (tests and the local stack re-point the environment)."""
    for cached in (
        submit_settings,
        webhook_settings,
        reconcile_settings,
        submit_deps,
        lookup_deps,
        callback_deps,
        copy_deps,
        reconcile_deps,
        _secrets,
        _table,
        _provider,
        _lifecycle,
    ):
        cached.cache_clear()


# ---------------------------------------------------------------- shared pieces
def _submit_deps(config: SubmittingSettings) -> SubmitDeps:
    from .adapters.input_objects import InputObjects
    from .workflows.submit import SubmitDeps

    store = _store(config.jobs_table)
    secrets = _secrets(config.secret_max_age_seconds)
    return SubmitDeps(
        store=store,
        reservations=Reservations(store, _gate(config)),
        provider=_provider(config, config.secret_max_age_seconds),
        inputs=InputObjects(boto3.client("s3", config=AWS_CONFIG), config.presign_expiry_seconds),
        links=WebhookLinks(config.webhook_base_url, lambda: secrets.current(config.signing_secret_id)),
        lifecycle=_lifecycle(config),
        recorder=_recorder(config, config.copy_queue_url),
        mode=config.submit_mode,
        max_attempts=config.max_submit_attempts,
    )


def _recorder(config: JobsSettings, copy_queue_url: str) -> Recorder:
    copy_queue = JobQueue(boto3.client("sqs", config=AWS_CONFIG), copy_queue_url)
    return Recorder(_store(config.jobs_table), _lifecycle(config), copy_queue)


@built_once
def _lifecycle(config: JobsSettings) -> Lifecycle:
    return Lifecycle(
        store=_store(config.jobs_table),
        gate=_gate(config),
        admission=JobQueue(boto3.client("sqs", config=AWS_CONFIG), config.admission_queue_url),
        events=EventPublisher(boto3.client("events", config=AWS_CONFIG), config.event_bus_name),
    )


@built_once
def _provider(config: ProviderSettings, secret_max_age: int) -> MusicGptClient:
    from .adapters.musicgpt import MusicGptClient

    secrets = _secrets(secret_max_age)
    return MusicGptClient(
        config.api_url,
        lambda: secrets.current(config.api_key_secret_id),
        connect_timeout=config.connect_timeout,
        read_timeout=config.read_timeout,
        max_retries=config.max_retries,
    )


@built_once
def _secrets(max_age: int) -> SecretReader:
    return SecretReader(max_age, AWS_CONFIG)


@built_once
def _table(name: str) -> Table:
    return boto3.resource("dynamodb", config=AWS_CONFIG).Table(name)


def _store(table_name: str) -> JobStore:
    return JobStore(_table(table_name))


def _budget(config: SubmittingSettings) -> LookupBudget:
    return LookupBudget(_table(config.jobs_table), config.lookups_per_minute)


def _gate(config: JobsSettings) -> CapacityGate:
    return CapacityGate(_table(config.jobs_table), config.max_parallel_jobs)
