"""A 200 MB output is streamed: peak memory of the copying process stays far below the file's size."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.moto_server import moto_server_process

SIZE = 200 * 1024 * 1024


def test_200_mb_output_is_copied_with_bounded_memory() -> None:
    with moto_server_process() as endpoint:
        env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
        completed = subprocess.run(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "local.copy_probe", "--size", str(SIZE), "--s3-endpoint", endpoint],
            capture_output=True,
            text=True,
            timeout=240,
            env=env,
            check=True,
        )
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["bytes"] == SIZE
    assert result["stored_bytes"] == SIZE
    growth = result["rss_peak_mib"] - result["rss_before_mib"]
    assert growth < 100, f"copy grew RSS by {growth:.0f} MiB for a {SIZE // 2**20} MiB file"
