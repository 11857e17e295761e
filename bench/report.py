"""Figures and the markdown report."""

from __future__ import annotations

import platform
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime

from .repeat import Spread


@dataclass(frozen=True)
class Figure:
    benchmark: str
    measure: str
    value: str
    baseline: str
    ratio: float | None
    target: str
    met: bool | None
    spread: Spread | None = None
    """The ratio (or, without a ratio, the value) over the repetitions; `ratio` is then its median."""

    def row(self) -> str:
        ratio = "" if self.ratio is None else f"{self.ratio:.2f}×"
        spread = ""
        if self.spread is not None:
            unit = "×" if self.ratio is not None else ""
            spread = f"{self.spread.low:.2f}{unit} – {self.spread.high:.2f}{unit} (n={self.spread.runs})"
        verdict = {True: "met", False: "**missed**", None: "info"}[self.met]
        cells = (self.benchmark, self.measure, self.value, self.baseline, ratio, spread, self.target, verdict)
        return "| " + " | ".join(cells) + " |"

    def line(self) -> str:
        """One line for the terminal: the ratio (median) with its spread, and the verdict."""
        verdict = {True: "MET", False: "MISSED", None: "info"}[self.met]
        ratio = "" if self.ratio is None else f" → {self.ratio:.2f}×"
        spread = (
            ""
            if self.spread is None
            else f" [min {self.spread.low:.2f}, max {self.spread.high:.2f}, n={self.spread.runs}]"
        )
        figure = f"{self.benchmark}: {self.measure}: {self.value} vs {self.baseline}"
        return f"{verdict:6} {figure}{ratio}{spread} (target {self.target})"


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
    spreads = [figure.spread for figure in figures if figure.spread is not None and figure.ratio is not None]
    widest = max(spreads, key=Spread.width, default=None)
    lines = [
        "# Benchmark results",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}; `make bench` took {seconds:.0f} s.",
        "Each ratio is value ÷ baseline, the two measured back to back in the same process (A, B, A, B …) so that "
        "drift in the machine's load hits both; a repeated ratio is the median over its repetitions (n), the values "
        "beside it the smallest and largest repetition, and the verdict is taken on the median.",
        *(
            [
                f"Repetitions: {min(s.runs for s in spreads)} to {max(s.runs for s in spreads)} per ratio; the widest "
                f"spread was {widest.width():.0%} of its median ({widest.low:.2f}× – {widest.high:.2f}×)."
            ]
            if widest is not None
            else []
        ),
        "",
        "| Benchmark | Measure | Value (median) | Baseline (median) | Ratio (median) | Spread (min – max) | Target "
        "| Verdict |",
        "|---|---|---|---|---|---|---|---|",
        *(figure.row() for figure in figures),
        "",
        "## Notes",
        "",
        *(f"- {note}" for note in notes),
        "",
    ]
    return "\n".join(lines)
