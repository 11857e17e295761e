"""The whole pipeline offline: real handlers, moto's server, the local MusicGPT with DeepFilterNet, real audio."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
import soundfile as sf

from denoise_pipeline.domain.job import FINAL_STATES, JobStatus
from denoise_pipeline.domain.source import SourceObject
from local.cli import Endpoints, upload
from local.provider.metrics import si_sdr
from local.stack import LocalStack, LocalStackConfig
from tests.e2e.audio import SAMPLES, encode, noisy_sample

pytestmark = pytest.mark.e2e
OUTPUT_NAMES = ("no_noise.mp3", "no_noise.wav", "noise.mp3", "noise.wav")


def jobs_table(endpoints: Endpoints) -> Any:
    """The raw job items, as stored (the CLI itself reads them through the job store)."""
    dynamodb = boto3.resource(
        "dynamodb",
        endpoint_url=endpoints.moto_url,
        region_name="us-east-1",
        aws_access_key_id=endpoints.credentials["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=endpoints.credentials["AWS_SECRET_ACCESS_KEY"],
    )
    return dynamodb.Table(endpoints.jobs_table)


def wait_final(endpoints: Endpoints, job_ids: list[str], timeout: float = 90) -> dict[str, dict[str, Any]]:
    table = jobs_table(endpoints)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = {j: table.get_item(Key={"job_id": j}, ConsistentRead=True).get("Item") or {} for j in job_ids}
        if all(item and JobStatus(item["status"]) in FINAL_STATES for item in items.values()):
            return items
        time.sleep(0.2)
    raise AssertionError(f"jobs not final after {timeout}s: {items}")


def outputs(endpoints: Endpoints, key_stem: str) -> dict[str, bytes]:
    s3 = endpoints.client("s3")
    listed = s3.list_objects_v2(Bucket=endpoints.output_bucket, Prefix=f"denoised/{key_stem}/").get("Contents", [])
    return {
        obj["Key"].rsplit("/", 1)[1]: s3.get_object(Bucket=endpoints.output_bucket, Key=obj["Key"])["Body"].read()
        for obj in listed
    }


def dead_letters(stack: LocalStack) -> int:
    assert stack.resources is not None
    sqs = boto3.client("sqs")
    total = 0
    for queue in ("SubmitFailureQueue", "CopyDeadLetterQueue", "AdmissionDeadLetterQueue"):
        attributes = sqs.get_queue_attributes(
            QueueUrl=stack.resources.ref(queue), AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        total += int(attributes["ApproximateNumberOfMessages"])
    return total


@pytest.fixture
def stack(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LocalStack]:
    overrides: dict[str, Any] = getattr(request, "param", {})
    with LocalStack(LocalStackConfig(state_dir=tmp_path / "state", **overrides)) as running:
        yield running


def endpoints_of(stack: LocalStack) -> Endpoints:
    return Endpoints.from_state(stack.state())


def test_noisy_speech_becomes_four_outputs_and_gets_cleaner(stack: LocalStack, tmp_path: Path) -> None:
    endpoints = endpoints_of(stack)
    job_id = upload(endpoints, SAMPLES / "noisy_speech.wav", "tests/noisy speech+1.wav")

    item = wait_final(endpoints, [job_id])[job_id]

    assert item["status"] == "COMPLETED", item
    files = outputs(endpoints, "tests/noisy speech+1")
    assert sorted(files) == sorted(OUTPUT_NAMES)
    clean, _ = sf.read(SAMPLES / "clean_speech.wav", dtype="float32")
    noisy = noisy_sample()
    (tmp_path / "no_noise.wav").write_bytes(files["no_noise.wav"])
    (tmp_path / "noise.wav").write_bytes(files["noise.wav"])
    cleaned, rate = sf.read(tmp_path / "no_noise.wav", dtype="float32")
    removed, _ = sf.read(tmp_path / "noise.wav", dtype="float32")
    assert rate == 48_000
    assert len(cleaned) == len(noisy)
    gain = si_sdr(clean, cleaned) - si_sdr(clean, noisy)
    assert gain >= 8.0, f"SI-SDR gain {gain:.1f} dB"
    residual = noisy - cleaned - removed  # noise = input - no_noise, up to 16-bit rounding
    assert float(np.max(np.abs(residual))) < 1e-3
    assert stack.provider is not None
    assert stack.provider.stats().duplicate_submissions == 0


def test_m4a_and_stereo_mp3_inputs(stack: LocalStack) -> None:
    endpoints = endpoints_of(stack)
    mono = noisy_sample()[: 48_000 * 2]
    stereo = np.stack([mono, mono[::-1].copy()])
    paths = {"voice.m4a": encode(mono[None, :], "mp4", "aac"), "duet.mp3": encode(stereo, "mp3", "libmp3lame", 44_100)}
    job_ids = []
    for name, data in paths.items():
        s3 = endpoints.client("s3")
        put = s3.put_object(Bucket=endpoints.input_bucket, Key=f"formats/{name}", Body=data)
        job_ids.append(SourceObject(endpoints.input_bucket, f"formats/{name}", len(data), "", put["VersionId"]).job_id)

    items = wait_final(endpoints, job_ids)

    assert [item["status"] for item in items.values()] == ["COMPLETED", "COMPLETED"]
    wav = outputs(endpoints, "formats/duet")["no_noise.wav"]
    info = sf.info(__import__("io").BytesIO(wav))
    assert info.channels == 2
    assert sorted(outputs(endpoints, "formats/voice")) == sorted(OUTPUT_NAMES)


def test_unreadable_audio_ends_failed_with_the_providers_message(stack: LocalStack, tmp_path: Path) -> None:
    endpoints = endpoints_of(stack)
    bogus = tmp_path / "broken.wav"
    bogus.write_bytes(b"this is not audio at all" * 100)

    item = wait_final(endpoints, [upload(endpoints, bogus)])

    (job,) = item.values()
    assert job["status"] == "FAILED"
    assert job["error_code"] == "CONVERSION_FAILED"
    assert job["error_message"]


@pytest.mark.parametrize("stack", [{"parameters": {"MusicGptApiKey": "not-the-providers-key"}}], indirect=True)
def test_wrong_api_key_fails_the_job_once_with_401(stack: LocalStack) -> None:
    endpoints = endpoints_of(stack)

    item = wait_final(endpoints, [upload(endpoints, SAMPLES / "noisy_speech.wav")])

    (job,) = item.values()
    assert job["status"] == "FAILED"
    assert job["error_code"] == "PROVIDER_AUTH"
    assert "401" in job["error_message"]
    assert stack.functions["SubmitFunction"].errors == 0  # a bad key is final: no retry storm


@pytest.mark.parametrize(
    "stack", [{"max_parallel_jobs": 4, "provider_max_parallel": 1, "provider_retry_after": 1}], indirect=True
)
def test_provider_429_queues_jobs_which_drain_when_it_frees_up(stack: LocalStack) -> None:
    """Our own limit (4) is above the provider's (1): the provider's 429 sends jobs to QUEUED, not to a DLQ."""
    endpoints = endpoints_of(stack)
    short = SAMPLES / "noisy_speech.wav"
    job_ids = [upload(endpoints, short, f"burst/take{i}.wav") for i in range(4)]

    items = wait_final(endpoints, job_ids, timeout=120)

    assert {item["status"] for item in items.values()} == {"COMPLETED"}
    assert stack.provider is not None
    stats = stack.provider.stats()
    assert stats.rejected_busy >= 1  # the provider did answer 429
    assert stats.peak_in_flight == 1
    assert stats.duplicate_submissions == 0
    assert dead_letters(stack) == 0


def test_denoise_local_up_serves_uploads_from_another_process(tmp_path: Path) -> None:
    """What `denoise-local up` prints is enough to use the stack from the AWS CLI (here: boto3 in this process)."""
    state_dir = tmp_path / "state"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "local.cli", "--state-dir", str(state_dir), "up"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while not (state_dir / "state.json").exists():
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline
            time.sleep(0.2)
        state = json.loads((state_dir / "state.json").read_text())
        endpoints = Endpoints.from_state(state)
        # What of the transformed template is not emulated is said, never silently ignored.
        assert {"AlarmTopic (AWS::SNS::Topic)", "AlarmTopicKey (AWS::KMS::Key)"} <= set(state["not_emulated"])
        assert not any(
            entry.startswith(("InputBucket ", "CopyQueue ", "SubmitFunction ", "SubmitRole "))
            for entry in state["not_emulated"]
        )
        job_id = upload(endpoints, SAMPLES / "noisy_speech.wav", "cli/noisy.wav")
        assert wait_final(endpoints, [job_id])[job_id]["status"] == "COMPLETED"
        assert sorted(outputs(endpoints, "cli/noisy")) == sorted(OUTPUT_NAMES)

        listed = subprocess.run(  # noqa: S603
            [sys.executable, "-m", "local.cli", "--state-dir", str(state_dir), "jobs"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert job_id in listed.stdout
        assert "COMPLETED" in listed.stdout
        fetched = subprocess.run(  # noqa: S603
            [sys.executable, "-m", "local.cli", "--state-dir", str(state_dir), "fetch", job_id, str(tmp_path / "out")],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(OUTPUT_NAMES), fetched.stdout
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert "stopped" in output
    # The printed variables are enough for the AWS CLI (IAM is enforced: any other key is refused).
    printed = dict(
        line.strip().removeprefix("export ").split("=", 1) for line in output.splitlines() if "export " in line
    )
    assert printed["AWS_ACCESS_KEY_ID"] == state["credentials"]["AWS_ACCESS_KEY_ID"]
    assert printed["AWS_SECRET_ACCESS_KEY"] == state["credentials"]["AWS_SECRET_ACCESS_KEY"]
    assert printed["AWS_ENDPOINT_URL"] == state["moto_url"]
    webhook_log = Path(state["logs"]["WebhookFunction"]).read_text(encoding="utf-8")
    assert '"message":"copy finished"' in webhook_log  # the copy worker logs as its own function
    assert '"function_name":"denoise-local-WebhookFunction"' in webhook_log
    assert "SubmitFunction" not in webhook_log


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "local.cli", "--state-dir", str(tmp_path), "jobs"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("error: no local stack is running")


@pytest.mark.parametrize("stack", [{"max_parallel_jobs": 2, "provider_max_parallel": 2}], indirect=True)
def test_fifty_files_drain_through_two_provider_slots(stack: LocalStack) -> None:
    """Issue 7's acceptance run: 50 files at once, a provider that takes 2 jobs at a time (429 beyond)."""
    endpoints = endpoints_of(stack)
    s3 = endpoints.client("s3")
    rng = np.random.default_rng(7)
    job_ids = []
    for i in range(50):
        buffer = __import__("io").BytesIO()
        sf.write(buffer, (rng.standard_normal(4800) * 0.05).astype(np.float32), 48_000, format="WAV")
        body = buffer.getvalue()
        put = s3.put_object(Bucket=endpoints.input_bucket, Key=f"fifty/{i:02d}.wav", Body=body)
        job_ids.append(
            SourceObject(endpoints.input_bucket, f"fifty/{i:02d}.wav", len(body), "", put["VersionId"]).job_id
        )

    items = wait_final(endpoints, job_ids, timeout=150)

    assert [item["status"] for item in items.values()].count("COMPLETED") == 50
    assert stack.provider is not None
    stats = stack.provider.stats()
    assert stats.peak_in_flight <= 2
    assert stats.accepted == 50
    assert stats.duplicate_submissions == 0
    assert stats.callbacks_failed == 0  # every callback answered 2xx (side-by-side handlers once crossed bodies: 409)
    assert dead_letters(stack) == 0
