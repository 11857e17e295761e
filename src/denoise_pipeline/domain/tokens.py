"""Webhook URL tokens: MusicGPT does not sign callbacks, so the callback URL itself is the credential.

token = base64url(HMAC-SHA256(signing_secret, "v1:" + job_id)) without padding. The "v1:" prefix versions the
scheme; rotation keeps old tokens valid by verifying against the previous secret too (AWSPREVIOUS).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Sequence

TOKEN_VERSION = "v1"  # noqa: S105 - a scheme version, not a secret


def sign(secret: str, job_id: str) -> str:
    digest = hmac.new(secret.encode("utf-8"), f"{TOKEN_VERSION}:{job_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def verify(secrets: Sequence[str], job_id: str, token: str) -> bool:
    """True if `token` was made for `job_id` with one of `secrets`. Fails closed: no secret or no token → False."""
    if not token or not job_id:
        return False
    given = token.encode("utf-8", "surrogatepass")
    matched = False
    for secret in secrets:
        if secret:
            matched |= hmac.compare_digest(sign(secret, job_id).encode("ascii"), given)
    return matched


class WebhookLinks:
    """`{HttpApiUrl}/webhooks/{job_id}/{token}`; the secret is fetched (and cached) by `secret`."""

    def __init__(self, base_url: str, secret: Callable[[], str]) -> None:
        self._base_url = base_url.rstrip("/")
        self._secret = secret

    def url_for(self, job_id: str) -> str:
        return f"{self._base_url}/webhooks/{job_id}/{sign(self._secret(), job_id)}"
