"""HTTP adapter for the MusicGPT API: POST /denoise and GET /byId, with typed results and typed errors.

urllib3 directly, not requests: botocore has already loaded urllib3, while requests (with charset_normalizer, idna
and http.cookiejar) added about 60 ms, a fifth of `import boto3`, to every submit and reconcile cold start. What
requests added here (multipart fields, a pool with Retry, timeouts) is urllib3's own API.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from io import RawIOBase
from typing import IO, Any

import certifi
import urllib3
from urllib3.exceptions import HTTPError, InvalidHeader, MaxRetryError, ReadTimeoutError
from urllib3.response import BaseHTTPResponse
from urllib3.util.retry import Retry

from ..domain.outcome import ConversionOutcome, read_outcome
from ..domain.redaction import excerpt, scrub
from ..domain.refusals import InvalidCallback
from ..domain.submission import SubmitResult, parse_submit

RETRYABLE_STATUS_CODES = frozenset({500, 502, 503, 504})
MAX_RETRY_AFTER_SECONDS = 900.0


class ProviderError(Exception):
    """Any unsuccessful exchange with the provider; `message` is the provider's own words when it gave any."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        message = scrub(message)  # the provider may echo the presigned audio_url or the webhook token
        super().__init__(message)
        self.message = message
        self.status_code = status_code


class ProviderRetryableError(ProviderError):
    """Try again later: 5xx, timeouts, connection errors, an unreadable answer."""


class ProviderRateLimited(ProviderRetryableError):
    """429: the account's parallel-job or request limit is reached."""

    def __init__(self, message: str, *, retry_after: float | None) -> None:
        super().__init__(message, status_code=429)
        self.retry_after = retry_after


class ProviderAnswerUnreadable(ProviderError):
    """POST /denoise was answered without a task id we can read (not JSON, no task_id, a redirect).

    The provider may have created the job, so it is never sent again blindly: the job fails with this answer kept.
    """

    def __init__(self, message: str, *, answer: str, status_code: int | None = None) -> None:
        super().__init__(message, status_code=status_code)
        self.answer = excerpt(answer)


class ProviderRejectedError(ProviderError):
    """This request will never succeed as it is (400, 404, 409, 422 and other 4xx)."""


class ProviderAuthError(ProviderRejectedError):
    """401/403: the API key is wrong or revoked."""


class ProviderCreditsError(ProviderRejectedError):
    """402: the account has no credits left."""


@dataclass(frozen=True)
class AudioUpload:
    """An object to send as `audio_file`; `open_stream` may be called again when a retry needs the body anew."""

    filename: str
    size: int
    content_type: str
    open_stream: Callable[[], IO[bytes]]


class MusicGptClient:
    def __init__(
        self,
        base_url: str,
        api_key: Callable[[], str],
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_retries: int = 3,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key  # called per request, so a rotated key is picked up when the cache expires
        self._pool = urllib3.PoolManager(
            retries=_retries(max_retries),
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            ca_certs=certifi.where(),
            maxsize=10,  # connections kept per host, as requests kept: threads of one process may share a client
        )

    def submit_denoise(
        self, *, webhook_url: str, audio_url: str | None = None, audio_file: AudioUpload | None = None
    ) -> SubmitResult:
        if (audio_url is None) == (audio_file is None):
            raise ValueError("exactly one of audio_url and audio_file is required")
        headers = {"Authorization": self._api_key()}
        if audio_url is not None:
            body: Any = {"audio_url": audio_url, "webhook_url": webhook_url}
            response = self._send("POST", "/denoise", headers=headers, fields=body)
        else:
            assert audio_file is not None
            stream = MultipartStream({"webhook_url": webhook_url}, "audio_file", audio_file)
            headers |= {"Content-Type": stream.content_type, "Content-Length": str(len(stream))}
            response = self._send("POST", "/denoise", headers=headers, body=stream)
        return _submit_result(response)

    def get_status(self, *, task_id: str | None = None, conversion_id: str | None = None) -> ConversionOutcome:
        if (task_id is None) == (conversion_id is None):
            raise ValueError("exactly one of task_id and conversion_id is required")
        params = {"conversionType": "DENOISING"}
        params |= {"task_id": task_id} if task_id is not None else {"conversion_id": str(conversion_id)}
        response = self._send("GET", "/byId", headers={"Authorization": self._api_key()}, fields=params)
        body = _json_object(response)
        if body.get("success") is False and not isinstance(body.get("conversion"), dict):
            raise ProviderRetryableError(f"status lookup refused: {provider_message(response)}")
        try:
            return read_outcome(body, task_id=task_id)
        except InvalidCallback as exc:
            raise ProviderRetryableError(f"status lookup answer unusable: {exc.message}") from exc

    def _send(self, method: str, path: str, **kwargs: Any) -> BaseHTTPResponse:
        """`fields` become the query string of a GET and the multipart/form-data body of a POST."""
        try:
            response = self._pool.request(method, self._base_url + path, redirect=False, **kwargs)
        except HTTPError as exc:
            # Retries exhausted (MaxRetryError, its reason the last failure) or a failure no retry applies to.
            reason = exc.reason if isinstance(exc, MaxRetryError) else exc
            if isinstance(reason, ReadTimeoutError):
                message = "provider did not answer in time (ReadTimeout); it may have received the request"
                raise ProviderRetryableError(message) from exc
            raise ProviderRetryableError(f"provider unreachable: {type(reason).__name__}") from exc
        if response.status >= 400:
            raise _error_for(response)
        if not 200 <= response.status < 300 and method == "GET":
            raise ProviderRetryableError(f"provider answered HTTP {response.status}: {provider_message(response)}")
        return response


def _retries(max_retries: int) -> Retry:
    # POST is retried only where the request cannot have been processed: connection failures, and 5xx answers.
    # A read timeout is not retried here (the job may exist); the caller's own retry decides.
    # Retry-After is not slept on here: urllib3 would retry a 429 after sleeping it out inside the invocation (up to
    # the Lambda timeout); a 429 goes back to the caller as ProviderRateLimited, which pauses admission instead.
    return Retry(
        total=max_retries,
        connect=max_retries,
        read=0,
        status=max_retries,
        other=0,
        allowed_methods=frozenset({"GET", "POST"}),
        status_forcelist=RETRYABLE_STATUS_CODES,
        backoff_factor=0.5,
        backoff_jitter=0.5,
        backoff_max=8,
        respect_retry_after_header=False,
        raise_on_status=False,
    )


def _text(response: BaseHTTPResponse) -> str:
    """The body as text; the provider answers JSON, so UTF-8, and a stray byte never hides the rest."""
    return response.data.decode("utf-8", errors="replace")


def _error_for(response: BaseHTTPResponse) -> ProviderError:
    status = response.status
    message = f"HTTP {status}: {provider_message(response)}"
    if status == 429:
        return ProviderRateLimited(message, retry_after=parse_retry_after(response.headers.get("Retry-After")))
    if status in (401, 403):
        return ProviderAuthError(message, status_code=status)
    if status == 402:
        return ProviderCreditsError(message, status_code=status)
    if status >= 500 or status == 408:
        return ProviderRetryableError(message, status_code=status)
    return ProviderRejectedError(message, status_code=status)


def provider_message(response: BaseHTTPResponse) -> str:
    """The error body is undocumented: take `message`, `error` or `detail`, else a short excerpt of the text."""
    try:
        body = json.loads(response.data)
    except ValueError:
        body = None
    if isinstance(body, dict):
        for name in ("message", "error", "detail"):
            value = body.get(name)
            if value:
                return (value if isinstance(value, str) else json.dumps(value))[:500]
    text = " ".join(_text(response).split())
    return text[:300] or response.reason or "no message"


def parse_retry_after(value: str | None) -> float | None:
    """Seconds or an HTTP date, as urllib3 reads it, at most MAX_RETRY_AFTER_SECONDS; None when absent or garbage
    (the caller then backs off on its own schedule)."""
    if not value:
        return None
    try:
        return min(MAX_RETRY_AFTER_SECONDS, Retry().parse_retry_after(value))
    except (InvalidHeader, OverflowError, ValueError):
        return None


def _json_object(response: BaseHTTPResponse) -> dict[str, Any]:
    try:
        body = json.loads(response.data)
    except ValueError as exc:  # not JSON, or not UTF-8
        excerpt_text = " ".join(_text(response).split())[:200]
        message = f"provider answered HTTP {response.status} with non-JSON: {excerpt_text!r}"
        raise ProviderRetryableError(message) from exc
    if not isinstance(body, dict):
        message = f"provider answered HTTP {response.status} with a JSON {type(body).__name__}"
        raise ProviderRetryableError(message)
    return body


def _submit_result(response: BaseHTTPResponse) -> SubmitResult:
    """The answer to POST /denoise. Anything but a readable task id means the job may or may not exist there."""
    if not 200 <= response.status < 300:  # a redirect: never followed, as a POST must not be sent again
        message = f"provider answered HTTP {response.status} to the submission"
        raise ProviderAnswerUnreadable(message, answer=_text(response), status_code=response.status)
    try:
        body = _json_object(response)
    except ProviderRetryableError as exc:
        raise ProviderAnswerUnreadable(exc.message, answer=_text(response), status_code=response.status) from exc
    if body.get("success") is False:
        raise ProviderRejectedError(f"provider refused the job: {body.get('message') or body}")
    result = parse_submit(body)
    if result is None:
        message = "provider answer has no task_id"
        raise ProviderAnswerUnreadable(message, answer=_text(response), status_code=response.status)
    return result


class MultipartStream(RawIOBase):
    """A multipart/form-data body read piece by piece, so an audio_file upload never sits whole in memory.

    Its length is known up front (Content-Length) and `seek(0)` re-opens the source, so urllib3 can retry it.
    """

    def __init__(self, fields: dict[str, str], file_field: str, upload: AudioUpload) -> None:
        super().__init__()
        boundary = uuid.uuid4().hex
        self.content_type = f"multipart/form-data; boundary={boundary}"
        head = b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
            for name, value in fields.items()
        )
        filename = upload.filename.replace('"', "%22").replace("\r", "").replace("\n", "")
        head += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{filename}"\r\n'
            f"Content-Type: {upload.content_type}\r\n\r\n"
        ).encode()
        self._head = head
        self._tail = f"\r\n--{boundary}--\r\n".encode()
        self._upload = upload
        self._length = len(head) + upload.size + len(self._tail)
        self._position = 0
        self._parts: Iterator[bytes] = self._generate()
        self._pending = b""

    def __len__(self) -> int:
        return self._length

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = 0) -> int:
        if (offset, whence) != (0, 0):
            raise OSError("MultipartStream can only rewind to the start")
        self._parts = self._generate()
        self._pending = b""
        self._position = 0
        return 0

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while not self._pending:
            try:
                self._pending = next(self._parts)
            except StopIteration:
                return 0
        count = min(len(view), len(self._pending))
        view[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        self._position += count
        return count

    def _generate(self) -> Iterator[bytes]:
        yield self._head
        sent = 0
        with self._upload.open_stream() as stream:
            while chunk := stream.read(256 * 1024):
                sent += len(chunk)
                yield chunk
        if sent != self._upload.size:
            raise OSError(f"source changed while uploading: {sent} bytes read, {self._upload.size} expected")
        yield self._tail
