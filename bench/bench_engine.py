"""Benchmark the local denoise engine: real-time factor and peak memory versus input length.

    python bench/bench_engine.py [--seconds 10 600] [--channels 1] [--json out.json]

Each length runs in a fresh subprocess pinned to one CPU (``os.sched_setaffinity``) with
``OMP_NUM_THREADS``/``RAYON_NUM_THREADS`` = 1, so the RTF is a one-core figure and ``ru_maxrss`` is that run's own
peak. The input is the bundled noisy sample looped to length (PCM16 wav, 48 kHz); RTF = wall time of
``denoise_file`` (decode + DeepFilterNet + 2 wav + 2 mp3 encodes, model load included) / audio duration.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "local" / "samples" / "noisy_speech.wav"


def child(seconds: float, channels: int) -> dict[str, float]:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    import numpy as np
    import soundfile as sf

    from local.provider.engine import denoise_file

    base, rate = sf.read(SAMPLE, dtype="float32")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.wav"
        with sf.SoundFile(src, "w", rate, channels, subtype="PCM_16") as f:
            left = int(seconds * rate)
            while left > 0:
                chunk = base[:left]
                f.write(np.stack([chunk] * channels, axis=1) if channels > 1 else chunk)
                left -= len(chunk)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        out = denoise_file(src, tmp, "bench")
        elapsed = time.perf_counter() - started
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "seconds": seconds,
        "channels": channels,
        "wall_s": round(elapsed, 3),
        "rtf": round(elapsed / out.duration_seconds, 4),
        "peak_rss_mb": round(rss_after / 1024, 1),
        "rss_before_mb": round(rss_before / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, nargs="+", default=[10.0, 600.0])
    parser.add_argument("--channels", type=int, default=1, choices=[1, 2])
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.channels)))
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAYON_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    results = []
    for seconds in args.seconds:
        run = subprocess.run(
            [sys.executable, __file__, "--child", str(seconds), "--channels", str(args.channels)],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        result = json.loads(run.stdout.strip().splitlines()[-1])
        results.append(result)
        print(
            f"{seconds:7.0f} s x{args.channels}: wall {result['wall_s']:7.2f} s  RTF {result['rtf']:.4f}  "
            f"peak RSS {result['peak_rss_mb']:.0f} MB (before run {result['rss_before_mb']:.0f} MB)"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
