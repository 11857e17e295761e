"""Cold import: a fresh interpreter importing each handler vs importing boto3 alone, in a Lambda-like venv.

The venv holds only what the Lambda zip holds (src/requirements.txt) plus boto3 (the runtime provides it), so tools
of the dev venv (SAM CLI's awscrt, pyOpenSSL) do not slow boto3 down the way they would not in Lambda.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from .report import Figure

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / "bench" / "work" / "lambda-venv"
HANDLERS = ("submit", "webhook", "reconcile")
RUNS = 9
TARGET = 1.3


def _venv_python() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)  # noqa: S603
        import boto3

        subprocess.run(  # noqa: S603
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "-r",
                str(REPO / "src" / "requirements.txt"),
                f"boto3=={boto3.__version__}",
            ],
            check=True,
        )
    return python


def _time_import(python: Path, statement: str) -> float:
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO / "src"), "PYTHONDONTWRITEBYTECODE": "1"}
    started = time.perf_counter()
    subprocess.run([str(python), "-c", statement], check=True, env=env, cwd=REPO)  # noqa: S603
    return time.perf_counter() - started


def run() -> tuple[list[Figure], list[str]]:
    python = _venv_python()
    statements = {"bare": "pass", "boto3": "import boto3", "xray": "import aws_xray_sdk.core"} | {
        name: f"import denoise_pipeline.handlers.{name}" for name in HANDLERS
    }
    for statement in statements.values():  # compile .pyc files once, as the Lambda zip would ship them warm
        _time_import(python, statement)
    samples: dict[str, list[float]] = {name: [] for name in statements}
    for _ in range(RUNS):  # interleaved, so drift of the machine hits every candidate alike
        for name, statement in statements.items():
            samples[name].append(_time_import(python, statement))
    median = {name: statistics.median(values) for name, values in samples.items()}
    figures = []
    for name in HANDLERS:
        ratio = median[name] / median["boto3"]
        figures.append(
            Figure(
                "Cold import",
                f"`handlers.{name}` (median of {RUNS})",
                f"{median[name] * 1000:.0f} ms",
                f"import boto3 {median['boto3'] * 1000:.0f} ms",
                ratio,
                f"≤ {TARGET}×",
                ratio <= TARGET,
            )
        )
    import_only = {name: median[name] - median["bare"] for name in statements}
    notes = [
        "Cold import, import time alone (interpreter start-up of "
        f"{median['bare'] * 1000:.0f} ms subtracted): boto3 {import_only['boto3'] * 1000:.0f} ms, "
        + ", ".join(f"{name} {import_only[name] * 1000:.0f} ms" for name in HANDLERS)
        + f". Importing the X-Ray SDK that Powertools Tracer loads takes {import_only['xray'] * 1000:.0f} ms on "
        f"its own (it imports botocore and builds an X-Ray client at import), "
        f"{(import_only['xray'] - import_only['boto3']) * 1000:.0f} ms more than boto3: with Tracer (DESIGN "
        "decision 10) a handler cannot stay within 1.3× of boto3; the rest is Powertools Logger, Metrics, "
        "data classes and event handler, and requests, each needed on every path of its handler.",
    ]
    return figures, notes
