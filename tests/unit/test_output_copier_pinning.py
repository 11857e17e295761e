"""The copier connects to the addresses the policy checked, never to a fresh answer for the name (no sockets here:
the connection step is replaced by a recorder; tests/integration/test_output_copier_http.py does it for real)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import boto3
import pytest
import urllib3.connection
from moto import mock_aws
from urllib3.exceptions import NewConnectionError

from denoise_pipeline.adapters.output_copier import (
    CopyDeadlineExceeded,
    CopyError,
    OutputCopier,
    OutputRefused,
    UrlPolicy,
)

BUCKET = "pinning-bucket"
HOST = "lalals.s3.amazonaws.com"


class ChangingDns:
    """A public answer first, a private one for every later question (DNS rebinding)."""

    def __init__(self, first: list[str], later: list[str]) -> None:
        self._first, self._later = first, later
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> Sequence[str]:
        self.calls.append(host)
        return self._first if len(self.calls) == 1 else self._later


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, str | None]]:
    """Every connection attempt (address, port, name presented for TLS); each one finds nobody listening."""
    seen: list[tuple[str, int, str | None]] = []

    def refuse(self: urllib3.connection.HTTPConnection) -> Any:
        seen.append((self.host, self.port, getattr(self, "server_hostname", None)))
        raise NewConnectionError(self, "nobody listens (test)")

    monkeypatch.setattr(urllib3.connection.HTTPConnection, "_new_conn", refuse)
    return seen


@pytest.fixture
def s3(aws_credentials: None) -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def test_connections_go_to_the_checked_addresses_presenting_the_name(
    s3: Any, connects: list[tuple[str, int, str | None]]
) -> None:
    dns = ChangingDns(["52.216.1.1", "2600:1f18::1"], ["127.0.0.1"])
    copier = OutputCopier(s3, UrlPolicy([HOST], resolver=dns), max_bytes=1024)
    with pytest.raises(CopyError, match="cannot connect") as caught:
        copier.copy(f"https://{HOST}/x.wav", BUCKET, "out.wav", content_type="audio/wav", metadata={})
    assert not isinstance(caught.value, OutputRefused)  # nobody answered: worth another attempt
    assert connects == [("52.216.1.1", 443, HOST), ("2600:1f18::1", 443, HOST)]
    assert dns.calls == [HOST]  # resolved once; the connection never asked again
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0


def test_a_name_resolving_to_a_private_address_is_never_connected(
    s3: Any, connects: list[tuple[str, int, str | None]]
) -> None:
    dns = ChangingDns(["52.216.1.1", "::ffff:169.254.169.254"], ["52.216.1.1"])
    copier = OutputCopier(s3, UrlPolicy([HOST], resolver=dns), max_bytes=1024)
    with pytest.raises(OutputRefused, match="non-public"):
        copier.copy(f"https://{HOST}/x.wav", BUCKET, "out.wav", content_type="audio/wav", metadata={})
    assert connects == []


def test_a_deadline_already_passed_connects_nowhere(s3: Any, connects: list[tuple[str, int, str | None]]) -> None:
    copier = OutputCopier(s3, UrlPolicy([HOST], resolver=ChangingDns(["52.216.1.1"], [])), max_bytes=1024)
    with pytest.raises(CopyDeadlineExceeded):
        copier.copy(f"https://{HOST}/x", BUCKET, "out", content_type="audio/wav", metadata={}, deadline=0.0)
    assert connects == []
