"""The local Lambda emulator (local/lambdas): each case deploys a tiny handler written into tmp_path and checks what
Lambda would do, through the real runtime interface client in its own process."""

from __future__ import annotations

import os
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import pytest

from local.lambdas.environment import FunctionSpec, InvocationResult
from local.lambdas.function import LocalFunction
from local.lambdas.runtime import REPO, Runtime, ensure_artifacts, ensure_runtime

REGION = "us-east-1"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "ASIAEMULATEDKEY00001",
    "AWS_SECRET_ACCESS_KEY": "emulated-secret",
    "AWS_SESSION_TOKEN": "emulated-session-token",
}


class Deploy(Protocol):
    def __call__(
        self,
        source: str,
        *,
        timeout: float = ...,
        environment: Mapping[str, str] = ...,
        extra_environment: Mapping[str, str] = ...,
        credentials: Callable[[], Mapping[str, str]] = ...,
        max_environments: int = ...,
    ) -> LocalFunction: ...


@pytest.fixture(scope="module")
def runtime() -> Runtime:
    return ensure_runtime()  # the first run on a machine installs it from PyPI


@pytest.fixture
def deploy(runtime: Runtime, tmp_path: Path) -> Iterator[Deploy]:
    """Deploys `source` as app.py (handler app.handler) of a function named after the test."""
    functions: list[LocalFunction] = []

    def deploy(
        source: str,
        *,
        timeout: float = 3.0,
        environment: Mapping[str, str] = {},  # noqa: B006 (never mutated)
        extra_environment: Mapping[str, str] = {},  # noqa: B006
        credentials: Callable[[], Mapping[str, str]] = lambda: CREDENTIALS,
        max_environments: int = 1,
    ) -> LocalFunction:
        name = f"emulated-{len(functions)}"
        artifact = tmp_path / "build" / name
        artifact.mkdir(parents=True)
        (artifact / "app.py").write_text(textwrap.dedent(source), encoding="utf-8")
        spec = FunctionSpec(
            name=name,
            handler="app.handler",
            artifact=artifact,
            timeout_seconds=timeout,
            memory_mb=256,
            environment=environment,
            log_group=f"/aws/lambda/{name}",
            arn=f"arn:aws:lambda:{REGION}:123456789012:function:{name}",
            region=REGION,
        )
        function = LocalFunction(
            spec,
            runtime,
            credentials=credentials,
            extra_environment=extra_environment,
            log_dir=tmp_path / "logs",
            max_environments=max_environments,
        )
        functions.append(function)
        return function

    yield deploy
    for function in functions:
        function.close()


def alive(pid: int) -> bool:
    """A zombie (killed, not reaped yet by its new parent) counts as dead."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def gone(pid: int, within: float = 2.0) -> bool:
    deadline = time.monotonic() + within
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def runtime_processes() -> set[int]:
    """The live awslambdaric processes this test process started."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(encoding="utf-8")
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        state, parent = stat.rsplit(")", 1)[1].split()[:2]
        if int(parent) == os.getpid() and state != "Z" and b"awslambdaric" in command:
            found.add(int(entry.name))
    return found


def pins(name: str) -> str:
    for line in (REPO / "src" / "lambda-runtime.txt").read_text(encoding="utf-8").splitlines():
        if line.startswith(f"{name}=="):
            return line.split("==", 1)[1].strip()
    raise LookupError(name)


def test_success_returns_the_json_payload(deploy: Deploy) -> None:
    function = deploy(
        """
        def handler(event, context):
            return {"echo": event, "ratio": 0.5, "items": [1, "two", None]}
        """
    )

    result = function.invoke({"job": "a1", "nested": {"n": 3}})

    assert result.ok
    assert result.error_type is None
    assert result.payload == {"echo": {"job": "a1", "nested": {"n": 3}}, "ratio": 0.5, "items": [1, "two", None]}
    assert result.init_duration_ms is not None
    assert result.duration_ms > 0


def test_a_handler_exception_fails_the_invocation_and_keeps_the_environment_warm(deploy: Deploy) -> None:
    function = deploy(
        """
        import os
        CALLS = 0

        def handler(event, context):
            global CALLS
            CALLS += 1
            if event.get("fail"):
                raise ValueError(f"boom on call {CALLS}")
            return {"calls": CALLS, "pid": os.getpid()}
        """
    )
    first = function.invoke({})

    failed = function.invoke({"fail": True})
    after = function.invoke({})

    assert failed.error_type == "ValueError"
    assert failed.error_message == "boom on call 2"
    assert failed.payload["errorType"] == "ValueError"
    assert failed.payload["requestId"] == failed.request_id
    assert failed.init_duration_ms is None
    assert after.ok
    assert after.init_duration_ms is None
    assert after.payload == {"calls": 3, "pid": first.payload["pid"]}  # same process, module state kept
    assert (function.invocations, function.errors, function.cold_starts) == (3, 1, 1)


def test_sequential_invocations_reuse_one_warm_environment(deploy: Deploy) -> None:
    function = deploy(
        """
        import os

        def handler(event, context):
            return os.getpid()
        """,
        max_environments=3,
    )

    results = [function.invoke({}) for _ in range(4)]

    assert [result.init_duration_ms is not None for result in results] == [True, False, False, False]
    assert len({result.payload for result in results}) == 1
    assert function.cold_starts == 1
    assert function.invocations == 4


def test_a_timeout_kills_the_process_group_and_the_next_invocation_cold_starts(deploy: Deploy, tmp_path: Path) -> None:
    function = deploy(
        """
        import os
        import subprocess
        import time

        def handler(event, context):
            if event.get("hang"):
                child = subprocess.Popen(["sleep", "60"])
                with open(event["pid_file"], "w") as out:
                    out.write(f"{os.getpid()} {child.pid}")
                time.sleep(30)
            return "fresh"
        """,
        timeout=1.0,
    )
    pid_file = tmp_path / "pids"

    started = time.monotonic()
    result = function.invoke({"hang": True, "pid_file": str(pid_file)})
    elapsed = time.monotonic() - started

    assert result.error_type == "Sandbox.Timedout"
    assert result.error_message == f"RequestId: {result.request_id} Error: Task timed out after 1.00 seconds"
    assert 1.0 <= elapsed < 2.0
    runtime_pid, child_pid = map(int, pid_file.read_text(encoding="utf-8").split())
    assert gone(runtime_pid)
    assert gone(child_pid)  # the handler's own subprocess died with the group
    retry = function.invoke({})
    assert retry.ok
    assert retry.payload == "fresh"
    assert retry.init_duration_ms is not None
    assert function.cold_starts == 2
    log = function.log.path.read_text(encoding="utf-8")
    assert f"{result.request_id} Task timed out after 1.00 seconds" in log
    assert "Status: timeout" in log


def test_a_process_that_dies_fails_with_runtime_exit_error(deploy: Deploy) -> None:
    function = deploy(
        """
        import os

        def handler(event, context):
            if event.get("die"):
                os._exit(3)
            return "alive"
        """
    )

    result = function.invoke({"die": True})

    assert result.error_type == "Runtime.ExitError"
    assert result.error_message == f"RequestId: {result.request_id} Error: Runtime exited with error: exit status 3"
    retry = function.invoke({})
    assert retry.payload == "alive"
    assert retry.init_duration_ms is not None


def test_a_handler_over_its_memory_size_is_killed_with_runtime_out_of_memory(deploy: Deploy) -> None:
    """MemorySize is 256 MB here: a handler holding 400 MB is killed as Lambda kills it, and the next invocation
    gets a fresh environment. The timeout is long, so a loaded machine cannot turn the kill into a timeout; the
    kill comes within one watch interval of the memory going over, not after the sleep."""
    function = deploy(
        """
        import time

        def handler(event, context):
            if event.get("hog"):
                hoard = bytearray(400 * 1024 * 1024)
                hoard[::4096] = b"x" * len(hoard[::4096])  # touch every page: resident, not just reserved
                time.sleep(25)
            return "small"
        """,
        timeout=30.0,
    )

    result = function.invoke({"hog": True})

    assert result.error_type == "Runtime.OutOfMemory"
    assert result.error_message == f"RequestId: {result.request_id} Error: Runtime exited with error: signal: killed"
    assert "Error Type: Runtime.OutOfMemory" in function.log.path.read_text(encoding="utf-8")
    retry = function.invoke({})
    assert retry.payload == "small"
    assert retry.init_duration_ms is not None


def test_a_missing_dependency_fails_init_and_every_invocation_retries_it(deploy: Deploy) -> None:
    function = deploy(
        """
        import not_shipped_in_the_artifact

        def handler(event, context):
            return "unreachable"
        """
    )

    first = function.invoke({})
    second = function.invoke({})

    for result in (first, second):
        assert result.error_type == "Runtime.ImportModuleError"
        assert result.error_message is not None
        assert "Unable to import module 'app'" in result.error_message
        assert "No module named 'not_shipped_in_the_artifact'" in result.error_message
        assert result.init_duration_ms is not None  # init ran again: the environment was reset
    assert function.cold_starts == 2
    assert function.errors == 2
    assert runtime_processes() == set()
    log = function.log.path.read_text(encoding="utf-8")
    assert "Status: error\tError Type: Runtime.ImportModuleError" in log


def test_the_context_carries_the_deadline_and_the_function(deploy: Deploy) -> None:
    function = deploy(
        """
        import os

        def handler(event, context):
            return {
                "remaining_ms": context.get_remaining_time_in_millis(),
                "function_name": context.function_name,
                "env_name": os.environ["AWS_LAMBDA_FUNCTION_NAME"],
                "arn": context.invoked_function_arn,
                "request_id": context.aws_request_id,
                "memory": context.memory_limit_in_mb,
                "log_group": context.log_group_name,
            }
        """,
        timeout=3.0,
    )

    result = function.invoke({})

    seen = result.payload
    assert 2000 < seen["remaining_ms"] <= 3000
    assert seen["function_name"] == seen["env_name"] == function.spec.name
    assert seen["arn"] == function.spec.arn
    assert seen["request_id"] == result.request_id
    assert str(seen["memory"]) == "256"
    assert seen["log_group"] == function.spec.log_group


def test_the_handler_sees_the_runtime_sdk_and_nothing_of_the_dev_environment(deploy: Deploy) -> None:
    function = deploy(
        """
        import sys

        def importable(name):
            try:
                __import__(name)
            except ImportError:
                return False
            return True

        def handler(event, context):
            import boto3
            import botocore
            return {
                "pytest": importable("pytest"),
                "moto": importable("moto"),
                "boto3": boto3.__version__,
                "botocore": botocore.__version__,
                "path": sys.path,
            }
        """
    )

    seen = function.invoke({}).payload

    assert seen["pytest"] is False
    assert seen["moto"] is False
    assert seen["boto3"] == pins("boto3")
    assert seen["botocore"] == pins("botocore")
    assert seen["path"][0] == str(function.spec.artifact)  # /var/task first, as on Lambda
    assert not [entry for entry in seen["path"] if entry.startswith(str(REPO / ".venv"))]


def test_variables_come_from_lambda_the_function_the_caller_and_the_credentials(
    deploy: Deploy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEV_SHELL_ONLY", "must not leak")
    calls: list[int] = []

    def credentials() -> Mapping[str, str]:
        calls.append(1)
        return CREDENTIALS | {"AWS_SESSION_TOKEN": f"session-{len(calls)}"}

    function = deploy(
        """
        import os

        def handler(event, context):
            return dict(os.environ)
        """,
        environment={"JOBS_TABLE_NAME": "jobs", "POWERTOOLS_SERVICE_NAME": "emulated"},
        extra_environment={"AWS_ENDPOINT_URL": "http://127.0.0.1:4566"},
        credentials=credentials,
    )

    env = function.invoke({}).payload
    again = function.invoke({}).payload

    spec = function.spec
    assert env["JOBS_TABLE_NAME"] == "jobs"
    assert env["POWERTOOLS_SERVICE_NAME"] == "emulated"
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:4566"
    assert env["AWS_ACCESS_KEY_ID"] == CREDENTIALS["AWS_ACCESS_KEY_ID"]
    assert env["AWS_SECRET_ACCESS_KEY"] == CREDENTIALS["AWS_SECRET_ACCESS_KEY"]
    assert env["AWS_SESSION_TOKEN"] == again["AWS_SESSION_TOKEN"] == "session-1"  # asked once per process start
    assert calls == [1]
    assert {name: env[name] for name in ("_HANDLER", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_EXECUTION_ENV")} == {
        "_HANDLER": "app.handler",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
    }
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_LAMBDA_INITIALIZATION_TYPE"] == "on-demand"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == spec.log_group
    assert "[$LATEST]" in env["AWS_LAMBDA_LOG_STREAM_NAME"]
    assert env["AWS_LAMBDA_RUNTIME_API"].startswith("127.0.0.1:")
    assert env["LAMBDA_TASK_ROOT"] == str(spec.artifact)
    assert env["TZ"] == ":UTC"
    assert env["AWS_XRAY_DAEMON_ADDRESS"] == "127.0.0.1:2000"  # never Lambda's 169.254.79.129
    assert env["AWS_XRAY_CONTEXT_MISSING"] == "LOG_ERROR"
    assert "_X_AMZN_TRACE_ID" in env
    assert "DEV_SHELL_ONLY" not in env
    assert "VIRTUAL_ENV" not in env


def test_reserved_variables_are_refused_like_create_function_does(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="AWS_REGION"):
        FunctionSpec(
            name="fn",
            handler="app.handler",
            artifact=tmp_path,
            timeout_seconds=3,
            memory_mb=128,
            environment={"AWS_REGION": "eu-west-1"},
            log_group="/aws/lambda/fn",
            arn="arn:aws:lambda:us-east-1:123456789012:function:fn",
            region=REGION,
        )


def test_concurrent_invocations_wait_for_a_free_environment_beyond_the_cap(deploy: Deploy) -> None:
    function = deploy(
        """
        import os
        import time

        def handler(event, context):
            started = time.time()
            time.sleep(1)
            return {"started": started, "ended": time.time(), "pid": os.getpid()}
        """,
        max_environments=2,
    )
    sampled: list[int] = []
    running = threading.Event()

    def sample() -> None:
        while not running.wait(0.05):
            sampled.append(len(runtime_processes()))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            results: list[InvocationResult] = list(pool.map(function.invoke, [{}, {}, {}]))
    finally:
        running.set()
        sampler.join()

    assert all(result.ok for result in results)
    first, second, third = sorted((result.payload for result in results), key=lambda seen: seen["started"])
    assert first["started"] < second["ended"]
    assert second["started"] < first["ended"]  # the first two overlap
    assert third["started"] >= min(first["ended"], second["ended"])  # the third waited for one of them
    assert len({result.payload["pid"] for result in results}) == 2
    assert function.cold_starts == 2
    assert sampled
    assert max(sampled) <= 2


def test_the_function_log_has_lambdas_lines_and_the_handlers_output(deploy: Deploy) -> None:
    function = deploy(
        """
        import sys

        print("init output")

        def handler(event, context):
            print(f"handling {context.aws_request_id}")
            print(f"to stderr {context.aws_request_id}", file=sys.stderr)
            return None
        """
    )

    results = [function.invoke({}) for _ in range(3)]

    lines = function.log.path.read_text(encoding="utf-8").splitlines()

    def position(text: str) -> int:
        matching = [index for index, line in enumerate(lines) if text in line]
        assert len(matching) == 1, (text, lines)
        return matching[0]

    assert position("init output") < position(f"START RequestId: {results[0].request_id}")
    for result in results:
        request_id = result.request_id
        start = position(f"START RequestId: {request_id} Version: $LATEST")
        printed = position(f"handling {request_id}")
        stderr = position(f"to stderr {request_id}")
        end = position(f"END RequestId: {request_id}")
        report = position(f"REPORT RequestId: {request_id}\t")
        assert start < printed < end
        assert start < stderr < end
        assert end + 1 == report
        assert "\tBilled Duration: " in lines[report]
        assert "\tMemory Size: 256 MB\t" in lines[report]
        max_memory = int(lines[report].split("Max Memory Used: ")[1].split(" MB")[0])
        assert max_memory > 0
        assert ("Init Duration: " in lines[report]) == (result.init_duration_ms is not None)
    assert results[0].init_duration_ms is not None


def test_an_oversized_response_fails_with_response_size_too_large(deploy: Deploy) -> None:
    function = deploy(
        """
        def handler(event, context):
            return "x" * event["size"]
        """
    )

    result = function.invoke({"size": 7 * 1024 * 1024})
    small = function.invoke({"size": 3})

    assert result.error_type == "Function.ResponseSizeTooLarge"
    assert result.error_message == "Response payload size exceeded maximum allowed payload size (6291556 bytes)."
    assert small.payload == "xxx"
    assert small.init_duration_ms is not None  # the runtime exited after the refusal, as it does on Lambda


def test_close_leaves_no_process_and_no_thread(deploy: Deploy) -> None:
    function = deploy(
        """
        import os
        import time

        def handler(event, context):
            time.sleep(0.3)
            return os.getpid()
        """,
        max_environments=2,
    )
    with ThreadPoolExecutor(max_workers=2) as pool:
        pids = {result.payload for result in pool.map(function.invoke, [{}, {}])}
    assert len(pids) == 2

    function.close()
    function.close()  # twice is fine

    assert not [pid for pid in pids if alive(pid)]
    assert runtime_processes() == set()
    assert not [thread for thread in threading.enumerate() if thread.name.startswith(("runtime-api", "lambda-output"))]
    with pytest.raises(RuntimeError, match="closed"):
        function.invoke({})


def test_artifacts_are_rebuilt_only_when_the_sources_change(tmp_path: Path) -> None:
    """ensure_artifacts on a stand-in repository whose `make build` counts its runs."""
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    (tmp_path / "src" / "pkg" / "handler.py").write_text("VERSION = 1\n", encoding="utf-8")
    (tmp_path / "template.yaml").write_text("Resources: {}\n", encoding="utf-8")
    (tmp_path / "Makefile").write_text("build:\n\tmkdir -p .aws-sam/build/Fn\n\techo run >> builds\n", encoding="utf-8")

    def builds() -> int:
        return len((tmp_path / "builds").read_text(encoding="utf-8").splitlines())

    assert ensure_artifacts(["Fn"], repo=tmp_path) == {"Fn": tmp_path / ".aws-sam" / "build" / "Fn"}
    ensure_artifacts(["Fn"], repo=tmp_path)
    assert builds() == 1
    (tmp_path / "src" / "pkg" / "__pycache__").mkdir()
    (tmp_path / "src" / "pkg" / "__pycache__" / "handler.cpython-313.pyc").write_bytes(b"\0")
    ensure_artifacts(["Fn"], repo=tmp_path)
    assert builds() == 1  # bytecode is not a source
    (tmp_path / "src" / "pkg" / "handler.py").write_text("VERSION = 2\n", encoding="utf-8")
    ensure_artifacts(["Fn"], repo=tmp_path)
    assert builds() == 2
    (tmp_path / "template.yaml").write_text("Resources: {Changed: {}}\n", encoding="utf-8")
    ensure_artifacts(["Fn"], repo=tmp_path)
    assert builds() == 3
    with pytest.raises(FileNotFoundError, match="Other"):
        ensure_artifacts(["Fn", "Other"], repo=tmp_path)
