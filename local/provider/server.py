"""A local MusicGPT-compatible denoise provider: the documented HTTP contract on 127.0.0.1, with a real denoiser.

Endpoints (the first three are MusicGPT's, byte for byte as far as its documentation goes; see shared DESIGN.md):

* ``POST /api/public/v1/denoise`` - multipart ``audio_url`` | ``audio_file``, optional ``webhook_url``;
  ``Authorization: <api key>``. 200 ``{success, task_id, conversion_id, eta, credit_estimate, message, status}``;
  401 bad key; 422 no audio; 429 when ``max_parallel`` jobs are in flight.
* ``GET /api/public/v1/byId?conversionType=DENOISING&task_id=...`` (or ``&conversion_id=...``).
* ``GET /files/<name>`` - the outputs the webhook points at.
* ``GET /_local/stats`` - a private extension for tests and benchmarks (no key needed): see ``ProviderStats``.

A job: fetch ``audio_url`` (or take the upload) -> denoise (``engine.denoise_file``) -> POST the webhook. It is
*in flight* from acceptance until its webhook was delivered or given up on (or, without a webhook, until the audio is
processed); that is what ``max_parallel`` limits, like the provider's per-plan limit on parallel jobs.

Choices where the provider's documentation is silent: ``conversion_duration`` is the input's duration in seconds;
``conversion_cost`` is the configured credit estimate (a string in the webhook as documented, a number in byId as in
its documented example); ``audio_path`` is ``files/<conversion_id>.wav`` (the path is reported, not served); a
failed job's webhook is ``{success: false, conversion_type, task_id, conversion_id, message}``.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit, urlunsplit

import requests
from flask import Flask, Response, jsonify, request, send_from_directory
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import HTTPException
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from local.provider.engine import DEFAULT_ATTENUATION_LIMIT_DB, UnreadableAudio, denoise_file

log = logging.getLogger(__name__)

API_PREFIX: Final[str] = "/api/public/v1"
CONVERSION_TYPE: Final[str] = "DENOISING"
COMPLETED_MESSAGE: Final[str] = "de_noising conversion Completed"
QUEUED_MESSAGE: Final[str] = "Message published to queue"
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*\.(mp3|wav)$")
_MIME: Final[dict[str, str]] = {"mp3": "audio/mpeg", "wav": "audio/wav"}
_CHUNK: Final[int] = 1 << 16

Status = Literal["IN_QUEUE", "PROCESSING", "COMPLETED", "FAILED"]
WebhookState = Literal["pending", "delivered", "failed", "disabled", "none"]


def _env_bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """Options of the local provider. ``ProviderConfig.from_env()`` reads ``LOCAL_MUSICGPT_*`` variables."""

    api_key: str = "local-musicgpt-key"
    host: str = "127.0.0.1"
    port: int = 0
    """0 = any free port; read the real one from ``LocalMusicGPT.base_url``."""
    max_parallel: int = 2
    """Jobs in flight allowed at once (MusicGPT plans: 2 / 5 / 10); one more is answered 429."""
    workers: int | None = None
    """Threads that denoise; default ``min(max_parallel, cpu count)``. Jobs beyond wait ``IN_QUEUE``."""
    attenuation_limit_db: float = DEFAULT_ATTENUATION_LIMIT_DB
    eta: int = 10
    """``eta`` answered on submission (seconds)."""
    credit_estimate: float = 0.48
    """``credit_estimate`` on submission, and the ``conversion_cost`` of every job."""
    output_dir: Path | None = None
    """Where outputs (and transient inputs) live; default a temporary directory removed by ``stop()``."""
    deliver_webhooks: bool = True
    """False = process jobs but never POST webhooks (to test lost-webhook paths: use byId)."""
    retry_after: int | None = None
    """If set, 429 answers carry ``Retry-After: <seconds>`` (MusicGPT documents none)."""
    min_job_seconds: float = 0.0
    """A job takes at least this long before its webhook (to simulate a slow provider)."""
    fetch_timeout: float = 30.0
    """Read timeout for fetching ``audio_url`` (connect timeout is 5 s)."""
    max_input_bytes: int = 512 * 1024 * 1024
    webhook_timeout: float = 10.0
    webhook_attempts: int = 4
    """Delivery attempts on connection errors, timeouts and 5xx (backoff 0.25 s, 0.5 s, 1 s, ...)."""
    webhook_backoff: float = 0.25
    log_requests: bool = False

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> ProviderConfig:
        env = os.environ if environ is None else environ
        p = "LOCAL_MUSICGPT_"
        values: dict[str, Any] = {}
        conv: dict[str, Callable[[str], Any]] = {
            "api_key": str,
            "host": str,
            "port": int,
            "max_parallel": int,
            "workers": int,
            "attenuation_limit_db": float,
            "eta": int,
            "credit_estimate": float,
            "output_dir": Path,
            "deliver_webhooks": _env_bool,
            "retry_after": int,
            "min_job_seconds": float,
        }
        for name, convert in conv.items():
            raw = env.get(p + name.upper())
            if raw not in (None, ""):
                values[name] = convert(raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass(slots=True)
class Job:
    """One accepted submission. ``LocalMusicGPT.job()`` returns copies."""

    task_id: str
    conversion_id: str
    source: str
    """What was submitted: the ``audio_url`` without its query string, or ``upload:sha256:<hex>``."""
    audio_url: str | None
    webhook_url: str | None
    input_path: Path | None
    """Uploaded file (set at submission) or fetched file (set by the worker); deleted after processing."""
    created_at: datetime
    updated_at: datetime
    status: Status = "IN_QUEUE"
    status_msg: str = "Queued"
    conversion_duration: float | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    """``no_noise``, ``no_noise_wav``, ``noise``, ``noise_wav`` -> URL, once COMPLETED."""
    webhook: WebhookState = "none"
    webhook_attempts: int = 0
    webhook_payload: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ProviderStats:
    in_flight: int
    peak_in_flight: int
    accepted: int
    """Submissions answered 200."""
    rejected_busy: int
    """Submissions answered 429."""
    completed: int
    failed: int
    webhooks_delivered: int
    webhooks_failed: int
    submissions_by_source: dict[str, int]
    """Accepted submissions per source (``audio_url`` minus query string - presigned URLs of one object differ only
    there - or ``upload:sha256:<hex>``). A value > 1 means the same input was submitted more than once."""
    submissions_by_url: dict[str, int]
    """Accepted submissions per exact ``audio_url``."""

    @property
    def duplicate_submissions(self) -> int:
        return sum(n - 1 for n in self.submissions_by_source.values() if n > 1)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["duplicate_submissions"] = self.duplicate_submissions
        return data


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def _error(status: int, message: str, **extra: Any) -> Response:
    response = jsonify({"success": False, "message": message, **extra})
    response.status_code = status
    return response


class _QuietHandler(WSGIRequestHandler):
    """No access log (werkzeug prints one line per request otherwise)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return


class LocalMusicGPT:
    """The local provider. ``start()`` binds and serves in a background thread; ``stop()`` shuts it down.

    Usable as a context manager. Thread-safe accessors: ``stats()``, ``job()``, ``jobs()``, ``wait_idle()``.
    """

    def __init__(self, config: ProviderConfig | None = None) -> None:
        self.config = config or ProviderConfig()
        if self.config.max_parallel < 1:
            raise ValueError("max_parallel must be >= 1")
        self._lock = threading.Condition()
        self._jobs: dict[str, Job] = {}
        self._by_conversion: dict[str, str] = {}
        self._in_flight = 0
        self._peak = 0
        self._accepted = 0
        self._rejected = 0
        self._completed = 0
        self._failed = 0
        self._hooks_ok = 0
        self._hooks_failed = 0
        self._by_source: Counter[str] = Counter()
        self._by_url: Counter[str] = Counter()
        self._stopping = threading.Event()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._tmp_dir: Path | None = None
        self._out_dir: Path | None = None
        self._http = requests.Session()
        self.app = self._make_app()

    # --- lifecycle -------------------------------------------------------------------------------------------------

    def start(self) -> LocalMusicGPT:
        if self._server is not None:
            raise RuntimeError("already started")
        cfg = self.config
        if cfg.output_dir is None:
            self._tmp_dir = Path(tempfile.mkdtemp(prefix="local-musicgpt-"))
            self._out_dir = self._tmp_dir
        else:
            self._out_dir = Path(cfg.output_dir).resolve()
            self._out_dir.mkdir(parents=True, exist_ok=True)
        (self._out_dir / "incoming").mkdir(exist_ok=True)
        workers = cfg.workers or max(1, min(cfg.max_parallel, os.cpu_count() or 1))
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="musicgpt-job")
        self._stopping.clear()
        handler = WSGIRequestHandler if cfg.log_requests else _QuietHandler
        self._server = make_server(cfg.host, cfg.port, self.app, threaded=True, request_handler=handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="musicgpt-http", daemon=True)
        self._thread.start()
        log.info("local MusicGPT listening on %s", self.base_url)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving, give running jobs ``timeout`` seconds to end (queued ones are dropped), remove temp files."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            deadline = time.monotonic() + timeout
            for thread in list(getattr(self._pool, "_threads", ())):
                thread.join(max(0.0, deadline - time.monotonic()))
        self._server = self._thread = self._pool = None
        self._http.close()
        if self._tmp_dir is not None:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)
            self._tmp_dir = None

    def __enter__(self) -> LocalMusicGPT:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("not started")
        return int(self._server.server_port)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``: outputs are ``{base_url}/files/...``."""
        return f"http://{self.config.host}:{self.port}"

    @property
    def api_base_url(self) -> str:
        """What a MusicGPT client takes as its base (``.../api/public/v1``)."""
        return self.base_url + API_PREFIX

    @property
    def output_dir(self) -> Path:
        if self._out_dir is None:
            raise RuntimeError("not started")
        return self._out_dir

    # --- accessors ---------------------------------------------------------------------------------------------------

    def stats(self) -> ProviderStats:
        with self._lock:
            return ProviderStats(
                in_flight=self._in_flight,
                peak_in_flight=self._peak,
                accepted=self._accepted,
                rejected_busy=self._rejected,
                completed=self._completed,
                failed=self._failed,
                webhooks_delivered=self._hooks_ok,
                webhooks_failed=self._hooks_failed,
                submissions_by_source=dict(self._by_source),
                submissions_by_url=dict(self._by_url),
            )

    def job(self, task_id: str) -> Job | None:
        with self._lock:
            found = self._jobs.get(task_id)
            return None if found is None else replace(found, outputs=dict(found.outputs))

    def jobs(self) -> list[Job]:
        with self._lock:
            return [replace(j, outputs=dict(j.outputs)) for j in self._jobs.values()]

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until no job is in flight; False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: self._in_flight == 0, timeout)

    # --- HTTP --------------------------------------------------------------------------------------------------------

    def _make_app(self) -> Flask:
        app = Flask(__name__)
        app.config["MAX_CONTENT_LENGTH"] = self.config.max_input_bytes
        app.add_url_rule(f"{API_PREFIX}/denoise", "denoise", self._submit, methods=["POST"])
        app.add_url_rule(f"{API_PREFIX}/byId", "by_id", self._by_id, methods=["GET"])
        app.add_url_rule("/files/<name>", "files", self._file, methods=["GET"])
        app.add_url_rule("/_local/stats", "stats", lambda: jsonify(self.stats().to_dict()), methods=["GET"])

        @app.errorhandler(HTTPException)
        def http_error(exc: HTTPException) -> Response:
            return _error(exc.code or 500, exc.description or exc.name, detail=exc.name)

        @app.errorhandler(Exception)
        def internal_error(exc: Exception) -> Response:
            log.exception("local MusicGPT: unhandled error")
            return _error(500, f"internal error: {type(exc).__name__}")

        return app

    def _authorized(self) -> bool:
        given = request.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), self.config.api_key.encode())

    def _submit(self) -> Response:
        if not self._authorized():
            return _error(401, "Invalid or missing API key", detail="Unauthorized")
        audio_url = (request.form.get("audio_url") or "").strip()
        upload: FileStorage | None = request.files.get("audio_file")
        if upload is not None and not upload.filename:
            upload = None
        if not audio_url and upload is None:
            msg = "audio_url or audio_file is required"
            return _error(422, msg, detail=[{"loc": ["body", "audio_url"], "msg": msg, "type": "value_error"}])
        webhook_url = (request.form.get("webhook_url") or "").strip() or None
        with self._lock:
            if self._in_flight >= self.config.max_parallel:
                self._rejected += 1
                busy = _error(
                    429,
                    f"Too many parallel jobs: {self._in_flight} in flight, the limit is {self.config.max_parallel}",
                    detail="Too Many Requests",
                )
                if self.config.retry_after is not None:
                    busy.headers["Retry-After"] = str(self.config.retry_after)
                return busy
            self._in_flight += 1  # reserve the slot before the (possibly long) upload save
            self._peak = max(self._peak, self._in_flight)
        try:
            job = self._new_job(audio_url or None, upload, webhook_url)
            if self._pool is None or self._stopping.is_set():
                raise RuntimeError("the provider is stopping")
            self._pool.submit(self._run_job, job.task_id)
        except BaseException:
            self._finish_flight()
            raise
        body = {
            "success": True,
            "task_id": job.task_id,
            "conversion_id": job.conversion_id,
            "eta": self.config.eta,
            "credit_estimate": self.config.credit_estimate,
            "message": QUEUED_MESSAGE,
            "status": "IN_QUEUE",
        }
        return jsonify(body)

    def _new_job(self, audio_url: str | None, upload: FileStorage | None, webhook_url: str | None) -> Job:
        task_id, conversion_id = str(uuid.uuid4()), str(uuid.uuid4())
        input_path: Path | None = None
        if audio_url is not None:
            parts = urlsplit(audio_url)
            source = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        else:
            assert upload is not None
            suffix = Path(upload.filename or "").suffix[:8] if upload.filename else ""
            input_path = self.output_dir / "incoming" / f"{conversion_id}{suffix if _safe_suffix(suffix) else ''}"
            digest = hashlib.sha256()
            with input_path.open("wb") as out:
                while chunk := upload.stream.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            source = f"upload:sha256:{digest.hexdigest()}"
        now = _now()
        job = Job(task_id, conversion_id, source, audio_url, webhook_url, input_path, now, now)
        with self._lock:
            self._jobs[task_id] = job
            self._by_conversion[conversion_id] = task_id
            self._accepted += 1
            self._by_source[source] += 1
            if audio_url is not None:
                self._by_url[audio_url] += 1
        return job

    def _by_id(self) -> Response:
        if not self._authorized():
            return _error(401, "Invalid or missing API key", detail="Unauthorized")
        conversion_type = request.args.get("conversionType")
        task_id, conversion_id = request.args.get("task_id"), request.args.get("conversion_id")
        if not conversion_type:
            return _error(422, "conversionType is required", detail="conversionType is required")
        if bool(task_id) == bool(conversion_id):
            return _error(400, "Provide exactly one of task_id or conversion_id")
        with self._lock:
            key = task_id or self._by_conversion.get(conversion_id or "", "")
            found = self._jobs.get(key)
            if found is None or conversion_type != CONVERSION_TYPE:
                return _error(404, "Conversion not found")
            job = replace(found, outputs=dict(found.outputs))
        done = job.status == "COMPLETED"
        conversion = {
            "task_id": job.task_id,
            "conversion_id": job.conversion_id,
            "status": job.status,
            "status_msg": job.status_msg,
            "audio_url": job.audio_url,
            "conversion_cost": self.config.credit_estimate if done else None,
            "conversion_duration": job.conversion_duration,
            "createdAt": _iso(job.created_at),
            "updatedAt": _iso(job.updated_at),
            **{name: job.outputs.get(name) for name in ("no_noise", "no_noise_wav", "noise", "noise_wav")},
        }
        return jsonify({"success": True, "conversion": conversion})

    def _file(self, name: str) -> Response:
        match = _FILE_NAME.match(name)
        if match is None or not (self.output_dir / name).is_file():
            return _error(404, "File not found")
        response = send_from_directory(self.output_dir, name, mimetype=_MIME[match.group(1)], max_age=0)
        # The stdlib request handler always sends its own Date header; a second one from send_file would duplicate it.
        del response.headers["Date"]
        return response

    # --- jobs --------------------------------------------------------------------------------------------------------

    def _update(self, task_id: str, **changes: Any) -> Job:
        with self._lock:
            job = self._jobs[task_id]
            for key, value in changes.items():
                setattr(job, key, value)
            job.updated_at = _now()
            return replace(job, outputs=dict(job.outputs))

    def _finish_flight(self) -> None:
        with self._lock:
            self._in_flight -= 1
            self._lock.notify_all()

    def _run_job(self, task_id: str) -> None:
        started = time.monotonic()
        try:
            job = self._update(task_id, status="PROCESSING", status_msg="Processing")
            payload = self._process(job)
            remaining = self.config.min_job_seconds - (time.monotonic() - started)
            if remaining > 0:
                self._stopping.wait(remaining)
            self._notify(task_id, payload)
        except Exception:  # a bug here must not leak the in-flight slot
            log.exception("local MusicGPT: job %s crashed", task_id)
            with self._lock:
                job = self._jobs[task_id]
                if job.status not in ("COMPLETED", "FAILED"):
                    job.status, job.status_msg = "FAILED", "internal error"
                    self._failed += 1
        finally:
            self._finish_flight()

    def _process(self, job: Job) -> dict[str, Any]:
        """Fetch + denoise; returns the webhook payload (success or failure) and records the outcome."""
        failure: str | None = None
        outputs: dict[str, str] = {}
        duration = 0.0
        src = job.input_path
        try:
            if src is None:
                assert job.audio_url is not None
                src = self._fetch(job)
            result = denoise_file(src, self.output_dir, job.conversion_id, self.config.attenuation_limit_db)
            duration = round(result.duration_seconds, 3)
            files = {
                "no_noise": result.no_noise_mp3,
                "no_noise_wav": result.no_noise_wav,
                "noise": result.noise_mp3,
                "noise_wav": result.noise_wav,
            }
            outputs = {name: f"{self.base_url}/files/{path.name}" for name, path in files.items()}
        except _FetchError as exc:
            failure = f"could not fetch audio_url: {exc}"
        except UnreadableAudio as exc:
            failure = f"unreadable audio: {exc}"
        except Exception as exc:
            log.exception("local MusicGPT: conversion %s failed", job.conversion_id)
            failure = f"conversion failed: {type(exc).__name__}"
        finally:
            if src is not None:
                src.unlink(missing_ok=True)
        common = {"conversion_type": "Denoise", "task_id": job.task_id, "conversion_id": job.conversion_id}
        if failure is not None:
            self._update(job.task_id, status="FAILED", status_msg=failure)
            with self._lock:
                self._failed += 1
            return {"success": False, **common, "message": failure}
        self._update(
            job.task_id, status="COMPLETED", status_msg=COMPLETED_MESSAGE, outputs=outputs, conversion_duration=duration
        )
        with self._lock:
            self._completed += 1
        return {
            "success": True,
            **common,
            "audio_path": f"files/{job.conversion_id}.wav",
            **outputs,
            "message": COMPLETED_MESSAGE,
            "conversion_duration": duration,
            "conversion_cost": f"{self.config.credit_estimate:.2f}",
        }

    def _fetch(self, job: Job) -> Path:
        assert job.audio_url is not None
        suffix = Path(urlsplit(job.audio_url).path).suffix[:8]
        path = self.output_dir / "incoming" / f"{job.conversion_id}{suffix if _safe_suffix(suffix) else ''}"
        try:
            with self._http.get(job.audio_url, stream=True, timeout=(5.0, self.config.fetch_timeout)) as response:
                if response.status_code != 200:
                    raise _FetchError(f"HTTP {response.status_code}")
                size = 0
                with path.open("wb") as out:
                    for chunk in response.iter_content(_CHUNK):
                        size += len(chunk)
                        if size > self.config.max_input_bytes:
                            raise _FetchError(f"larger than {self.config.max_input_bytes} bytes")
                        out.write(chunk)
        except requests.RequestException as exc:
            path.unlink(missing_ok=True)
            raise _FetchError(type(exc).__name__) from exc
        except _FetchError:
            path.unlink(missing_ok=True)
            raise
        self._update(job.task_id, input_path=path)
        return path

    def _notify(self, task_id: str, payload: dict[str, Any]) -> None:
        with self._lock:
            url = self._jobs[task_id].webhook_url
        if url is None:
            return
        if not self.config.deliver_webhooks:
            self._update(task_id, webhook="disabled", webhook_payload=payload)
            return
        self._update(task_id, webhook="pending", webhook_payload=payload)
        attempts = 0
        delivered = False
        for attempt in _backoff(self.config.webhook_attempts, self.config.webhook_backoff, self._stopping):
            attempts = attempt
            try:
                response = self._http.post(url, json=payload, timeout=(5.0, self.config.webhook_timeout))
            except requests.RequestException as exc:
                log.warning("webhook for %s: attempt %d: %s", task_id, attempt, type(exc).__name__)
                continue
            if response.status_code < 500:
                delivered = response.status_code < 400
                if not delivered:
                    log.warning("webhook for %s refused: HTTP %d", task_id, response.status_code)
                break
            log.warning("webhook for %s: attempt %d: HTTP %d", task_id, attempt, response.status_code)
        self._update(task_id, webhook="delivered" if delivered else "failed", webhook_attempts=attempts)
        with self._lock:
            if delivered:
                self._hooks_ok += 1
            else:
                self._hooks_failed += 1


class _FetchError(Exception):
    pass


def _safe_suffix(suffix: str) -> bool:
    return re.fullmatch(r"\.[A-Za-z0-9]{1,7}", suffix) is not None


def _backoff(attempts: int, base: float, stop: threading.Event) -> Iterator[int]:
    """Yield attempt numbers 1..attempts, sleeping base, 2*base, 4*base... between them (cut short by ``stop``)."""
    for attempt in range(1, max(1, attempts) + 1):
        if attempt > 1 and stop.wait(base * 2 ** (attempt - 2)):
            return
        yield attempt


@contextlib.contextmanager
def running(config: ProviderConfig | None = None) -> Iterator[LocalMusicGPT]:
    """``with running(ProviderConfig(...)) as provider: ...`` - start, yield, stop."""
    provider = LocalMusicGPT(config).start()
    try:
        yield provider
    finally:
        provider.stop()
