"""The local provider's behaviours over real sockets: exactly what each one sends, and when.

Each test starts a provider with one behaviour (or a combination), submits a 0.25 s upload and inspects what a
webhook receiver on 127.0.0.1 got: content types, fields and their types, how many callbacks and in which order,
and what the output and status URLs answer.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from local.provider.server import Behaviour, FlakyStep, LocalMusicGPT, ProviderConfig, running
from tests.contract import WEBHOOK_FIELDS
from tests.e2e.audio import SAMPLES

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

REPO = Path(__file__).resolve().parents[2]
KEY = "test-key"
CLIP = (SAMPLES / "noisy_speech.wav").read_bytes()[: 44 + 2 * 12_000]  # 0.25 s of 48 kHz mono PCM16
NOT_AUDIO = b"not audio " * 100
"""For tests about answers, not audio: the job fails at decoding, before the denoiser's ~0.75 s start-up."""
WEBHOOK_KEYS = set(WEBHOOK_FIELDS)
PROGRESS_KEYS = {"success", "conversion_type", "task_id", "conversion_id", "status", "message", "eta"}
STATUS_KEYS = {
    "task_id",
    "conversion_id",
    "status",
    "status_msg",
    "conversion_path",
    "conversion_path_wav",
    "audio_url",
    "conversion_cost",
    "conversion_duration",
    "createdAt",
    "updatedAt",
}


# --- a webhook receiver that understands every encoding --------------------------------------------------------------


@dataclass(frozen=True)
class Callback:
    path: str
    content_type: str
    raw: bytes
    fields: dict[str, Any]
    """The JSON object, or the form's fields."""
    files: dict[str, bytes]
    """Multipart parts with a file name (a callback has none)."""
    received: float
    answered: float
    """``time.monotonic()`` when the request arrived and when its answer was about to be sent."""


class Receiver:
    """Records every POST. ``hold_for_peak`` = n holds each request (up to 5 s) until n were in flight at once."""

    def __init__(self) -> None:
        self.calls: list[Callback] = []
        self.cond = threading.Condition()
        self.active = 0
        self.peak = 0
        self.hold_for_peak = 0
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hooks/job?token=t0k"

    def app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        received = time.monotonic()
        raw = request.get_data(cache=True)
        if request.mimetype == "application/json":
            fields, files = json.loads(raw), {}
        else:
            fields = request.form.to_dict()
            files = {name: part.read() for name, part in request.files.items()}
        with self.cond:
            self.active += 1
            self.peak = max(self.peak, self.active)
            self.cond.notify_all()
            self.cond.wait_for(lambda: self.peak >= self.hold_for_peak, timeout=5)
            self.active -= 1
            path = request.full_path.rstrip("?")
            self.calls.append(
                Callback(path, request.content_type or "", raw, fields, files, received, time.monotonic())
            )
            self.cond.notify_all()
        return Response(status=200)(environ, start_response)

    def for_task(self, task_id: str) -> list[Callback]:
        with self.cond:
            return [c for c in self.calls if c.fields.get("task_id") == task_id]

    def wait(self, task_id: str, count: int = 1, timeout: float = 30.0) -> list[Callback]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.for_task(task_id)) >= count, timeout), self.calls
        return self.for_task(task_id)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    yield rec
    rec.close()


@pytest.fixture
def provider(request: pytest.FixtureRequest) -> Iterator[LocalMusicGPT]:
    """A provider with the behaviours named by ``@with_behaviours("a,b")``."""
    config = ProviderConfig(api_key=KEY, webhook_backoff=0.05, behaviours=behaviours(request.param))
    with running(config) as p:
        yield p


def with_behaviours(names: str) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("provider", [names], indirect=True)


def behaviours(text: str) -> frozenset[Behaviour]:
    return frozenset(Behaviour(name) for name in text.split(","))


def submit(p: LocalMusicGPT, webhook_url: str | None, audio: bytes = CLIP) -> requests.Response:
    data = {"webhook_url": webhook_url} if webhook_url else {}
    return requests.post(
        f"{p.api_base_url}/denoise",
        headers={"Authorization": KEY},
        files={"audio_file": ("clip.wav", audio, "audio/wav")},
        data=data,
        timeout=30,
    )


def by_id(p: LocalMusicGPT, task_id: str) -> requests.Response:
    query = {"conversionType": "DENOISING", "task_id": task_id}
    return requests.get(f"{p.api_base_url}/byId", headers={"Authorization": KEY}, params=query, timeout=10)


def run_job(p: LocalMusicGPT, receiver: Receiver, callbacks: int = 1) -> tuple[str, list[Callback]]:
    """Submit, wait for ``callbacks`` callbacks and for the job to leave flight; (task id, every callback)."""
    answer = submit(p, receiver.url)
    assert answer.status_code == 200, answer.text
    task_id: str = answer.json()["task_id"]
    receiver.wait(task_id, callbacks)
    assert p.wait_idle(30)
    return task_id, receiver.for_task(task_id)


def file_name(url: str) -> str:
    return urlsplit(url).path.rsplit("/", 1)[-1]


# --- one test per behaviour ------------------------------------------------------------------------------------------


@with_behaviours("documented")
def test_documented_sends_one_json_callback(provider: LocalMusicGPT, receiver: Receiver) -> None:
    _, calls = run_job(provider, receiver)
    assert len(calls) == 1
    (hook,) = calls
    assert hook.content_type == "application/json"
    assert hook.path == "/hooks/job?token=t0k"
    assert set(hook.fields) == WEBHOOK_KEYS
    assert (hook.fields["success"], hook.fields["conversion_type"]) == (True, "Denoise")
    stats = provider.stats()
    assert (stats.callbacks_sent, stats.callbacks_failed, stats.webhooks_delivered) == (1, 0, 1)
    assert provider.output_base_url == provider.base_url
    assert provider.ca_bundle_path is None


@with_behaviours("progress")
def test_progress_sends_two_status_callbacks_first(provider: LocalMusicGPT, receiver: Receiver) -> None:
    task_id, calls = run_job(provider, receiver, callbacks=3)
    assert len(calls) == 3
    queued, working, final = (call.fields for call in calls)
    for progress, status in ((queued, "IN_QUEUE"), (working, "IN_PROGRESS")):
        assert set(progress) == PROGRESS_KEYS
        assert progress["status"] == status
        assert (progress["success"], progress["conversion_type"], progress["task_id"]) == (True, "DENOISING", task_id)
        assert progress["conversion_id"] == final["conversion_id"]
        assert progress["message"]
        assert type(progress["eta"]) is int
        assert not any(isinstance(v, str) and "://" in v for v in progress.values())
    assert set(final) == WEBHOOK_KEYS
    assert final["success"] is True
    assert calls[0].answered <= calls[1].received
    assert calls[1].answered <= calls[2].received
    stats = provider.stats()
    assert (stats.callbacks_sent, stats.webhooks_delivered, stats.webhooks_failed) == (3, 1, 0)


@with_behaviours("duplicate")
def test_duplicate_sends_the_final_callback_twice_at_once_then_again(
    provider: LocalMusicGPT, receiver: Receiver
) -> None:
    receiver.hold_for_peak = 2  # neither twin is answered until both arrived: they must be concurrent
    task_id, calls = run_job(provider, receiver, callbacks=3)
    assert len(calls) == 3
    assert receiver.peak == 2
    first, second, third = calls
    assert first.fields == second.fields == third.fields
    assert set(first.fields) == WEBHOOK_KEYS
    assert max(first.received, second.received) < min(first.answered, second.answered)
    assert third.received >= max(first.answered, second.answered)
    job = provider.job(task_id)
    assert job is not None
    assert (job.webhook, job.webhook_attempts) == ("delivered", 3)
    stats = provider.stats()
    assert (stats.callbacks_sent, stats.webhooks_delivered) == (3, 1)


@with_behaviours("early")
def test_early_callback_arrives_before_the_submit_answer(provider: LocalMusicGPT, receiver: Receiver) -> None:
    answer = submit(provider, receiver.url)
    returned = time.monotonic()
    assert answer.status_code == 200
    body = answer.json()
    assert (body["success"], body["status"]) == (True, "IN_QUEUE")  # the usual answer, however late
    calls = receiver.for_task(body["task_id"])  # no waiting: it must already be there
    assert len(calls) == 1
    assert calls[0].answered < returned
    assert calls[0].fields["success"] is True
    assert calls[0].fields["conversion_id"] == body["conversion_id"]


@with_behaviours("form")
def test_form_callbacks_are_urlencoded(provider: LocalMusicGPT, receiver: Receiver) -> None:
    _, (hook,) = run_job(provider, receiver)
    assert hook.content_type == "application/x-www-form-urlencoded"
    parsed = parse_qs(hook.raw.decode(), strict_parsing=True)
    assert set(parsed) == WEBHOOK_KEYS
    assert all(len(values) == 1 for values in parsed.values())
    assert {key: values[0] for key, values in parsed.items()} == hook.fields
    assert (hook.fields["success"], hook.fields["conversion_type"], hook.fields["conversion_cost"]) == (
        "true",
        "Denoise",
        "0.48",
    )
    assert float(hook.fields["conversion_duration"]) == pytest.approx(0.25, abs=0.01)
    assert hook.fields["no_noise"].startswith(provider.base_url + "/files/")


@with_behaviours("multipart")
def test_multipart_callbacks_are_form_data_fields(provider: LocalMusicGPT, receiver: Receiver) -> None:
    _, (hook,) = run_job(provider, receiver)
    assert re.fullmatch(r"multipart/form-data; boundary=\S+", hook.content_type)
    assert hook.files == {}
    assert b"filename=" not in hook.raw
    assert hook.raw.count(b"Content-Disposition: form-data; name=") == len(WEBHOOK_KEYS)
    assert set(hook.fields) == WEBHOOK_KEYS
    assert (hook.fields["success"], hook.fields["conversion_cost"]) == ("true", "0.48")
    float(hook.fields["conversion_duration"])


@with_behaviours("strings")
def test_strings_types_every_number_and_boolean_as_text(provider: LocalMusicGPT, receiver: Receiver) -> None:
    task_id, (hook,) = run_job(provider, receiver)
    assert hook.content_type == "application/json"
    assert set(hook.fields) == WEBHOOK_KEYS
    assert all(type(value) is str for value in hook.fields.values())
    assert (hook.fields["success"], hook.fields["conversion_type"]) == ("true", "DENOISING")
    assert re.fullmatch(r"0\.2\d*", hook.fields["conversion_duration"])

    status = by_id(provider, task_id).json()
    assert status["success"] == "true"
    conversion = status["conversion"]
    assert (conversion["conversion_cost"], conversion["status"]) == ("0.48", "COMPLETED")
    assert conversion["conversion_duration"] == hook.fields["conversion_duration"]
    assert conversion["audio_url"] is None  # an upload has no input URL
    assert all(type(value) is str for value in conversion.values() if value is not None)
    submitted = submit(provider, None).json()  # the submit answer stays as documented
    assert (type(submitted["eta"]), type(submitted["success"])) == (int, bool)


@with_behaviours("mp3-only")
def test_mp3_only_offers_and_serves_no_wav(provider: LocalMusicGPT, receiver: Receiver) -> None:
    task_id, (hook,) = run_job(provider, receiver)
    assert set(hook.fields) == WEBHOOK_KEYS - {"no_noise_wav", "noise_wav"}
    for key in ("no_noise", "noise"):
        got = requests.get(hook.fields[key], timeout=10)
        assert (got.status_code, got.headers["Content-Type"]) == (200, "audio/mpeg")
        assert requests.get(hook.fields[key].replace(".mp3", ".wav"), timeout=10).status_code == 404
    conversion = by_id(provider, task_id).json()["conversion"]
    assert (conversion["no_noise"], conversion["noise"]) == (hook.fields["no_noise"], hook.fields["noise"])
    assert "no_noise_wav" not in conversion
    assert "noise_wav" not in conversion


@with_behaviours("status-only")
def test_status_only_callbacks_look_like_status_records(provider: LocalMusicGPT, receiver: Receiver) -> None:
    task_id, (hook,) = run_job(provider, receiver)
    fields = hook.fields
    assert set(fields) == STATUS_KEYS
    assert (fields["task_id"], fields["status"], fields["status_msg"]) == (
        task_id,
        "COMPLETED",
        "de_noising conversion Completed",
    )
    assert fields["conversion_path"] == fields["audio_url"]
    assert fields["conversion_path"].endswith("_nonoise.mp3")
    assert fields["conversion_path_wav"].endswith("_nonoise.wav")
    assert fields["conversion_cost"] == pytest.approx(0.48)
    for key in ("conversion_path", "conversion_path_wav"):
        assert requests.get(fields[key], timeout=10).status_code == 200
    noise = fields["conversion_path"].replace("_nonoise.mp3", "_noise.mp3")
    assert requests.get(noise, timeout=10).status_code == 404  # not offered, not served
    status = by_id(provider, task_id).json()
    assert status == {"success": True, "conversion": fields}


@with_behaviours("gzip")
def test_gzip_serves_outputs_content_encoded(provider: LocalMusicGPT, receiver: Receiver) -> None:
    _, (hook,) = run_job(provider, receiver)
    for key in ("no_noise", "no_noise_wav", "noise", "noise_wav"):
        plain = (provider.output_dir / file_name(hook.fields[key])).read_bytes()
        with requests.get(hook.fields[key], stream=True, timeout=10) as got:
            assert got.status_code == 200
            assert got.headers["Content-Encoding"] == "gzip"
            assert got.headers["Content-Type"] == ("audio/wav" if key.endswith("wav") else "audio/mpeg")
            compressed = got.raw.read(decode_content=False)
        assert int(got.headers["Content-Length"]) == len(compressed) != len(plain)
        assert gzip.decompress(compressed) == plain
        assert requests.get(hook.fields[key], timeout=10).content == plain  # a client that decodes gets the file


def test_flaky_follows_the_script_then_serves(receiver: Receiver) -> None:
    config = ProviderConfig(api_key=KEY, behaviours=behaviours("flaky"))
    with running(config) as p:
        answers = [submit(p, None, NOT_AUDIO) for _ in range(6)]
        assert [a.status_code for a in answers] == [503, 429, 429, 500, 200, 200]
        assert [a.headers.get("Retry-After") for a in answers] == [None, None, "2", None, None, None]
        for outage in (answers[0], answers[3]):
            assert outage.headers["Content-Type"].startswith("text/html")
            assert outage.text.startswith("<html>")
            assert f"<h1>{outage.status_code} " in outage.text
        for limited in answers[1:3]:
            assert limited.json() == {"success": False, "error": "Rate limit exceeded"}
        assert p.wait_idle(30)
        task_id = answers[4].json()["task_id"]
        lookups = [by_id(p, task_id) for _ in range(4)]
        assert [r.status_code for r in lookups] == [503, 200, 503, 200]
        assert lookups[0].headers["Content-Type"].startswith("text/html")
        assert lookups[1].json()["conversion"]["status"] == "FAILED"
        stats = p.stats()
        assert (stats.scripted_errors, stats.accepted, stats.rejected_busy) == (6, 2, 0)

    script = (FlakyStep(402), FlakyStep(403, 7), FlakyStep(), FlakyStep(404))
    with running(ProviderConfig(api_key=KEY, behaviours=behaviours("flaky"), flaky_script=script)) as p:
        credits, forbidden, ok, missing, after = (submit(p, None, NOT_AUDIO) for _ in range(5))
        assert (credits.status_code, credits.json()) == (402, {"success": False, "message": "Insufficient credits"})
        assert "Retry-After" not in credits.headers
        assert (forbidden.status_code, forbidden.json()) == (403, {"detail": "Not authenticated"})
        assert forbidden.headers["Retry-After"] == "7"
        assert (missing.status_code, missing.json()) == (404, {"success": False, "message": "Not Found"})
        assert (ok.status_code, after.status_code) == (200, 200)
        assert p.wait_idle(30)


@with_behaviours("https")
def test_https_serves_outputs_with_a_local_ca(provider: LocalMusicGPT, receiver: Receiver) -> None:
    task_id, (hook,) = run_job(provider, receiver)
    ca = provider.ca_bundle_path
    assert ca is not None
    assert ca.read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert "PRIVATE KEY" not in ca.read_text()
    assert re.fullmatch(r"https://127\.0\.0\.1:\d+", provider.output_base_url)
    assert provider.output_base_url != provider.base_url
    assert provider.api_base_url.startswith("http://")
    url = hook.fields["no_noise_wav"]
    assert url.startswith(provider.output_base_url + "/files/")
    plain = (provider.output_dir / file_name(url)).read_bytes()
    assert requests.get(url, verify=str(ca), timeout=10).content == plain
    localhost = url.replace("://127.0.0.1:", "://localhost:")
    assert requests.get(localhost, verify=str(ca), timeout=10).status_code == 200
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(url, timeout=10)  # the system's trust store does not know the local CA
    http_url = url.replace(provider.output_base_url, provider.base_url)
    assert requests.get(http_url, timeout=10).status_code == 404  # outputs exist at their https URLs only
    conversion = by_id(provider, task_id).json()["conversion"]
    assert conversion["no_noise_wav"] == url


# --- combinations, errors, the command line --------------------------------------------------------------------------


@with_behaviours("early,progress,https,strings,form")
def test_behaviours_combine(provider: LocalMusicGPT, receiver: Receiver) -> None:
    answer = submit(provider, receiver.url)
    task_id = answer.json()["task_id"]
    calls = receiver.for_task(task_id)  # early: all three arrived before the answer
    assert [c.fields["status"] for c in calls[:2]] == ["IN_QUEUE", "IN_PROGRESS"]
    assert len(calls) == 3
    assert {c.content_type for c in calls} == {"application/x-www-form-urlencoded"}
    assert calls[0].fields["eta"] == "10"
    final = calls[2].fields
    assert (final["success"], final["conversion_type"]) == ("true", "DENOISING")
    assert final["no_noise"].startswith(provider.output_base_url)
    assert final["no_noise"].startswith("https://")
    assert provider.stats().callbacks_sent == 3


@with_behaviours("status-only,mp3-only,progress,multipart")
def test_status_only_progress_and_mp3_only_combine(provider: LocalMusicGPT, receiver: Receiver) -> None:
    _, calls = run_job(provider, receiver, callbacks=3)
    assert [c.fields["status"] for c in calls] == ["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]
    for call in calls:
        assert "success" not in call.fields
        assert "conversion_path_wav" not in call.fields
    assert "conversion_path" not in calls[0].fields  # null in a status record: a form has no null, so left out
    assert calls[2].fields["conversion_path"].endswith("_nonoise.mp3")


def test_callbacks_failing_are_counted(receiver: Receiver) -> None:
    config = ProviderConfig(api_key=KEY, behaviours=behaviours("progress"), webhook_attempts=2, webhook_backoff=0.01)
    with running(config) as p:
        answer = submit(p, "http://127.0.0.1:9/nobody-listens", NOT_AUDIO)
        assert answer.status_code == 200
        assert p.wait_idle(30)
        stats = p.stats()
        assert (stats.callbacks_sent, stats.callbacks_failed) == (6, 6)  # 3 callbacks x 2 attempts
        assert (stats.webhooks_delivered, stats.webhooks_failed, stats.failed) == (0, 1, 1)


def test_python_m_local_provider_prints_https_details(tmp_path: Path) -> None:
    env = {**os.environ, "LOCAL_MUSICGPT_BEHAVIOURS": "gzip", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "local.provider", "--behaviour", "https,flaky", "--output-dir", str(tmp_path)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base_url, output_base_url, ca = (proc.stdout.readline().strip() for _ in range(3))
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base_url)
        assert re.fullmatch(r"https://127\.0\.0\.1:\d+", output_base_url)
        assert Path(ca) == tmp_path / "local-musicgpt-ca.pem"
        stats = requests.get(f"{output_base_url}/_local/stats", verify=ca, timeout=10)
        assert stats.json()["accepted"] == 0
        first = requests.post(f"{base_url}/api/public/v1/denoise", timeout=10)
        assert first.status_code == 503  # the flag won over the environment: flaky, not gzip
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.returncode == 0
    assert "behaviours flaky,https" in (proc.stderr.read() if proc.stderr else "")
