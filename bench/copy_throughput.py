"""Copy: stream a 1 GiB output from a local HTTP server into S3 (moto's server, another process) vs boto3's
`upload_file` of the same number of bytes from disk, both from one probe process (local/copy_probe.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.moto_server import moto_server_process

from .report import Figure

SIZE = 1024**3
WORK = Path(__file__).resolve().parent / "work"


def run() -> tuple[list[Figure], list[str]]:
    WORK.mkdir(parents=True, exist_ok=True)
    baseline_file = WORK / "one-gib.bin"
    if not baseline_file.exists() or baseline_file.stat().st_size != SIZE:
        chunk = bytes(range(256)) * 4096
        with baseline_file.open("wb") as out:
            for _ in range(SIZE // len(chunk)):
                out.write(chunk)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}
    env.pop("AWS_ENDPOINT_URL", None)
    with moto_server_process() as endpoint:
        probe = subprocess.run(  # noqa: S603 - our own interpreter and module
            [
                sys.executable,
                "-m",
                "local.copy_probe",
                "--size",
                str(SIZE),
                "--s3-endpoint",
                endpoint,
                "--baseline-file",
                str(baseline_file),
            ],
            capture_output=True,
            text=True,
            check=True,
            env=env,
            timeout=600,
        )
    result = json.loads(probe.stdout.strip().splitlines()[-1])
    assert result["stored_bytes"] == SIZE
    mib = SIZE / 2**20
    copy_rate, baseline_rate = mib / result["seconds"], mib / result["baseline_seconds"]
    growth = result["rss_peak_mib"] - result["rss_before_mib"]
    figures = [
        Figure(
            "Copy 1 GiB",
            "throughput",
            f"{copy_rate:.0f} MiB/s",
            f"upload_file {baseline_rate:.0f} MiB/s",
            copy_rate / baseline_rate,
            "≥ 0.8×",
            copy_rate / baseline_rate >= 0.8,
        ),
        Figure(
            "Copy 1 GiB",
            "peak RSS above the process baseline",
            f"{growth:.0f} MiB",
            f"process before copy {result['rss_before_mib']:.0f} MiB",
            None,
            "≤ 64 MiB",
            growth <= 64,
        ),
    ]
    notes = [
        "Copy: `OutputCopier.copy` (requests streaming → `upload_fileobj`, 8 MiB parts, 4 in memory, 4 threads) "
        "from a local HTTP server generating the bytes on the fly; baseline `upload_file` of a 1 GiB file on disk "
        "with boto3's default TransferConfig; S3 is moto's server in a separate process, so its memory is not counted.",
    ]
    return figures, notes
