"""The local MusicGPT-compatible server over real sockets: contract shapes, real audio, capacity, status lookups."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import requests
import soundfile as sf

from local.provider.metrics import si_sdr
from local.provider.server import LocalMusicGPT, ProviderConfig, running
from tests.contract import WEBHOOK_FIELDS
from tests.e2e.audio import SAMPLES, encode, noisy_sample

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

REPO = Path(__file__).resolve().parents[2]
KEY = "test-key"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
WEBHOOK_KEYS = set(WEBHOOK_FIELDS)
OUTPUT_KEYS = ("no_noise", "no_noise_wav", "noise", "noise_wav")


# --- helpers: a webhook receiver and a file server on 127.0.0.1 ----------------------------------------------------


@dataclass
class Receiver:
    """Records webhook POSTs; ``gate`` (when cleared) holds answers back; ``fail_first`` answers 503 that many times."""

    server: ThreadingHTTPServer
    hooks: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)
    gate: threading.Event = field(default_factory=threading.Event)
    fail_first: int = 0
    cond: threading.Condition = field(default_factory=threading.Condition)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def wait_for(self, task_id: str, timeout: float = 30.0) -> dict[str, Any]:
        with self.cond:
            assert self.cond.wait_for(lambda: self.find(task_id) is not None, timeout), f"no webhook for {task_id}"
            found = self.find(task_id)
            assert found is not None
            return found

    def find(self, task_id: str) -> dict[str, Any] | None:
        for _, _, body in self.hooks:
            if isinstance(body, dict) and body.get("task_id") == task_id:
                return body
        return None

    def headers_for(self, task_id: str) -> dict[str, str]:
        return next(h for _, h, body in self.hooks if isinstance(body, dict) and body.get("task_id") == task_id)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    holder: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            rec = holder[0]
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            rec.gate.wait(30)
            with rec.cond:
                if rec.fail_first > 0:
                    rec.fail_first -= 1
                    status = 503
                else:
                    status = 200
                    rec.hooks.append((self.path, dict(self.headers.items()), json.loads(body)))
                    rec.cond.notify_all()
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    rec = Receiver(server)
    rec.gate.set()
    holder.append(rec)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rec
    rec.gate.set()
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def files() -> Iterator[tuple[str, dict[str, bytes]]]:
    """A tiny static server: GET /<name>?anything -> content[name] (like a presigned S3 URL), else 404."""
    content: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = content.get(self.path.split("?", 1)[0].lstrip("/"))
            self.send_response(200 if data is not None else 404)
            self.send_header("Content-Length", str(len(data or b"")))
            self.end_headers()
            self.wfile.write(data or b"")

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", content
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def provider() -> Iterator[LocalMusicGPT]:
    with running(ProviderConfig(api_key=KEY, max_parallel=4, webhook_backoff=0.05)) as p:
        yield p


def submit(p: LocalMusicGPT, key: str = KEY, **kwargs: Any) -> requests.Response:
    return requests.post(f"{p.api_base_url}/denoise", headers={"Authorization": key}, timeout=10, **kwargs)


def by_id(p: LocalMusicGPT, key: str = KEY, **params: str) -> requests.Response:
    query = {"conversionType": "DENOISING", **params}
    return requests.get(f"{p.api_base_url}/byId", headers={"Authorization": key}, params=query, timeout=10)


def decode(data: bytes) -> tuple[int, int, int]:
    """(sample rate, channels, samples per channel) of an encoded file."""
    container: Any
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        n = sum(frame.samples for frame in container.decode(stream))
        return int(stream.rate), int(stream.codec_context.channels), int(n)


def assert_success_webhook(hook: dict[str, Any], task_id: str, conversion_id: str, base_url: str) -> None:
    assert set(hook) == WEBHOOK_KEYS
    assert hook["success"] is True
    assert hook["conversion_type"] == "Denoise"
    assert (hook["task_id"], hook["conversion_id"]) == (task_id, conversion_id)
    assert hook["audio_path"] == f"files/{conversion_id}.wav"
    assert hook["message"] == "de_noising conversion Completed"
    assert isinstance(hook["conversion_duration"], float)
    assert isinstance(hook["conversion_cost"], str)
    assert float(hook["conversion_cost"]) == pytest.approx(0.48)
    suffixes = {
        "no_noise": "_nonoise.mp3",
        "no_noise_wav": "_nonoise.wav",
        "noise": "_noise.mp3",
        "noise_wav": "_noise.wav",
    }
    for key, suffix in suffixes.items():
        assert hook[key] == f"{base_url}/files/{conversion_id}{suffix}"


# --- the contract ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["", "wrong-key"])
def test_bad_key_is_401(provider: LocalMusicGPT, key: str) -> None:
    response = submit(provider, key=key, data={"audio_url": "http://127.0.0.1:9/x.wav"})
    assert response.status_code == 401
    body = response.json()
    assert body["success"] is False
    assert body["message"]
    assert by_id(provider, key=key, task_id="x").status_code == 401


@pytest.mark.parametrize(
    "kwargs",
    [
        {"data": {"webhook_url": "http://127.0.0.1:9/hook"}},
        {"data": {"audio_url": ""}},
        {"files": {"webhook_url": (None, "http://127.0.0.1:9/hook")}},
    ],
)
def test_no_audio_is_422(provider: LocalMusicGPT, kwargs: dict[str, Any]) -> None:
    response = submit(provider, **kwargs)
    assert response.status_code == 422
    body = response.json()
    assert body["success"] is False
    assert "audio_url or audio_file is required" in body["message"]
    assert "audio_url" in json.dumps(body["detail"])


def test_upload_end_to_end(provider: LocalMusicGPT, receiver: Receiver) -> None:
    """audio_file upload -> 200 shape -> webhook shape -> four real audio files -> byId COMPLETED."""
    with (SAMPLES / "noisy_speech.wav").open("rb") as f:
        response = submit(
            provider,
            files={"audio_file": ("noisy_speech.wav", f, "audio/wav")},
            data={"webhook_url": f"{receiver.url}/hooks/upload?token=abc"},
        )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"success", "task_id", "conversion_id", "eta", "credit_estimate", "message", "status"}
    assert body["success"] is True
    assert UUID.match(body["task_id"])
    assert UUID.match(body["conversion_id"])
    assert body["task_id"] != body["conversion_id"]
    assert type(body["eta"]) is int
    assert type(body["credit_estimate"]) is float
    assert (body["message"], body["status"]) == ("Message published to queue", "IN_QUEUE")

    task_id, conversion_id = body["task_id"], body["conversion_id"]
    hook = receiver.wait_for(task_id)
    assert_success_webhook(hook, task_id, conversion_id, provider.base_url)
    assert receiver.headers_for(task_id)["Content-Type"] == "application/json"
    assert next(path for path, _, b in receiver.hooks if b is hook) == "/hooks/upload?token=abc"
    assert hook["conversion_duration"] == pytest.approx(len(noisy_sample()) / 48_000, abs=0.01)

    downloads: dict[str, requests.Response] = {key: requests.get(hook[key], timeout=10) for key in OUTPUT_KEYS}
    for key, got in downloads.items():
        assert got.status_code == 200
        assert got.headers["Content-Type"] == ("audio/wav" if key.endswith("wav") else "audio/mpeg")
        assert int(got.headers["Content-Length"]) == len(got.content) > 10_000
        assert decode(got.content) == (48_000, 1, len(noisy_sample()))
    clean_ref, _ = sf.read(SAMPLES / "clean_speech.wav")
    denoised, rate = sf.read(io.BytesIO(downloads["no_noise_wav"].content))
    assert rate == 48_000
    assert si_sdr(clean_ref, denoised) - si_sdr(clean_ref, noisy_sample()) >= 8.0

    for params in ({"task_id": task_id}, {"conversion_id": conversion_id}):
        status = by_id(provider, **params)
        assert status.status_code == 200
        conv = status.json()["conversion"]
        assert status.json()["success"] is True
        assert (conv["task_id"], conv["conversion_id"], conv["status"]) == (task_id, conversion_id, "COMPLETED")
        assert conv["status_msg"] == "de_noising conversion Completed"
        assert conv["conversion_cost"] == pytest.approx(0.48)
        assert conv["createdAt"] <= conv["updatedAt"]
        assert {k: conv[k] for k in OUTPUT_KEYS} == {k: hook[k] for k in OUTPUT_KEYS}


def test_audio_url_m4a_is_fetched(
    provider: LocalMusicGPT, receiver: Receiver, files: tuple[str, dict[str, bytes]]
) -> None:
    base, content = files
    audio = noisy_sample()[None, : 48_000 * 2]
    content["in/voice.m4a"] = encode(audio, "mp4", "aac")
    url = f"{base}/in/voice.m4a?X-Amz-Signature=abc&X-Amz-Expires=600"

    response = submit(provider, data={"audio_url": url, "webhook_url": f"{receiver.url}/hooks/m4a"})
    assert response.status_code == 200
    task_id = response.json()["task_id"]
    hook = receiver.wait_for(task_id)
    assert_success_webhook(hook, task_id, response.json()["conversion_id"], provider.base_url)
    rate, channels, n = decode(requests.get(hook["no_noise_wav"], timeout=10).content)
    assert (rate, channels) == (48_000, 1)
    assert abs(n - 2 * 48_000) < 2048  # AAC priming/padding, as FFmpeg trims it

    conv = by_id(provider, task_id=task_id).json()["conversion"]
    assert conv["audio_url"] == url
    stats = provider.stats()
    assert stats.submissions_by_url[url] == 1
    assert stats.submissions_by_source[f"{base}/in/voice.m4a"] == 1


def test_stereo_mp3_upload_keeps_two_channels(provider: LocalMusicGPT, receiver: Receiver) -> None:
    mono = noisy_sample()[: 48_000 * 2]
    stereo = np.stack([mono, 0.5 * mono[::-1]])
    data = encode(stereo, "mp3", "libmp3lame", rate=44_100)

    response = submit(
        provider, files={"audio_file": ("stereo.mp3", data)}, data={"webhook_url": f"{receiver.url}/hooks/stereo"}
    )
    assert response.status_code == 200
    hook = receiver.wait_for(response.json()["task_id"])
    assert hook["success"] is True
    for key in OUTPUT_KEYS:
        rate, channels, n = decode(requests.get(hook[key], timeout=10).content)
        assert (rate, channels) == (48_000, 2)
        assert abs(n - 2 * 48_000 * 48_000 // 44_100) < 4096


def test_unreadable_audio_fails_with_a_webhook(provider: LocalMusicGPT, receiver: Receiver) -> None:
    response = submit(
        provider,
        files={"audio_file": ("garbage.mp3", b"this is not audio at all" * 50)},
        data={"webhook_url": f"{receiver.url}/hooks/bad"},
    )
    assert response.status_code == 200  # like the provider: accepted, then failed asynchronously
    task_id, conversion_id = response.json()["task_id"], response.json()["conversion_id"]
    hook = receiver.wait_for(task_id)
    assert hook["success"] is False
    assert (hook["task_id"], hook["conversion_id"], hook["conversion_type"]) == (task_id, conversion_id, "Denoise")
    assert "unreadable audio" in hook["message"]
    assert not any(key in hook for key in OUTPUT_KEYS)
    conv = by_id(provider, task_id=task_id).json()["conversion"]
    assert conv["status"] == "FAILED"
    assert "unreadable audio" in conv["status_msg"]
    assert all(conv[k] is None for k in OUTPUT_KEYS)


def test_fetch_failure_fails_with_a_webhook(
    provider: LocalMusicGPT, receiver: Receiver, files: tuple[str, dict[str, bytes]]
) -> None:
    base, _ = files
    response = submit(provider, data={"audio_url": f"{base}/missing.wav?sig=1", "webhook_url": f"{receiver.url}/h"})
    hook = receiver.wait_for(response.json()["task_id"])
    assert hook["success"] is False
    assert "could not fetch audio_url: HTTP 404" in hook["message"]


def test_webhook_is_retried_on_5xx(provider: LocalMusicGPT, receiver: Receiver) -> None:
    with receiver.cond:
        receiver.fail_first = 2
    response = submit(
        provider,
        files={"audio_file": ("x.wav", (SAMPLES / "noisy_speech.wav").read_bytes())},
        data={"webhook_url": f"{receiver.url}/hooks/retry"},
    )
    task_id = response.json()["task_id"]
    assert receiver.wait_for(task_id)["success"] is True
    assert provider.wait_idle(10)
    job = provider.job(task_id)
    assert job is not None
    assert (job.webhook, job.webhook_attempts) == ("delivered", 3)


def test_by_id_errors(provider: LocalMusicGPT) -> None:
    assert by_id(provider, task_id="00000000-0000-0000-0000-000000000000").status_code == 404
    assert by_id(provider, task_id="a", conversion_id="b").status_code == 400
    assert by_id(provider).status_code == 400
    missing_type = requests.get(
        f"{provider.api_base_url}/byId", params={"task_id": "a"}, headers={"Authorization": KEY}, timeout=10
    )
    assert missing_type.status_code == 422
    for bad in (by_id(provider, task_id="nope"), missing_type):
        assert bad.json()["success"] is False
        assert bad.json()["message"]


def test_files_are_confined_to_outputs(provider: LocalMusicGPT) -> None:
    for name in ("nothing.mp3", "..%2Fsecret.wav", "x.txt", "incoming"):
        assert requests.get(f"{provider.base_url}/files/{name}", timeout=10).status_code == 404


# --- capacity --------------------------------------------------------------------------------------------------------


def test_429_when_max_parallel_jobs_are_in_flight(receiver: Receiver) -> None:
    config = ProviderConfig(api_key=KEY, max_parallel=2, retry_after=3)
    upload = (SAMPLES / "noisy_speech.wav").read_bytes()[: 44 + 48_000 * 2]  # 0.5 s
    receiver.gate.clear()  # hold webhooks: the jobs stay in flight
    try:
        with running(config) as p:
            ids = []
            for i in range(2):
                ok = submit(p, files={"audio_file": ("a.wav", upload)}, data={"webhook_url": f"{receiver.url}/cap{i}"})
                assert ok.status_code == 200
                ids.append(ok.json()["task_id"])
            busy = submit(p, files={"audio_file": ("a.wav", upload)}, data={"webhook_url": f"{receiver.url}/cap"})
            assert busy.status_code == 429
            assert busy.json()["success"] is False
            assert "parallel" in busy.json()["message"]
            assert busy.headers["Retry-After"] == "3"
            stats = requests.get(f"{p.base_url}/_local/stats", timeout=10).json()
            assert (stats["in_flight"], stats["peak_in_flight"], stats["rejected_busy"]) == (2, 2, 1)
            assert stats["accepted"] == 2
            assert list(stats["submissions_by_source"].values()) == [2]  # the same bytes, twice
            assert stats["duplicate_submissions"] == 1

            receiver.gate.set()
            assert p.wait_idle(20)
            for task_id in ids:
                assert receiver.wait_for(task_id)["success"] is True
            again = submit(p, files={"audio_file": ("a.wav", upload)})  # no webhook_url: allowed
            assert again.status_code == 200
            assert p.wait_idle(20)
            assert by_id(p, task_id=again.json()["task_id"]).json()["conversion"]["status"] == "COMPLETED"
            final = p.stats()
            assert (final.peak_in_flight, final.in_flight, final.accepted, final.completed) == (2, 0, 3, 3)
    finally:
        receiver.gate.set()


def test_no_retry_after_by_default_and_lost_webhooks(receiver: Receiver) -> None:
    with running(ProviderConfig(api_key=KEY, max_parallel=1, deliver_webhooks=False, min_job_seconds=1.0)) as p:
        upload = {"audio_file": ("a.wav", (SAMPLES / "noisy_speech.wav").read_bytes()[: 44 + 9600])}
        first = submit(p, files=upload, data={"webhook_url": f"{receiver.url}/lost"})
        assert first.status_code == 200
        busy = submit(p, files=upload)
        assert busy.status_code == 429
        assert "Retry-After" not in busy.headers
        task_id = first.json()["task_id"]
        assert by_id(p, task_id=task_id).json()["conversion"]["status"] in {"IN_QUEUE", "PROCESSING", "COMPLETED"}
        assert p.wait_idle(20)
        assert by_id(p, task_id=task_id).json()["conversion"]["status"] == "COMPLETED"
        job = p.job(task_id)
        assert job is not None
        assert job.webhook == "disabled"
        assert receiver.find(task_id) is None
        assert p.stats().webhooks_delivered == 0


# --- the denoise zygote ----------------------------------------------------------------------------------------------


def _zygotes(attenuation_limit_db: float) -> list[str]:
    """Command lines of this process's ``local.provider.zygote`` children for that limit (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes().decode().split("\0")
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        if ppid == os.getpid() and "local.provider.zygote" in cmdline and repr(attenuation_limit_db) in cmdline:
            found.append(" ".join(cmdline))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_jobs_run_in_a_zygote_started_with_the_first_job_and_stopped_with_the_provider(tmp_path: Path) -> None:
    """Its attenuation limit is the provider's, its outputs exactly in-thread ``denoise_file``'s; ``stop()`` ends it."""
    from local.provider.engine import denoise_file

    upload = SAMPLES / "noisy_speech.wav"
    with running(ProviderConfig(api_key=KEY, attenuation_limit_db=12.0)) as p:
        assert _zygotes(12.0) == []  # started lazily (the limit tells it from other providers' zygotes)
        answers = [submit(p, files={"audio_file": ("a.wav", upload.read_bytes())}) for _ in range(2)]
        assert [a.status_code for a in answers] == [200, 200]
        assert p.wait_idle(30)
        (zygote,) = _zygotes(12.0)
        assert "--attenuation-limit-db 12.0" in zygote
        expected = denoise_file(upload, tmp_path, "expected", attenuation_limit_db=12.0)
        for answer in answers:
            conversion_id = answer.json()["conversion_id"]
            for suffix, path in (("_nonoise.wav", expected.no_noise_wav), ("_noise.mp3", expected.noise_mp3)):
                assert (p.output_dir / f"{conversion_id}{suffix}").read_bytes() == path.read_bytes()
    assert _zygotes(12.0) == []


# --- standalone ------------------------------------------------------------------------------------------------------


def test_python_m_local_provider_serves(tmp_path: Path) -> None:
    env = {**os.environ, "LOCAL_MUSICGPT_API_KEY": "from-env", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "local.provider", "--max-parallel", "3", "--output-dir", str(tmp_path)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base_url)
        assert requests.get(f"{base_url}/_local/stats", timeout=10).json()["accepted"] == 0
        answer = requests.post(f"{base_url}/api/public/v1/denoise", headers={"Authorization": "from-env"}, timeout=10)
        assert answer.status_code == 422  # the key came from the environment
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.returncode == 0
