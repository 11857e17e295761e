"""`python -m bench` (`make bench`): run every benchmark, write bench/results.md and print it.

`python -m bench --only copy burst --repetitions 2` runs some suites with fewer repetitions and prints their
figures without touching results.md (a partial or shortened run is not the recorded result)."""

from __future__ import annotations

import argparse
import inspect
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import burst, cold_import, copy_throughput, webhook_ack
from .report import Figure, render

RESULTS = Path(__file__).resolve().parent / "results.md"
ENGINE_LENGTHS = (10, 60, 600)
ENGINE_RTF_TARGET = 0.25
ENGINE_SHORT_JOBS = 40
ENGINE_ZYGOTE_CPU_TARGET = 0.25


def _bench_engine(out: Path, *arguments: str) -> Any:
    """Run bench/bench_engine.py in its own process with `arguments` and read the JSON it writes to `out`."""
    subprocess.run(  # noqa: S603 - our own script
        [sys.executable, str(Path(__file__).with_name("bench_engine.py")), *arguments, "--json", str(out)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.read_text())


def engine() -> tuple[list[Figure], list[str]]:
    """The local provider's denoiser on one core: real-time factor and peak memory per input length."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "engine.json"
        runs = _bench_engine(out, "--seconds", *map(str, ENGINE_LENGTHS))
        jobs = _bench_engine(out, "--short-jobs", str(ENGINE_SHORT_JOBS))
    shortest, longest = runs[0], runs[-1]
    figures = [
        Figure(
            "Local engine",
            f"real-time factor, {run['seconds']:.0f} s input, 1 core",
            f"{run['rtf']:.3f}",
            "audio duration",
            run["rtf"],
            f"≤ {ENGINE_RTF_TARGET}",
            run["rtf"] <= ENGINE_RTF_TARGET,
        )
        for run in runs
    ]
    linear = longest["rtf"] / shortest["rtf"]
    figures.append(
        Figure(
            "Local engine",
            f"RTF {longest['seconds']:.0f} s ÷ RTF {shortest['seconds']:.0f} s",
            f"{linear:.2f}",
            "1.0 = linear in length",
            linear,
            "≤ 1.2 (linear)",
            linear <= 1.2,
        )
    )
    growth = longest["peak_rss_mb"] / shortest["peak_rss_mb"]
    figures.append(
        Figure(
            "Local engine",
            f"peak RSS, {longest['seconds']:.0f} s vs {shortest['seconds']:.0f} s input",
            f"{longest['peak_rss_mb']:.0f} MB",
            f"{shortest['peak_rss_mb']:.0f} MB",
            growth,
            "≤ 1.2× (bounded)",
            growth <= 1.2,
        )
    )
    cpu_ratio = jobs["zygote_cpu_s_per_job"] / jobs["in_thread_cpu_s_per_job"]
    figures.append(
        Figure(
            "Local engine",
            f"CPU per 0.1 s job, zygote vs in-thread ({jobs['jobs']} jobs, 1 core)",
            f"{jobs['zygote_cpu_s_per_job']:.3f} CPU-s",
            f"{jobs['in_thread_cpu_s_per_job']:.3f} CPU-s",
            cpu_ratio,
            f"≤ {ENGINE_ZYGOTE_CPU_TARGET}×",
            cpu_ratio <= ENGINE_ZYGOTE_CPU_TARGET,
        )
    )
    figures.append(
        Figure(
            "Local engine",
            f"wall per 0.1 s job, zygote vs in-thread ({jobs['jobs']} jobs, 1 core)",
            f"{jobs['zygote_wall_s_per_job']:.3f} s",
            f"{jobs['in_thread_wall_s_per_job']:.3f} s",
            jobs["zygote_wall_s_per_job"] / jobs["in_thread_wall_s_per_job"],
            "info",
            None,
        )
    )
    notes = [
        "Local engine: bench/bench_engine.py, each length in a fresh process pinned to one CPU; RTF = wall time of "
        "decode + DeepFilterNet 3 + two wav and two mp3 encodes (model load included) ÷ audio length.",
        f"Local engine, 0.1 s jobs: bench/bench_engine.py --short-jobs {jobs['jobs']}, one process pinned to one CPU, "
        "jobs one after the other; in-thread = denoise_file (fresh DeepFilterNet states: a model load per job), "
        "zygote = the provider's (local/provider/zygote.py: a fork of pristine states per job). CPU = the process "
        "and its children (the zygote's job children included), excluding the zygote's one-off start-up "
        f"({jobs['zygote_start_cpu_s']} CPU-s, {jobs['zygote_start_wall_s']:.2f} s wall).",
    ]
    return figures, notes


SUITES: dict[str, Callable[[], tuple[list[Figure], list[str]]]] = {
    "cold-import": cold_import.run,
    "webhook-ack": webhook_ack.run,
    "copy": copy_throughput.run,
    "burst": burst.run,
    "engine": engine,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=list(SUITES), help="run only these suites; results.md is kept")
    parser.add_argument("--repetitions", type=int, help="repetitions per repeated suite (default: each suite's own)")
    args = parser.parse_args()
    started = time.monotonic()
    figures: list[Figure] = []
    notes: list[str] = []
    for name in args.only or SUITES:
        suite = SUITES[name]
        print(f"running {name}...", file=sys.stderr, flush=True)
        if args.repetitions and "repetitions" in inspect.signature(suite).parameters:
            suite_figures, suite_notes = suite(repetitions=args.repetitions)  # type: ignore[call-arg]
        else:
            suite_figures, suite_notes = suite()
        for figure in suite_figures:
            print(figure.line(), file=sys.stderr, flush=True)
        figures += suite_figures
        notes += suite_notes
    report = render(figures, notes, time.monotonic() - started)
    if not args.only and not args.repetitions:
        RESULTS.write_text(report, encoding="utf-8")
    print(report)


if __name__ == "__main__":
    main()
