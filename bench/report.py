"""Figures and the markdown report."""

from __future__ import annotations

import platform
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class Figure:
    benchmark: str
    measure: str
    value: str
    baseline: str
    ratio: float | None
    target: str
    met: bool | None

    def row(self) -> str:
        ratio = "" if self.ratio is None else f"{self.ratio:.2f}×"
        verdict = {True: "met", False: "**missed**", None: "info"}[self.met]
        cells = (self.benchmark, self.measure, self.value, self.baseline, ratio, self.target, verdict)
        return "| " + " | ".join(cells) + " |"


def machine() -> str:
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in open("/proc/cpuinfo", encoding="utf-8")  # noqa: SIM115 - read once
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        cpu = platform.processor() or "unknown CPU"
    cores = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip()  # noqa: S607
    return f"{cpu}, {cores} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def render(figures: list[Figure], notes: list[str], seconds: float) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}; `make bench` took {seconds:.0f} s.",
        "Each ratio is value ÷ baseline, both measured in the same run.",
        "",
        "| Benchmark | Measure | Value | Baseline | Ratio | Target | Verdict |",
        "|---|---|---|---|---|---|---|",
        *(figure.row() for figure in figures),
        "",
        "## Notes",
        "",
        *(f"- {note}" for note in notes),
        "",
    ]
    return "\n".join(lines)
