"""Copy: stream a 1 GiB output from a local HTTP server into S3 (moto's server, another process) vs boto3's
`upload_file` of the same number of bytes from disk; and a job's four outputs (1 GiB + 1 GiB + 100 MB + 100 MB)
through the copy workflow vs that one 1 GiB copy. Each repetition runs upload_file, the copy and the job back to
back, each side in a fresh process (bench/copy_probe.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.moto_server import moto_server_process

from .repeat import Spread
from .report import Figure

SIZE = 1024**3
JOB = (SIZE, SIZE, 100_000_000, 100_000_000)
REPETITIONS = 5
THROUGHPUT_TARGET = 0.95
RSS_TARGET_MIB = 48
JOB_TARGET = 1.1
WORK = Path(__file__).resolve().parent / "work"


def _probe(*args: str) -> dict[str, Any]:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}
    env.pop("AWS_ENDPOINT_URL", None)
    done = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "bench.copy_probe", *args], capture_output=True, text=True, check=True, env=env
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@contextmanager
def _origin() -> Iterator[str]:
    server = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "bench.copy_probe", "--serve"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        yield f"http://127.0.0.1:{int(server.stdout.readline())}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def _baseline_file() -> Path:
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / "one-gib.bin"
    if not path.exists() or path.stat().st_size != SIZE:
        chunk = bytes(range(256)) * 4096
        with path.open("wb") as out:
            for _ in range(SIZE // len(chunk)):
                out.write(chunk)
    return path


def run(repetitions: int = REPETITIONS) -> tuple[list[Figure], list[str]]:
    baseline_file = _baseline_file()
    uploads: list[float] = []
    copies: list[dict[str, Any]] = []
    with moto_server_process() as endpoint, _origin() as origin:
        for _ in range(repetitions):
            uploads.append(_probe("--s3-endpoint", endpoint, "--upload-file", str(baseline_file))["seconds"])
            copies.append(
                _probe("--s3-endpoint", endpoint, "--origin", origin, "--single", str(SIZE), "--job", *map(str, JOB))
            )
    mib = SIZE / 2**20
    copy_rate = Spread.of([mib / c["seconds"] for c in copies])
    upload_rate = Spread.of([mib / s for s in uploads])
    throughput = Spread.of([u / c["seconds"] for u, c in zip(uploads, copies, strict=True)])
    growth = Spread.of([c["rss_peak_mib"] - c["rss_before_mib"] for c in copies])
    job_seconds = Spread.of([c["job_seconds"] for c in copies])
    single_seconds = Spread.of([c["seconds"] for c in copies])
    job_ratio = Spread.of([c["job_seconds"] / c["seconds"] for c in copies])
    staged = Spread.of([c["job_staged_seconds"] for c in copies])
    staged_ratio = Spread.of([c["job_staged_seconds"] / c["seconds"] for c in copies])
    job_growth = Spread.of([c["job_rss_peak_mib"] - c["job_rss_before_mib"] for c in copies])
    figures = [
        Figure(
            "Copy 1 GiB",
            "throughput",
            f"{copy_rate.median:.0f} MiB/s",
            f"upload_file {upload_rate.median:.0f} MiB/s",
            throughput.median,
            f"≥ {THROUGHPUT_TARGET}×",
            throughput.median >= THROUGHPUT_TARGET,
            throughput,
        ),
        Figure(
            "Copy 1 GiB",
            "peak RSS above the process baseline",
            f"{growth.median:.0f} MiB",
            f"process before copy {copies[0]['rss_before_mib']:.0f} MiB",
            None,
            f"≤ {RSS_TARGET_MIB} MiB",
            growth.median <= RSS_TARGET_MIB,
            growth,
        ),
        Figure(
            "Copy job",
            "4 outputs (1 GiB + 1 GiB + 100 MB + 100 MB), staged and promoted: time",
            f"{job_seconds.median:.1f} s",
            f"one 1 GiB copy {single_seconds.median:.1f} s",
            job_ratio.median,
            f"≤ {JOB_TARGET}×",
            job_ratio.median <= JOB_TARGET,
            job_ratio,
        ),
        Figure(
            "Copy job",
            "of which staging the 4 outputs (promotion is the rest)",
            f"{staged.median:.1f} s",
            f"one 1 GiB copy {single_seconds.median:.1f} s",
            staged_ratio.median,
            "info",
            None,
            staged_ratio,
        ),
        Figure(
            "Copy job",
            "peak RSS above the process baseline",
            f"{job_growth.median:.0f} MiB",
            "",
            None,
            "info",
            None,
            job_growth,
        ),
    ]
    notes = [
        "Copy: `OutputCopier.copy` from a local HTTP server generating the bytes on the fly; baseline `upload_file` "
        "of a 1 GiB file on disk with boto3's default TransferConfig, in its own process; S3 is moto's server in a "
        "separate process, so its memory is not counted. The job is `workflows.copy.stage_and_promote` (the copy "
        f"workflow's staging and promotion) on the same servers. {repetitions} repetitions of upload_file, copy, job.",
    ]
    return figures, notes
