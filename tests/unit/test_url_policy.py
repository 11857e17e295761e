from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from denoise_pipeline.adapters.output_copier import CopyError, OutputRefused, UrlPolicy

ALLOW = ("lalals.s3.amazonaws.com", "musicgpt.s3.amazonaws.com", "http://127.0.0.1:8765")


def resolver(addresses: dict[str, list[str]]) -> object:
    def resolve(host: str, port: int) -> Sequence[str]:
        if host not in addresses:
            raise OSError("no such host")
        return addresses[host]

    return resolve


def policy(addresses: dict[str, list[str]] | None = None) -> UrlPolicy:
    default = {"lalals.s3.amazonaws.com": ["52.216.1.1"], "musicgpt.s3.amazonaws.com": ["52.216.2.2"]}
    table = default if addresses is None else addresses
    return UrlPolicy(ALLOW, resolver=resolver(table))  # type: ignore[arg-type]


def test_allowlisted_https_host_with_public_addresses_passes() -> None:
    policy().check_resolved("https://lalals.s3.amazonaws.com/conversions/x_noise.wav?X-Amz-Signature=abc")


def test_explicit_origin_is_allowed_exactly() -> None:
    policy().check_resolved("http://127.0.0.1:8765/files/x.wav")
    with pytest.raises(OutputRefused):
        policy().check("http://127.0.0.1:8766/files/x.wav")
    with pytest.raises(OutputRefused):
        policy().check("https://127.0.0.1:8765/files/x.wav")


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.0.1", "169.254.169.254", "::1", "fd00::1", "0.0.0.0"]
)
def test_allowlisted_host_resolving_to_a_private_address_is_refused(address: str) -> None:
    with pytest.raises(OutputRefused, match="non-public"):
        policy({"lalals.s3.amazonaws.com": ["52.216.1.1", address]}).check_resolved(
            "https://lalals.s3.amazonaws.com/x.wav"
        )


def test_unresolvable_host_is_a_retryable_copy_error() -> None:
    with pytest.raises(CopyError) as caught:
        policy({}).check_resolved("https://lalals.s3.amazonaws.com/x.wav")
    assert not isinstance(caught.value, OutputRefused)


@given(st.text(max_size=80))
def test_arbitrary_text_passes_only_when_it_is_an_allowlisted_url(url: str) -> None:
    try:
        policy().check(url)
    except OutputRefused:
        return
    assert url.lower().startswith(
        ("https://lalals.s3.amazonaws.com", "https://musicgpt.s3.amazonaws.com", "http://127.0.0.1:8765")
    )
