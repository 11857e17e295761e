"""What the MusicGPT adapter makes of the provider's headers and texts: bounded pauses, no credentials kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from denoise_pipeline.adapters.musicgpt import MAX_RETRY_AFTER_SECONDS, ProviderError, parse_retry_after
from denoise_pipeline.domain.redaction import excerpt, scrub


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("", None),
        ("7", 7.0),
        (" 12 ", 12.0),
        ("0", 0.0),
        ("99999999999999999999999", MAX_RETRY_AFTER_SECONDS),  # huge: capped, not slept on for hours
        ("inf", None),  # garbage: the caller's own back-off
        ("NaN", None),
        ("-5", None),
        ("1.5", None),  # delay-seconds is an integer (RFC 9110)
        ("soon", None),
        ("Fri, 31 Dec 9999 23:59:59 GMT", MAX_RETRY_AFTER_SECONDS),
    ],
)
def test_retry_after_is_read_bounded_or_ignored(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds


def test_retry_after_as_an_http_date() -> None:
    in_a_minute = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    value = parse_retry_after(in_a_minute)
    assert value is not None
    assert 55 <= value <= 60


PRESIGNED = "https://in.s3.amazonaws.com/u/a.wav?X-Amz-Algorithm=AWS4&X-Amz-Credential=AKIAX%2F&X-Amz-Signature=f00d"
HOOK = "https://abc.execute-api.us-east-1.amazonaws.com/webhooks/0123456789abcdef0123456789abcdef/tOkEn-_123"


@pytest.mark.parametrize(
    "text",
    [
        f"could not download {PRESIGNED}",
        f'{{"detail": "bad webhook_url {HOOK}"}}',
        "X-Amz-Signature=f00d&AWSAccessKeyId=AKIAX in a sentence",
    ],
)
def test_provider_texts_lose_their_credentials(text: str) -> None:
    for cleaned in (scrub(text), ProviderError(f"HTTP 422: {text}").message, excerpt({"message": text})):
        assert "f00d" not in cleaned
        assert "AKIAX" not in cleaned
        assert "tOkEn" not in cleaned


def test_excerpts_are_bounded() -> None:
    assert len(excerpt({"big": "x" * 100_000})) == 4096
