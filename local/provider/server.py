"""A local MusicGPT-compatible denoise provider: the documented HTTP contract on 127.0.0.1, with a real denoiser.

Endpoints (the first three are MusicGPT's, byte for byte as far as its documentation goes; see shared DESIGN.md):

* ``POST /api/public/v1/denoise`` - multipart ``audio_url`` | ``audio_file``, optional ``webhook_url``;
  ``Authorization: <api key>``. 200 ``{success, task_id, conversion_id, eta, credit_estimate, message, status}``;
  401 bad key; 422 no audio; 429 when ``max_parallel`` jobs are in flight.
* ``GET /api/public/v1/byId?conversionType=DENOISING&task_id=...`` (or ``&conversion_id=...``).
* ``GET /files/<name>`` - the outputs the webhook points at (with behaviour ``https``, only on the TLS listener,
  which serves the same app at ``output_base_url``).
* ``GET /_local/stats`` - a private extension for tests and benchmarks (no key needed): see ``ProviderStats``.

A job: fetch ``audio_url`` (or take the upload) -> denoise -> POST the webhook, on a job thread. The denoise runs in
a child forked per job from a zygote process that holds pristine DeepFilterNet states (``zygote.DenoiseRunner``:
started with the first job, stopped by ``stop()``), so a job does not pay the model load; if the zygote cannot start,
in the job thread (``engine.denoise_file``). Either way the outputs are exactly those of fresh states. It is
*in flight* from acceptance until its webhook was delivered or given up on (or, without a webhook, until the audio is
processed); that is what ``max_parallel`` limits, like the provider's per-plan limit on parallel jobs.

Choices where the provider's documentation is silent: ``conversion_duration`` is the input's duration in seconds;
``conversion_cost`` is the configured credit estimate (a string in the webhook as documented, a number in byId as in
its documented example); ``audio_path`` is ``files/<conversion_id>.wav`` (the path is reported, not served); a
failed job's webhook is ``{success: false, conversion_type, task_id, conversion_id, message}``.

``ProviderConfig.behaviours`` (``config.Behaviour``) make it depart from that sample the ways real integrations have
seen MusicGPT do: progress, duplicate and early callbacks, form or multipart bodies, numbers as strings, mp3-only or
status-shaped payloads, gzip-encoded or TLS-served outputs, outages. The README describes each.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import hmac
import logging
import os
import re
import shutil
import ssl
import tempfile
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit, urlunsplit

import requests
from flask import Flask, Response, jsonify, request, send_from_directory
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import HTTPException
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from local.provider.config import Behaviour, FlakyStep, ProviderConfig
from local.provider.engine import UnreadableAudio
from local.provider.wire import form_fields, outage, stringify
from local.provider.zygote import DenoiseRunner

__all__ = [
    "API_PREFIX",
    "Behaviour",
    "FlakyStep",
    "Job",
    "LocalMusicGPT",
    "ProviderConfig",
    "ProviderStats",
    "running",
]

log = logging.getLogger(__name__)

API_PREFIX: Final[str] = "/api/public/v1"
CONVERSION_TYPE: Final[str] = "DENOISING"
COMPLETED_MESSAGE: Final[str] = "de_noising conversion Completed"
QUEUED_MESSAGE: Final[str] = "Message published to queue"
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*\.(mp3|wav)$")
_MIME: Final[dict[str, str]] = {"mp3": "audio/mpeg", "wav": "audio/wav"}
_CHUNK: Final[int] = 1 << 16
OUTPUT_NAMES: Final[tuple[str, ...]] = ("no_noise", "no_noise_wav", "noise", "noise_wav")
"""The webhook's output fields, in its documented order."""
EARLY_ANSWER_SECONDS: Final[float] = 20.0
"""Behaviour ``early``: how long ``POST /denoise`` waits for the job's callbacks before answering anyway (clients
behind API Gateway give up at 30 s)."""

Status = Literal["IN_QUEUE", "PROCESSING", "COMPLETED", "FAILED"]
WebhookState = Literal["pending", "delivered", "failed", "disabled", "none"]


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
    """Offered output name (``no_noise``, ``no_noise_wav``, ``noise``, ``noise_wav``) -> URL, once COMPLETED."""
    webhook: WebhookState = "none"
    webhook_attempts: int = 0
    """POSTs of the final callback, retries and (behaviour ``duplicate``) every copy included."""
    webhook_payload: dict[str, Any] | None = None
    """The final callback's fields as sent (before form encoding)."""
    finished: bool = False
    """True once the job left flight: processed, and every callback delivered or given up on."""


@dataclass(frozen=True, slots=True)
class ProviderStats:
    in_flight: int
    peak_in_flight: int
    accepted: int
    """Submissions answered 200."""
    rejected_busy: int
    """Submissions answered 429 because ``max_parallel`` jobs were in flight."""
    completed: int
    failed: int
    webhooks_delivered: int
    """Jobs whose final callback was answered 2xx (once per job, however many copies were sent)."""
    webhooks_failed: int
    callbacks_sent: int
    """Every callback POST: progress, final, duplicate copies and retries."""
    callbacks_failed: int
    """Callback POSTs that got no answer or a non-2xx one."""
    scripted_errors: int
    """Answers of behaviour ``flaky``: scripted ``POST /denoise`` errors and byId 503s."""
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


def _offered_outputs(behaviours: frozenset[Behaviour]) -> tuple[str, ...]:
    """The outputs a job offers (and serves): ``mp3-only`` drops the wavs, ``status-only`` the noise files."""
    return tuple(
        name
        for name in OUTPUT_NAMES
        if not (Behaviour.MP3_ONLY in behaviours and name.endswith("_wav"))
        and not (Behaviour.STATUS_ONLY in behaviours and name.startswith("noise"))
    )


class _QuietHandler(WSGIRequestHandler):
    """No access log (werkzeug prints one line per request otherwise)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return


class LocalMusicGPT:
    """The local provider. ``start()`` binds and serves in background threads; ``stop()`` shuts it down.

    Usable as a context manager. Thread-safe accessors: ``stats()``, ``job()``, ``jobs()``, ``wait_idle()``.
    """

    def __init__(self, config: ProviderConfig | None = None) -> None:
        self.config = config or ProviderConfig()
        if self.config.max_parallel < 1:
            raise ValueError("max_parallel must be >= 1")
        self._behaviours = self.config.behaviours
        self._offered = _offered_outputs(self._behaviours)
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
        self._callbacks_sent = 0
        self._callbacks_failed = 0
        self._scripted = 0
        self._script: deque[FlakyStep] = deque(self.config.flaky_script)
        self._by_id_calls = 0
        self._by_source: Counter[str] = Counter()
        self._by_url: Counter[str] = Counter()
        self._stopping = threading.Event()
        self._servers: list[tuple[BaseWSGIServer, threading.Thread]] = []
        self._tls_port: int | None = None
        self._ca_path: Path | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._denoiser: DenoiseRunner | None = None
        self._tmp_dir: Path | None = None
        self._out_dir: Path | None = None
        self._http = requests.Session()
        self.app = self._make_app()

    # --- lifecycle -------------------------------------------------------------------------------------------------

    def start(self) -> LocalMusicGPT:
        if self._servers:
            raise RuntimeError("already started")
        cfg = self.config
        if cfg.output_dir is None:
            self._tmp_dir = Path(tempfile.mkdtemp(prefix="local-musicgpt-"))
            self._out_dir = self._tmp_dir
        else:
            self._out_dir = Path(cfg.output_dir).resolve()
            self._out_dir.mkdir(parents=True, exist_ok=True)
        for sub in ("incoming", "gzip"):
            (self._out_dir / sub).mkdir(exist_ok=True)
        workers = cfg.workers or max(1, min(cfg.max_parallel, os.cpu_count() or 1))
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="musicgpt-job")
        self._denoiser = DenoiseRunner(cfg.attenuation_limit_db)  # its zygote starts with the first job
        self._stopping.clear()
        handler = WSGIRequestHandler if cfg.log_requests else _QuietHandler
        self._serve(make_server(cfg.host, cfg.port, self.app, threaded=True, request_handler=handler), "http")
        if Behaviour.HTTPS in self._behaviours:
            context, self._ca_path = _local_tls(self._out_dir, cfg.host)
            tls = make_server(
                cfg.host, cfg.tls_port, self.app, threaded=True, request_handler=handler, ssl_context=context
            )
            self._tls_port = int(tls.server_port)
            self._serve(tls, "https")
        log.info("local MusicGPT listening on %s (outputs %s)", self.base_url, self.output_base_url)
        return self

    def _serve(self, server: BaseWSGIServer, name: str) -> None:
        # A short poll interval: ``shutdown()`` waits for the serving loop to notice (0.5 s by default, per listener).
        serve = partial(server.serve_forever, poll_interval=0.05)
        thread = threading.Thread(target=serve, name=f"musicgpt-{name}", daemon=True)
        thread.start()
        self._servers.append((server, thread))

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving, give running jobs ``timeout`` seconds to end (queued ones are dropped), stop the denoise
        zygote (a job still running then fails), remove temp files."""
        self._stopping.set()
        with self._lock:
            self._lock.notify_all()  # wakes ``early`` submissions waiting for their job
        for server, thread in self._servers:
            server.shutdown()
            server.server_close()
            thread.join(timeout)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            deadline = time.monotonic() + timeout
            for worker in list(getattr(self._pool, "_threads", ())):
                worker.join(max(0.0, deadline - time.monotonic()))
        if self._denoiser is not None:
            self._denoiser.close()  # a job still running after that denoises in its thread
        self._servers, self._pool, self._tls_port, self._ca_path = [], None, None, None
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
        if not self._servers:
            raise RuntimeError("not started")
        return int(self._servers[0][0].server_port)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``: the API's origin (and the outputs', unless behaviour ``https``)."""
        return f"http://{self.config.host}:{self.port}"

    @property
    def api_base_url(self) -> str:
        """What a MusicGPT client takes as its base (``.../api/public/v1``)."""
        return self.base_url + API_PREFIX

    @property
    def output_base_url(self) -> str:
        """Origin of the output URLs (``{output_base_url}/files/...``): ``https://127.0.0.1:<tls port>`` with
        behaviour ``https``, else ``base_url``."""
        if self._tls_port is None:
            return self.base_url
        return f"https://{self.config.host}:{self._tls_port}"

    @property
    def ca_bundle_path(self) -> Path | None:
        """Behaviour ``https``: the PEM file of the throwaway CA that signed the output listener's certificate (for
        ``requests.get(url, verify=...)``); None otherwise."""
        return self._ca_path

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
                callbacks_sent=self._callbacks_sent,
                callbacks_failed=self._callbacks_failed,
                scripted_errors=self._scripted,
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

    def _shape(self, body: dict[str, Any]) -> dict[str, Any]:
        """A callback or byId body as behaviour ``strings`` types it (unchanged otherwise)."""
        return stringify(body) if Behaviour.STRINGS in self._behaviours else body

    def _scripted_answer(self) -> Response | None:
        """Behaviour ``flaky``: the next ``flaky_script`` item's answer, or None to serve the request."""
        if Behaviour.FLAKY not in self._behaviours:
            return None
        with self._lock:
            step = self._script.popleft() if self._script else FlakyStep()
            if step.status is None:
                return None
            self._scripted += 1
        return outage(step.status, step.retry_after)

    def _submit(self) -> Response:
        scripted = self._scripted_answer()
        if scripted is not None:
            return scripted
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
        busy = self._reserve_slot()
        if busy is not None:
            return busy
        try:
            job = self._new_job(audio_url or None, upload, webhook_url)
            if self._pool is None or self._stopping.is_set():
                raise RuntimeError("the provider is stopping")
            self._pool.submit(self._run_job, job.task_id)
        except BaseException:
            self._finish_flight(None)
            raise
        if Behaviour.EARLY in self._behaviours:
            with self._lock:
                self._lock.wait_for(
                    lambda: self._jobs[job.task_id].finished or self._stopping.is_set(), EARLY_ANSWER_SECONDS
                )
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

    def _reserve_slot(self) -> Response | None:
        """Take an in-flight slot before the (possibly long) upload save, or the 429 answer when none is free."""
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
            self._in_flight += 1
            self._peak = max(self._peak, self._in_flight)
            return None

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
        if Behaviour.FLAKY in self._behaviours:
            with self._lock:
                self._by_id_calls += 1
                down = self._by_id_calls % 2 == 1
                self._scripted += int(down)
            if down:
                return outage(503, None)
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
        if Behaviour.STATUS_ONLY in self._behaviours:
            conversion = self._status_view(job)
        else:
            conversion = {
                "task_id": job.task_id,
                "conversion_id": job.conversion_id,
                "status": job.status,
                "status_msg": job.status_msg,
                "audio_url": job.audio_url,
                "conversion_cost": self.config.credit_estimate if job.status == "COMPLETED" else None,
                "conversion_duration": job.conversion_duration,
                "createdAt": _iso(job.created_at),
                "updatedAt": _iso(job.updated_at),
                **{name: job.outputs.get(name) for name in self._offered},
            }
        return jsonify(self._shape({"success": True, "conversion": conversion}))

    def _status_view(self, job: Job, status: str | None = None, status_msg: str | None = None) -> dict[str, Any]:
        """Behaviour ``status-only``: a job as a status record (the byId conversion and every callback): the cleaned
        mp3 as ``conversion_path`` and ``audio_url``, the cleaned wav as ``conversion_path_wav``."""
        view = {
            "task_id": job.task_id,
            "conversion_id": job.conversion_id,
            "status": status or job.status,
            "status_msg": status_msg or job.status_msg,
            "conversion_path": job.outputs.get("no_noise"),
            "conversion_path_wav": job.outputs.get("no_noise_wav"),
            "audio_url": job.outputs.get("no_noise"),
            "conversion_cost": self.config.credit_estimate if job.status == "COMPLETED" else None,
            "conversion_duration": job.conversion_duration,
            "createdAt": _iso(job.created_at),
            "updatedAt": _iso(job.updated_at),
        }
        if "no_noise_wav" not in self._offered:
            del view["conversion_path_wav"]
        return view

    def _file(self, name: str) -> Response:
        match = _FILE_NAME.match(name)
        directory = self.output_dir / "gzip" if Behaviour.GZIP in self._behaviours else self.output_dir
        # With behaviour https, outputs exist at their https URLs only.
        tls_only = Behaviour.HTTPS in self._behaviours and request.scheme != "https"
        if match is None or tls_only or not (directory / name).is_file():
            return _error(404, "File not found")
        response = send_from_directory(directory, name, mimetype=_MIME[match.group(1)], max_age=0)
        if Behaviour.GZIP in self._behaviours:
            response.headers["Content-Encoding"] = "gzip"
        # The stdlib request handler always sends its own Date header; a second one from send_file would duplicate it.
        del response.headers["Date"]
        return response

    # --- jobs --------------------------------------------------------------------------------------------------------

    def _update(self, task_id: str, **changes: Any) -> Job:
        """Change a job; ``updated_at`` (byId's ``updatedAt``) follows status changes, not callback bookkeeping."""
        with self._lock:
            job = self._jobs[task_id]
            for key, value in changes.items():
                setattr(job, key, value)
            if "status" in changes:
                job.updated_at = _now()
            return replace(job, outputs=dict(job.outputs))

    def _finish_flight(self, task_id: str | None) -> None:
        with self._lock:
            self._in_flight -= 1
            if task_id is not None:
                self._jobs[task_id].finished = True
            self._lock.notify_all()

    def _run_job(self, task_id: str) -> None:
        started = time.monotonic()
        try:
            self._progress(task_id, "IN_QUEUE", QUEUED_MESSAGE)
            job = self._update(task_id, status="PROCESSING", status_msg="Processing")
            self._progress(task_id, "IN_PROGRESS", "Processing")
            self._process(job)
            remaining = self.config.min_job_seconds - (time.monotonic() - started)
            if remaining > 0:
                self._stopping.wait(remaining)
            self._notify(task_id)
        except Exception:  # a bug here must not leak the in-flight slot
            log.exception("local MusicGPT: job %s crashed", task_id)
            with self._lock:
                job = self._jobs[task_id]
                if job.status not in ("COMPLETED", "FAILED"):
                    job.status, job.status_msg = "FAILED", "internal error"
                    self._failed += 1
        finally:
            self._finish_flight(task_id)

    def _process(self, job: Job) -> None:
        """Fetch + denoise, keep the offered outputs and record the outcome on the job."""
        failure: str | None = None
        outputs: dict[str, str] = {}
        duration = 0.0
        src = job.input_path
        try:
            if src is None:
                assert job.audio_url is not None
                src = self._fetch(job)
            assert self._denoiser is not None
            result = self._denoiser.denoise(src, self.output_dir, job.conversion_id)
            duration = round(result.duration_seconds, 3)
            files = {
                "no_noise": result.no_noise_mp3,
                "no_noise_wav": result.no_noise_wav,
                "noise": result.noise_mp3,
                "noise_wav": result.noise_wav,
            }
            outputs = self._publish(files)
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
        if failure is not None:
            self._update(job.task_id, status="FAILED", status_msg=failure)
            with self._lock:
                self._failed += 1
            return
        self._update(
            job.task_id, status="COMPLETED", status_msg=COMPLETED_MESSAGE, outputs=outputs, conversion_duration=duration
        )
        with self._lock:
            self._completed += 1

    def _publish(self, files: dict[str, Path]) -> dict[str, str]:
        """Offered outputs -> their URLs (gzip copies made for behaviour ``gzip``); the others are deleted."""
        outputs: dict[str, str] = {}
        for name, path in files.items():
            if name not in self._offered:
                path.unlink()
                continue
            if Behaviour.GZIP in self._behaviours:
                with path.open("rb") as plain, gzip.open(self.output_dir / "gzip" / path.name, "wb") as packed:
                    shutil.copyfileobj(plain, packed, _CHUNK)
            outputs[name] = f"{self.output_base_url}/files/{path.name}"
        return outputs

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

    # --- callbacks ---------------------------------------------------------------------------------------------------

    def _progress(self, task_id: str, status: str, message: str) -> None:
        """Behaviour ``progress``: a non-final callback, without output URLs."""
        if Behaviour.PROGRESS not in self._behaviours or not self.config.deliver_webhooks:
            return
        job = self.job(task_id)
        assert job is not None
        if job.webhook_url is None:
            return
        if Behaviour.STATUS_ONLY in self._behaviours:
            payload = self._status_view(job, status, message)
        else:
            payload = {
                "success": True,
                "conversion_type": CONVERSION_TYPE,
                "task_id": job.task_id,
                "conversion_id": job.conversion_id,
                "status": status,
                "message": message,
                "eta": self.config.eta,
            }
        self._deliver(task_id, job.webhook_url, self._shape(payload))

    def _final_payload(self, job: Job) -> dict[str, Any]:
        if Behaviour.STATUS_ONLY in self._behaviours:
            return self._status_view(job)
        common = {"conversion_type": "Denoise", "task_id": job.task_id, "conversion_id": job.conversion_id}
        if job.status != "COMPLETED":
            return {"success": False, **common, "message": job.status_msg}
        return {
            "success": True,
            **common,
            "audio_path": f"files/{job.conversion_id}.wav",
            **job.outputs,
            "message": COMPLETED_MESSAGE,
            "conversion_duration": job.conversion_duration,
            "conversion_cost": f"{self.config.credit_estimate:.2f}",
        }

    def _notify(self, task_id: str) -> None:
        """The final callback: once, or (behaviour ``duplicate``) twice at the same moment and once more after."""
        job = self.job(task_id)
        assert job is not None
        url = job.webhook_url
        if url is None:
            return
        payload = self._shape(self._final_payload(job))
        if not self.config.deliver_webhooks:
            self._update(task_id, webhook="disabled", webhook_payload=payload)
            return
        self._update(task_id, webhook="pending", webhook_payload=payload)
        results: list[tuple[bool, int]] = []
        if Behaviour.DUPLICATE in self._behaviours:
            together = threading.Barrier(2)

            def twin() -> None:
                together.wait()
                results.append(self._deliver(task_id, url, payload))

            twins = [threading.Thread(target=twin, name="musicgpt-twin", daemon=True) for _ in range(2)]
            for thread in twins:
                thread.start()
            for thread in twins:
                thread.join()
        results.append(self._deliver(task_id, url, payload))
        delivered = any(ok for ok, _ in results)
        self._update(
            task_id, webhook="delivered" if delivered else "failed", webhook_attempts=sum(n for _, n in results)
        )
        with self._lock:
            if delivered:
                self._hooks_ok += 1
            else:
                self._hooks_failed += 1

    def _deliver(self, task_id: str, url: str, payload: dict[str, Any]) -> tuple[bool, int]:
        """POST one callback, retried on connection errors, timeouts and 5xx: (answered 2xx, attempts made)."""
        attempts = 0
        for attempt in _backoff(self.config.webhook_attempts, self.config.webhook_backoff, self._stopping):
            attempts = attempt
            status = self._post(task_id, url, payload, attempt)
            if status is not None and status < 500:
                return status < 400, attempts
        return False, attempts

    def _post(self, task_id: str, url: str, payload: dict[str, Any], attempt: int) -> int | None:
        """One callback POST in the configured encoding, counted; its HTTP status, or None without an answer."""
        timeout = (5.0, self.config.webhook_timeout)
        status: int | None = None
        try:
            if Behaviour.FORM in self._behaviours:
                response = self._http.post(url, data=form_fields(payload), timeout=timeout)
            elif Behaviour.MULTIPART in self._behaviours:
                fields = {key: (None, value) for key, value in form_fields(payload).items()}
                response = self._http.post(url, files=fields, timeout=timeout)
            else:
                response = self._http.post(url, json=payload, timeout=timeout)
            status = response.status_code
            outcome = f"HTTP {status}"
        except requests.RequestException as exc:
            outcome = type(exc).__name__
        failed = status is None or status >= 400
        with self._lock:
            self._callbacks_sent += 1
            self._callbacks_failed += int(failed)
        if failed:
            log.warning("callback for %s: attempt %d: %s", task_id, attempt, outcome)
        return status


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


def _local_tls(directory: Path, host: str) -> tuple[ssl.SSLContext, Path]:
    """Behaviour ``https``: a throwaway CA (``trustme``, kept in memory) and a server certificate it signs for
    127.0.0.1, localhost and ``host``. Writes the CA's PEM (the trust anchor clients need, no key) into
    ``directory``; returns the server's TLS context and that file."""
    import trustme  # the local extra's; only this behaviour needs it

    ca = trustme.CA(organization_name="local MusicGPT")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*dict.fromkeys(("127.0.0.1", "localhost", host))).configure_cert(server_context)
    bundle = directory / "local-musicgpt-ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    return server_context, bundle


@contextlib.contextmanager
def running(config: ProviderConfig | None = None) -> Iterator[LocalMusicGPT]:
    """``with running(ProviderConfig(...)) as provider: ...`` - start, yield, stop."""
    provider = LocalMusicGPT(config).start()
    try:
        yield provider
    finally:
        provider.stop()
