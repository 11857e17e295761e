"""Fixtures of the fault-injection suite: short timeouts, an output file server, DynamoDB writes made atomic.

Real DynamoDB applies a conditional write atomically. moto checks the condition and writes the item in Python, so
two threads can interleave between the two steps and both "win"; the suite serialises moto's item writes (reads are
left free) so that a race test measures our code, not the emulator.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from moto.dynamodb.models import DynamoDBBackend

from tests.file_server import OutputFileServer, output_file_server
from tests.provider_double import ProviderDouble

_WRITE_LOCK = threading.RLock()


def _atomic(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with _WRITE_LOCK:
            return method(*args, **kwargs)

    return locked


@pytest.fixture(autouse=True)
def atomic_dynamodb_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("put_item", "update_item", "delete_item", "transact_write_items"):
        monkeypatch.setattr(DynamoDBBackend, name, _atomic(getattr(DynamoDBBackend, name)))


@pytest.fixture
def files() -> Iterator[OutputFileServer]:
    with output_file_server() as server:
        yield server


@pytest.fixture
def stack_overrides(files: OutputFileServer) -> dict[str, str]:
    return {"OutputHostAllowlist": f"lalals.s3.amazonaws.com,{files.origin}"}


@pytest.fixture
def env_overrides(provider: ProviderDouble) -> dict[str, str]:
    """One quick in-client retry, short timeouts, and a reconciler that considers a job stale after a second."""
    return {
        "MUSICGPT_API_URL": provider.base_url,
        "PROVIDER_MAX_RETRIES": "1",
        "PROVIDER_CONNECT_TIMEOUT_SECONDS": "0.5",
        "PROVIDER_READ_TIMEOUT_SECONDS": "3",
        "STALE_AFTER_SECONDS": "1",
        "MAX_JOB_AGE_SECONDS": "60",
        "MAX_COPY_ATTEMPTS": "3",
        "COPY_READ_TIMEOUT_SECONDS": "5",
    }
