"""Cold import of each handler from the built artifact, the way Lambda loads it, vs `import boto3` alone.

What ships is measured: `.aws-sam/build/<Function>` as `make build` (sam build + src/Makefile) leaves it, rebuilt
when src/ or template.yaml changed (local.lambdas.runtime). Each sample is a fresh `python -S -P` process of the
runtime's Python with PYTHONDONTWRITEBYTECODE=1, sys.path = [artifact, runtime SDK] and Lambda's variables (the
template's Globals). The runtime SDK directory holds boto3/botocore/s3transfer/jmespath/dateutil/six at the versions of
src/lambda-runtime.txt, compiled with timestamp .pyc files as the runtime image ships them. Candidates run
interleaved (boto3, submit, boto3, webhook, ...), so drift of a busy machine hits each pair alike; the import is
timed inside the process (perf_counter around the statement).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import zipfile
from pathlib import Path

from local.aws.template import Template
from local.lambdas.runtime import ensure_artifacts, ensure_runtime

from .repeat import Spread
from .report import Figure

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "bench" / "work"
HANDLERS = {"submit": "SubmitFunction", "webhook": "WebhookFunction", "reconcile": "ReconcileFunction"}
RUNS = 15
TARGET = 1.3
ZIP_LIMIT_MB = 5.0


def lambda_environment(artifact: Path, sdk: Path) -> dict[str, str]:
    """What a Lambda python process sees: runtime variables plus the template's literal Globals variables."""
    template = Template.load()
    function = template.document["Globals"]["Function"]
    variables = function["Environment"]["Variables"]
    return {name: value for name, value in variables.items() if isinstance(value, str)} | {
        "PATH": "/usr/bin:/bin",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "PYTHONPATH": f"{artifact}:{sdk}",
        "PYTHONDONTWRITEBYTECODE": "1",
        "LAMBDA_TASK_ROOT": str(artifact),
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{function['Runtime']}",
        "AWS_LAMBDA_FUNCTION_NAME": "denoise-bench",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function["MemorySize"]),
        "AWS_LAMBDA_LOG_FORMAT": "JSON",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_SERVICE_NAME": "denoise-bench",
    }


def _time_import(python: str, statement: str, env: dict[str, str], cwd: Path) -> float:
    code = f"import time as _t\n_s = _t.perf_counter()\n{statement}\nprint(_t.perf_counter() - _s)"
    out = subprocess.run(  # noqa: S603
        [python, "-S", "-P", "-c", code], env=env, cwd=cwd, check=True, capture_output=True, text=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def zip_megabytes(artifact: Path) -> float:
    """The artifact zipped as `sam package` zips it (deflate)."""
    WORK.mkdir(parents=True, exist_ok=True)
    target = WORK / f"{artifact.name}.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(artifact.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(artifact))
    return target.stat().st_size / 1e6


def run() -> tuple[list[Figure], list[str]]:
    built = ensure_artifacts(list(HANDLERS.values()))  # `make build` when src/ or the template changed
    runtime = ensure_runtime()  # the runtime's SDK directory, shared with the local stack
    python = str(runtime.python)
    figures: list[Figure] = []
    medians: dict[str, tuple[float, float]] = {}
    for name, function in HANDLERS.items():
        artifact = built[function]
        env = lambda_environment(artifact, runtime.sdk_dir)
        pair = {"boto3": "import boto3", name: f"import denoise_pipeline.handlers.{name}"}
        for statement in pair.values():  # warm the page cache; a failing import fails here
            _time_import(python, statement, env, artifact)
        ratios, handler_s, boto3_s = [], [], []
        for _ in range(RUNS):  # A, B, A, B ...
            baseline = _time_import(python, pair["boto3"], env, artifact)
            measured = _time_import(python, pair[name], env, artifact)
            boto3_s.append(baseline)
            handler_s.append(measured)
            ratios.append(measured / baseline)
        spread = Spread.of(ratios)
        medians[name] = (statistics.median(handler_s), statistics.median(boto3_s))
        figures.append(
            Figure(
                "Cold import",
                f"`handlers.{name}` from the built artifact ({RUNS} A/B pairs)",
                f"{medians[name][0] * 1000:.0f} ms",
                f"import boto3 {medians[name][1] * 1000:.0f} ms",
                spread.median,
                f"≤ {TARGET}×",
                spread.median <= TARGET,
                spread,
            )
        )
    size = max(zip_megabytes(built[function]) for function in HANDLERS.values())
    figures.append(
        Figure(
            "Artifact",
            "largest function zip (deflate)",
            f"{size:.2f} MB",
            "",
            None,
            f"≤ {ZIP_LIMIT_MB} MB",
            size <= ZIP_LIMIT_MB,
        )
    )
    shipped = sorted(p.name for p in built["WebhookFunction"].iterdir() if not p.name.endswith(".dist-info"))
    notes = [
        f"Cold import: {python} -S -P, a fresh process per sample, sys.path = artifact + runtime SDK "
        f"({(REPO / 'src' / 'lambda-runtime.txt').name}), Lambda's variables; the artifact holds "
        + ", ".join(shipped)
        + f" (no boto3/botocore: the runtime's are used). Built with `make build`; PYTHONDONTWRITEBYTECODE="
        f"{os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r} outside, 1 inside every sample."
    ]
    return figures, notes
