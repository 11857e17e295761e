"""Fixtures of the fault-injection suite: short timeouts and a reconciler that finds jobs stale at once.

The output file server and atomic moto DynamoDB requests come from tests/conftest.py.
"""

from __future__ import annotations

import pytest

from tests.provider_double import ProviderDouble


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
        "COPY_RETRY_DELAY_SECONDS": "0",
    }
