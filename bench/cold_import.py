"""Cold import: a fresh interpreter importing each handler vs importing boto3 alone, in a Lambda-like venv.

The venv holds only what the Lambda zip holds (src/requirements.txt) plus boto3 (the runtime provides it), so tools
of the dev venv (SAM CLI's awscrt, pyOpenSSL) do not slow boto3 down the way they would not in Lambda.
The environment is the one Lambda gives the function: its runtime variables and the template's plain Globals
variables. It matters: outside Lambda the X-Ray SDK builds two botocore X-Ray clients for centralised sampling at
import (~100 ms), inside Lambda it samples locally and Powertools Tracer patches boto3 and requests instead.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from local.template import Template

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


def lambda_environment() -> dict[str, str]:
    """What a Lambda python3.x process sees: runtime variables plus the template's literal Globals variables."""
    template = Template.load()
    runtime = str(template.document["Globals"]["Function"]["Runtime"])
    variables = template.document["Globals"]["Function"]["Environment"]["Variables"]
    return {name: value for name, value in variables.items() if isinstance(value, str)} | {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(REPO / "src"),
        "PYTHONDONTWRITEBYTECODE": "1",
        "LAMBDA_TASK_ROOT": str(REPO / "src"),
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{runtime}",
        "AWS_LAMBDA_FUNCTION_NAME": "denoise-bench",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(template.document["Globals"]["Function"]["MemorySize"]),
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def _time_import(python: Path, statement: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([str(python), "-c", statement], check=True, env=env, cwd=REPO)  # noqa: S603
    return time.perf_counter() - started


def import_breakdown(python: Path, module: str, env: dict[str, str]) -> dict[str, float]:
    """Self import time (s) of what `module` adds on top of boto3, by top-level package (`-X importtime`)."""
    result = subprocess.run(  # noqa: S603
        [str(python), "-X", "importtime", "-c", f"import boto3; import {module}"],
        check=True,
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    totals: dict[str, float] = {}
    after_boto3 = False
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _, name = line.removeprefix("import time:").split("|")
        if name == " boto3":
            after_boto3 = True
            continue
        if after_boto3:
            package = name.strip().split(".")[0]
            totals[package] = totals.get(package, 0.0) + int(self_us) / 1e6
    return totals


def run() -> tuple[list[Figure], list[str]]:
    python = _venv_python()
    env = lambda_environment()
    statements = {"bare": "pass", "boto3": "import boto3"} | {
        name: f"import denoise_pipeline.handlers.{name}" for name in HANDLERS
    }
    for statement in statements.values():  # compile .pyc files once, as the Lambda zip would ship them warm
        _time_import(python, statement, env)
    samples: dict[str, list[float]] = {name: [] for name in statements}
    for _ in range(RUNS):  # interleaved, so drift of the machine hits every candidate alike
        for name, statement in statements.items():
            samples[name].append(_time_import(python, statement, env))
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
    breakdowns = []
    for name in HANDLERS:
        parts = import_breakdown(python, f"denoise_pipeline.handlers.{name}", env)
        largest = sorted(parts.items(), key=lambda item: -item[1])[:6]
        breakdowns.append(f"{name}: " + ", ".join(f"{package} {seconds * 1000:.1f}" for package, seconds in largest))
    notes = [
        "Cold import in Lambda's environment (LAMBDA_TASK_ROOT, AWS_LAMBDA_FUNCTION_NAME, the template's Globals), "
        f"import time alone (interpreter start-up of {median['bare'] * 1000:.0f} ms subtracted): "
        f"boto3 {import_only['boto3'] * 1000:.0f} ms, "
        + ", ".join(f"{name} {import_only[name] * 1000:.0f} ms" for name in HANDLERS)
        + ". What each handler adds on top of boto3 (ms of self import time by package, `-X importtime`, largest "
        "first): " + "; ".join(breakdowns) + ".",
    ]
    return figures, notes
