"""The managed runtime's assets: its Python, its SDK, the runtime interface client, and the functions' artifacts.

A function process sees what a python3.13 Lambda sees and nothing of the dev virtualenv: the artifact `sam build`
made (/var/task), the SDK the runtime ships (boto3/botocore at the versions of src/lambda-runtime.txt) and awslambdaric
(local/lambdas/runtime-interface.txt), on the stdlib of the runtime's Python. Both directories are built once per
content of their pin files and shared by every worker (file lock, build aside, then rename).
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SDK_PINS = REPO / "src" / "lambda-runtime.txt"
RIC_PINS = Path(__file__).resolve().with_name("runtime-interface.txt")
DEFAULT_CACHE = REPO / ".aws-sam" / "local-runtime"
PYTHON_VERSION = "3.13"  # template.yaml's Runtime: python3.13
EXECUTION_ENV = f"AWS_Lambda_python{PYTHON_VERSION}"
SOURCE_STAMP = ".local-source-hash"


@dataclass(frozen=True)
class Runtime:
    """Where the runtime lives: the interpreter, the SDK directory and the runtime interface client's directory."""

    python: Path
    sdk_dir: Path
    ric_dir: Path

    def argv(self, handler: str) -> list[str]:
        """The bootstrap command. -S: no site (no site-packages, no .pth files), so sys.path is PYTHONPATH plus the
        stdlib; -P: the cwd (the artifact) is not added twice; -B: the artifact stays untouched, as /var/task is
        read-only on Lambda."""
        return [str(self.python), "-B", "-S", "-P", "-m", "awslambdaric", handler]

    def pythonpath(self, artifact: Path) -> str:
        """Lambda's order: the function's code first, the runtime's packages last."""
        return os.pathsep.join(str(path) for path in (artifact, self.sdk_dir, self.ric_dir))


@functools.cache
def runtime_python() -> Path:
    """The runtime's interpreter (scripts/find-python.sh, 0.3 s through pyenv), which must be the template's Python
    version."""
    found = subprocess.run(  # noqa: S603
        [str(REPO / "scripts" / "find-python.sh")], check=True, capture_output=True, text=True
    ).stdout.strip()
    python = Path(found)
    version = subprocess.run(  # noqa: S603
        [str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if version != PYTHON_VERSION:
        raise RuntimeError(f"{python} is Python {version}; the Lambda runtime is Python {PYTHON_VERSION}")
    return python


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive flock: pytest-xdist workers may build the same thing at the same time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def ensure_runtime(cache: Path = DEFAULT_CACHE) -> Runtime:
    """The runtime's directories under `cache`, built when the pin files (or the interpreter) changed."""
    python = runtime_python()
    digest = hashlib.sha256(str(python).encode())
    for pins in (SDK_PINS, RIC_PINS):
        digest.update(b"\0" + pins.read_bytes())
    target = cache / digest.hexdigest()[:16]
    runtime = Runtime(python=python, sdk_dir=target / "sdk", ric_dir=target / "ric")
    if target.is_dir():  # complete: it only ever appears through a rename
        return runtime
    with _locked(cache / ".lock"):
        if not target.is_dir():
            _build_runtime(python, cache, target)
    return runtime


def _build_runtime(python: Path, cache: Path, target: Path) -> None:
    for stale in cache.iterdir():  # older pins, or a build that died half-way
        if stale.is_dir():
            shutil.rmtree(stale)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=cache))
    try:
        for name, pins in (("sdk", SDK_PINS), ("ric", RIC_PINS)):
            subprocess.run(  # noqa: S603
                [
                    str(python),
                    *("-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--root-user-action=ignore"),
                    *("--no-deps", "--only-binary=:all:", "--no-compile", "--target", str(scratch / name)),
                    *("-r", str(pins)),
                ],
                check=True,
            )
            # timestamp-checked .pyc files, as the runtime image ships its packages
            subprocess.run([str(python), "-m", "compileall", "-q", "-j0", str(scratch / name)], check=True)  # noqa: S603
        scratch.rename(target)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise


def source_hash(repo: Path = REPO) -> str:
    """What `sam build` reads: the relative paths and bytes of src/** (without __pycache__) and template.yaml."""
    files = [path for path in (repo / "src").rglob("*") if path.is_file() and "__pycache__" not in path.parts] + [
        repo / "template.yaml"
    ]
    digest = hashlib.sha256()
    for path in sorted(files):
        content = path.read_bytes()
        digest.update(f"{path.relative_to(repo)}\0{len(content)}\0".encode())
        digest.update(content)
    return digest.hexdigest()


def ensure_artifacts(functions: Sequence[str], *, repo: Path = REPO) -> dict[str, Path]:
    """`.aws-sam/build/<Fn>` for each function, running `make build` (sam build) first unless every artifact exists
    and was built from the current sources. Content hashes rather than mtimes: a checkout or a touched file changes
    mtimes, not what gets built. One `make build` of the three functions takes about 5 s with its dependency cache
    (.aws-sam/lambda-deps) warm."""
    build = repo / ".aws-sam" / "build"
    stamp = build / SOURCE_STAMP
    artifacts = {function: build / function for function in functions}

    def current(digest: str) -> bool:
        built = stamp.is_file() and stamp.read_text(encoding="utf-8") == digest
        return built and all(path.is_dir() for path in artifacts.values())

    if not current(source_hash(repo)):
        with _locked(repo / ".aws-sam" / ".local-build.lock"):
            digest = source_hash(repo)
            if not current(digest):
                subprocess.run(["make", "--no-print-directory", "build"], check=True, cwd=repo)  # noqa: S607
                missing = [name for name, path in artifacts.items() if not path.is_dir()]
                if missing:
                    raise FileNotFoundError(f"make build made no artifact for {', '.join(missing)}")
                partial = stamp.with_name(f"{SOURCE_STAMP}.tmp")
                partial.write_text(digest, encoding="utf-8")
                partial.replace(stamp)
    return artifacts
