"""Benchmark the local denoise engine: real-time factor and peak memory versus input length.

    python bench/bench_engine.py [--seconds 10 600] [--channels 1] [--json out.json]
    python bench/bench_engine.py --short-jobs 40 [--json out.json]

Each length runs in a fresh subprocess pinned to one CPU (``os.sched_setaffinity``) with
``OMP_NUM_THREADS``/``RAYON_NUM_THREADS`` = 1, so the RTF is a one-core figure and ``ru_maxrss`` is that run's own
peak. The input is the bundled noisy sample looped to length (PCM16 wav, 48 kHz); RTF = wall time of
``denoise_file`` (decode + DeepFilterNet + 2 wav + 2 mp3 encodes, model load included) / audio duration.

``--short-jobs N`` (the provider's case: many short files) runs N jobs of the sample's first 0.1 s (mono), one after
the other in one fresh subprocess pinned to one CPU, first in-thread (``denoise_file``: fresh DFN states, so a model
load per job) then through the provider's zygote (``local.provider.zygote``: one fork of pristine states per job).
CPU = ``getrusage`` of the process plus its children (the zygote is closed, so reaped, before the last reading, and
reaps its job children itself: its rusage includes theirs); the zygote's start-up is also reported on its own
(``/proc/<zygote>/stat``, Linux) and the per-job figure excludes it. Wall = the N jobs' wall time / N.
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


def _cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and of its reaped children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _proc_cpu_seconds(pid: int) -> float | None:
    """utime + stime + cutime + cstime of a live process (Linux /proc), else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def short_jobs(jobs: int) -> dict[str, float | int | None]:
    """CPU and wall per 0.1 s mono job: in-thread ``denoise_file`` versus the zygote. See the module docstring."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    import soundfile as sf

    from local.provider.engine import denoise_file
    from local.provider.zygote import Zygote

    base, rate = sf.read(SAMPLE, dtype="float32")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "short.wav"
        sf.write(src, base[: rate // 10], rate, subtype="PCM_16")
        cpu, wall = _cpu_seconds(), time.perf_counter()
        for i in range(jobs):
            denoise_file(src, Path(tmp) / "thread", f"job{i}")
        thread_cpu, thread_wall = _cpu_seconds() - cpu, time.perf_counter() - wall

        cpu, wall = _cpu_seconds(), time.perf_counter()
        zygote = Zygote().start()
        start_wall = time.perf_counter() - wall
        assert zygote.pid is not None
        start_cpu = _proc_cpu_seconds(zygote.pid)
        wall = time.perf_counter()
        for i in range(jobs):
            zygote.denoise(src, Path(tmp) / "zygote", f"job{i}")
        zygote_wall = time.perf_counter() - wall
        zygote.close()
        zygote_cpu = _cpu_seconds() - cpu
    steady = (zygote_cpu - (start_cpu or 0.0)) / jobs  # without /proc: start-up included (an upper bound)
    return {
        "jobs": jobs,
        "in_thread_cpu_s_per_job": round(thread_cpu / jobs, 4),
        "in_thread_wall_s_per_job": round(thread_wall / jobs, 4),
        "zygote_cpu_s_per_job": round(steady, 4),
        "zygote_cpu_s_per_job_with_start": round(zygote_cpu / jobs, 4),
        "zygote_wall_s_per_job": round(zygote_wall / jobs, 4),
        "zygote_start_cpu_s": None if start_cpu is None else round(start_cpu, 3),
        "zygote_start_wall_s": round(start_wall, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, nargs="+", default=[10.0, 600.0])
    parser.add_argument("--channels", type=int, default=1, choices=[1, 2])
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--short-jobs", type=int, metavar="N", help="CPU and wall per 0.1 s job, in-thread vs zygote")
    parser.add_argument("--child", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--short-jobs-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.channels)))
        return
    if args.short_jobs_child is not None:
        print(json.dumps(short_jobs(args.short_jobs_child)))
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAYON_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    if args.short_jobs is not None:
        run = subprocess.run(
            [sys.executable, __file__, "--short-jobs-child", str(args.short_jobs)],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        jobs = json.loads(run.stdout.strip().splitlines()[-1])
        print(
            f"{jobs['jobs']} jobs of 0.1 s, 1 core: in-thread {jobs['in_thread_cpu_s_per_job']:.3f} CPU-s and "
            f"{jobs['in_thread_wall_s_per_job']:.3f} s wall per job; zygote {jobs['zygote_cpu_s_per_job']:.3f} CPU-s "
            f"({jobs['zygote_cpu_s_per_job_with_start']:.3f} with its start-up) and {jobs['zygote_wall_s_per_job']:.3f}"
            f" s wall per job; zygote start-up {jobs['zygote_start_cpu_s']} CPU-s, {jobs['zygote_start_wall_s']:.2f} s"
        )
        if args.json:
            args.json.write_text(json.dumps(jobs, indent=2) + "\n")
        return
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
