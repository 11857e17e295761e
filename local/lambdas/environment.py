"""One Lambda execution environment: a runtime process, its Runtime API, its logs, and Lambda's lifecycle rules.

The process starts on the first invocation (a cold start) and stays warm for the next ones. At an invocation's
deadline the whole process group is SIGKILLed (the handler's own subprocesses too) and the invocation fails with
`Sandbox.Timedout`; a process that dies fails it with `Runtime.ExitError`; a failed init fails it with the init
error's type. In each case the environment is reset, so the next invocation cold-starts, as on Lambda.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import math
import os
import selectors
import signal
import subprocess
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from .runtime import EXECUTION_ENV, Runtime
from .runtime_api import Invocation, Outcome, RuntimeApiServer, error_body

INIT_TIMEOUT_SECONDS = 10.0  # Lambda's limit for the init phase of an on-demand environment
WATCH_INTERVAL_SECONDS = 0.02  # how often a waiting invocation checks that its process still lives
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
Credentials = Callable[[], Mapping[str, str]]
# How the platform ended an invocation: the deadline passed, the process died, the Runtime API refused the response.
Failure = Literal["timeout", "exit", "refused", "memory"]

# Set by Lambda; a function may not define them (CreateFunction refuses them).
RESERVED_VARIABLES = frozenset(
    {
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_DEFAULT_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_LAMBDA_RUNTIME_API",
        "AWS_REGION",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "LAMBDA_RUNTIME_DIR",
        "LAMBDA_TASK_ROOT",
    }
)


@dataclass(frozen=True, kw_only=True)
class FunctionSpec:
    """A deployed function's configuration, resolved (no intrinsics left)."""

    name: str
    handler: str  # module.function, e.g. denoise_pipeline.handlers.submit.handler
    artifact: Path  # .aws-sam/build/<LogicalId>: LAMBDA_TASK_ROOT
    timeout_seconds: float
    memory_mb: int
    environment: Mapping[str, str] = field(default_factory=dict)  # the function's own variables
    log_group: str
    arn: str
    region: str
    log_format: Literal["Text", "JSON"] = "Text"  # LoggingConfig.LogFormat
    application_log_level: str | None = None  # LoggingConfig.ApplicationLogLevel (JSON format only)

    def __post_init__(self) -> None:
        reserved = sorted(RESERVED_VARIABLES.intersection(self.environment))
        if reserved:
            raise ValueError(f"{self.name}: reserved environment variables can't be set: {', '.join(reserved)}")


@dataclass(frozen=True)
class InvocationResult:
    request_id: str
    payload: Any  # the decoded JSON response, or the error body ({"errorType", "errorMessage", ...})
    error_type: str | None  # None: the handler returned
    error_message: str | None
    duration_ms: float
    init_duration_ms: float | None  # set when this invocation cold-started its environment

    @property
    def ok(self) -> bool:
        return self.error_type is None


class FunctionLog:
    """A function's log file, shared by its environments: whole lines, one writer at a time, each line tagged with
    a timestamp and the writing environment."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, source: str, text: str) -> None:
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
        lines = "".join(f"{stamp} {source} {line}\n" for line in text.splitlines() or [""])
        with self._lock:
            if not self._file.closed:
                self._file.write(lines)
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


class _OutputPump:
    """Copies a process's stdout and stderr into the function log, line by line, on one thread.

    `sync()` returns once everything the process wrote before the call is logged: the runtime writes a handler's
    output before it posts the result, so that output lands between the invocation's START and END lines.
    """

    def __init__(self, pipes: list[IO[bytes]], emit: Callable[[str], None]) -> None:
        self._pipes = pipes
        self._emit = emit
        self._wake_read, self._wake_write = os.pipe()
        self._cond = threading.Condition()
        self._requested = self._served = 0
        self._stopping = self._finished = False
        self._decoders = {pipe.fileno(): codecs.getincrementaldecoder("utf-8")("replace") for pipe in pipes}
        self._partial = dict.fromkeys(self._decoders, "")
        for fd in self._decoders:
            os.set_blocking(fd, False)
        self._thread = threading.Thread(target=self._run, name="lambda-output", daemon=True)
        self._thread.start()

    def sync(self, timeout: float = 1.0) -> None:
        with self._cond:
            if self._finished:
                return
            self._requested += 1
            wanted = self._requested
        os.write(self._wake_write, b"s")
        with self._cond:
            self._cond.wait_for(lambda: self._served >= wanted or self._finished, timeout)

    def stop(self) -> None:
        """Logs what is left and ends the thread (the process is dead by now)."""
        with self._cond:
            self._stopping = True
        os.write(self._wake_write, b"x")
        self._thread.join()
        for fd in (self._wake_read, self._wake_write):
            os.close(fd)
        for pipe in self._pipes:
            pipe.close()

    def _run(self) -> None:
        try:
            with selectors.DefaultSelector() as selector:
                for fd in (*self._decoders, self._wake_read):
                    selector.register(fd, selectors.EVENT_READ)
                while self._serve(selector):
                    pass
        finally:
            with self._cond:
                self._finished = True
                self._cond.notify_all()

    def _serve(self, selector: selectors.BaseSelector) -> bool:
        """One round of events; False once the pump should end."""
        for key, _ in selector.select():
            if key.fd != self._wake_read:
                self._drain(key.fd, selector)
                continue
            os.read(self._wake_read, 512)
            with self._cond:
                wanted, stopping = self._requested, self._stopping
            for fd in list(self._decoders):
                self._drain(fd, selector)
            for fd, rest in self._partial.items():  # a line without its newline yet: log it now
                if rest:
                    self._emit(rest)
                    self._partial[fd] = ""
            with self._cond:
                self._served = wanted
                self._cond.notify_all()
            if stopping:
                return False
        return True

    def _drain(self, fd: int, selector: selectors.BaseSelector) -> None:
        if fd not in selector.get_map():
            return
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                return
            text = self._partial[fd] + self._decoders[fd].decode(chunk, final=not chunk)
            *lines, self._partial[fd] = text.split("\n")
            for line in lines:
                self._emit(line.removesuffix("\r"))
            if not chunk:  # end of file
                selector.unregister(fd)
                return


@dataclass
class _Sandbox:
    """One start of the runtime process, with what serves it."""

    process: subprocess.Popen[bytes]
    api: RuntimeApiServer
    pump: _OutputPump
    reaper: weakref.finalize[..., Any]  # kills the process group if the environment is dropped unclosed


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILLs the runtime's whole session: the handler's own subprocesses die with it."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _peak_memory_mb(pid: int) -> int:
    """The process's peak resident set size (VmHWM), which is what Lambda's Max Memory Used reports."""
    return _status_mb(pid, "VmHWM:")


def _resident_memory_mb(pid: int) -> int:
    """The process's resident set size now (VmRSS): above the function's MemorySize, Lambda kills the runtime.

    Read from /proc/PID/statm, a single line, every watch interval of every running invocation: parsing the whole
    status file cost ten times as much (86 µs against 8.5 µs), and during a burst the watchers' reads were 4 % of
    the local stack's time holding the GIL."""
    try:
        descriptor = os.open(f"/proc/{pid}/statm", os.O_RDONLY)
    except OSError:
        return 0
    try:
        resident_pages = int(os.read(descriptor, 128).split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    finally:
        os.close(descriptor)
    return math.ceil(resident_pages * _PAGE_BYTES / 1024**2)


def _status_mb(pid: int, field_name: str) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith(field_name):
            return math.ceil(int(line.split()[1]) / 1024)
    return 0


def _decode(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")


class ExecutionEnvironment:
    """One execution environment of a function: at most one invocation at a time (the pool's job to ensure)."""

    def __init__(
        self,
        spec: FunctionSpec,
        runtime: Runtime,
        *,
        credentials: Credentials,
        extra_environment: Mapping[str, str],
        log: FunctionLog,
    ) -> None:
        self.spec = spec
        self.runtime = runtime
        self.credentials = credentials
        self.extra_environment = dict(extra_environment)
        self.log = log
        self._sandbox: _Sandbox | None = None
        self._source = "-"  # the log stream's id, tagging this environment's lines in the function log
        self._lock = threading.Lock()
        self._closed = False

    @property
    def warm(self) -> bool:
        sandbox = self._sandbox
        return sandbox is not None and sandbox.process.poll() is None

    @property
    def pid(self) -> int | None:
        sandbox = self._sandbox
        return sandbox.process.pid if sandbox is not None else None

    def invoke(self, event: Any) -> InvocationResult:
        request_id = str(uuid.uuid4())
        body = json.dumps(event).encode()
        with self._lock:
            if self._closed:
                raise RuntimeError(f"the execution environment of {self.spec.name} is closed")
            init_ms: float | None = None
            if not self.warm:
                self._reset()
                init_ms, failure = self._cold_start()
                if failure is not None:
                    return self._failed_init(request_id, failure, init_ms)
            return self._run(request_id, body, init_ms)

    def close(self) -> None:
        """Kills the process at once (an invocation in flight then fails with Runtime.ExitError) and frees the
        rest. Safe to call twice."""
        self._closed = True  # an invocation's watch kills the process within WATCH_INTERVAL_SECONDS
        with self._lock:
            self._reset()

    # ------------------------------------------------------------------ the process
    def _variables(self, api: RuntimeApiServer, stream: str) -> dict[str, str]:
        spec, runtime = self.spec, self.runtime
        variables = {
            "PATH": f"{runtime.python.parent}:/usr/local/bin:/usr/bin:/bin",
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "PYTHONPATH": runtime.pythonpath(spec.artifact),
            "_HANDLER": spec.handler,
            "AWS_REGION": spec.region,
            "AWS_DEFAULT_REGION": spec.region,
            "AWS_EXECUTION_ENV": EXECUTION_ENV,
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_LAMBDA_LOG_GROUP_NAME": spec.log_group,
            "AWS_LAMBDA_LOG_STREAM_NAME": stream,
            "AWS_LAMBDA_RUNTIME_API": api.address,
            "LAMBDA_TASK_ROOT": str(spec.artifact),
            "LAMBDA_RUNTIME_DIR": str(runtime.ric_dir),
            # Lambda's daemon is 169.254.79.129:2000; traces must never leave this machine.
            "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
            "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        }
        if spec.log_format == "JSON":
            variables["AWS_LAMBDA_LOG_FORMAT"] = "JSON"
            if spec.application_log_level:
                variables["AWS_LAMBDA_LOG_LEVEL"] = spec.application_log_level.upper()
        return variables | dict(spec.environment) | self.extra_environment | dict(self.credentials())

    def _cold_start(self) -> tuple[float, Outcome | None]:
        """Starts the process and waits for its init phase: (init duration in ms, the init failure if any)."""
        stream_id = uuid.uuid4().hex
        stream = time.strftime("%Y/%m/%d/[$LATEST]", time.gmtime()) + stream_id
        self._source = stream_id[:8]
        api = RuntimeApiServer()
        started = time.monotonic()
        try:
            process = subprocess.Popen(  # noqa: S603 (our runtime, the function's own handler)
                self.runtime.argv(self.spec.handler),
                cwd=self.spec.artifact,
                env=self._variables(api, stream),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # its own process group, so one killpg takes the handler's children too
            )
        except BaseException:  # no artifact directory, failing credentials: nothing started, nothing to keep
            api.close()
            raise
        assert process.stdout is not None
        assert process.stderr is not None
        source = self._source
        pump = _OutputPump([process.stdout, process.stderr], lambda line: self.log.write(source, line))
        self._sandbox = _Sandbox(process, api, pump, weakref.finalize(self, _kill_group, process))
        failure = self._await_init(process, api, started + INIT_TIMEOUT_SECONDS)
        return (time.monotonic() - started) * 1000, failure

    def _await_init(self, process: subprocess.Popen[bytes], api: RuntimeApiServer, deadline: float) -> Outcome | None:
        while not api.wait_init(WATCH_INTERVAL_SECONDS):
            if self._closed:
                _kill_group(process)
            status = process.poll()
            if status is not None:
                message = f"Runtime exited with error: exit status {status}"
                return Outcome(error_body("Runtime.ExitError", message), "Runtime.ExitError")
            if time.monotonic() >= deadline:
                message = f"Init phase timed out after {INIT_TIMEOUT_SECONDS:.2f} seconds"
                return Outcome(error_body("Sandbox.Timedout", message), "Sandbox.Timedout")
        return api.init_error

    def _reset(self) -> None:
        """Back to no process: Lambda discards an environment after a timeout, a crash or a failed init."""
        sandbox, self._sandbox = self._sandbox, None
        if sandbox is None:
            return
        sandbox.reaper.detach()
        _kill_group(sandbox.process)
        sandbox.pump.stop()
        sandbox.api.close()

    # ------------------------------------------------------------------ invocations
    def _failed_init(self, request_id: str, failure: Outcome, init_ms: float) -> InvocationResult:
        sandbox = self._sandbox
        assert sandbox is not None
        with contextlib.suppress(subprocess.TimeoutExpired):  # the runtime exits after reporting: let it log first
            sandbox.process.wait(timeout=0.5)
        self._reset()
        error_type = failure.error_type or "Runtime.Unknown"
        self._platform(
            f"INIT_REPORT Init Duration: {init_ms:.2f} ms\tPhase: init\tStatus: error\tError Type: {error_type}",
            f"START RequestId: {request_id} Version: $LATEST",
            f"END RequestId: {request_id}",
            self._report(request_id, 0.0, 0, None, f"Status: error\tError Type: {error_type}"),
        )
        return self._result(request_id, failure, 0.0, init_ms)

    def _run(self, request_id: str, body: bytes, init_ms: float | None) -> InvocationResult:
        sandbox = self._sandbox
        assert sandbox is not None
        spec = self.spec
        headers = {
            "Lambda-Runtime-Aws-Request-Id": request_id,
            # epoch ms from the wall clock the runtime reads: get_remaining_time_in_millis() = deadline - now
            "Lambda-Runtime-Deadline-Ms": str(int(time.time() * 1000 + spec.timeout_seconds * 1000)),
            "Lambda-Runtime-Invoked-Function-Arn": spec.arn,
            "Lambda-Runtime-Trace-Id": (
                f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Parent={uuid.uuid4().hex[:16]};Sampled=0"
            ),
        }
        invocation = Invocation(request_id, body, headers)
        self._platform(f"START RequestId: {request_id} Version: $LATEST")
        started = time.monotonic()
        sandbox.api.submit(invocation)
        outcome, failure = self._watch(invocation, sandbox.process, started + spec.timeout_seconds)
        duration_ms = (time.monotonic() - started) * 1000
        memory_mb = _peak_memory_mb(sandbox.process.pid)  # before a reset kills it
        if failure is None and outcome.error_type == "Function.ResponseSizeTooLarge":
            failure = "refused"
        status = self._conclude(request_id, sandbox, outcome, failure)
        if failure == "timeout":
            duration_ms = spec.timeout_seconds * 1000
        self._platform(
            f"END RequestId: {request_id}", self._report(request_id, duration_ms, memory_mb, init_ms, status)
        )
        return self._result(request_id, outcome, duration_ms, init_ms)

    def _conclude(self, request_id: str, sandbox: _Sandbox, outcome: Outcome, failure: Failure | None) -> str | None:
        """Logs the end of an invocation and resets the environment after a platform failure; returns the REPORT
        line's status."""
        if failure is None:
            sandbox.pump.sync()
            return None
        if failure == "refused":  # awslambdaric exits once the Runtime API refuses its response, as on Lambda
            with contextlib.suppress(subprocess.TimeoutExpired):
                sandbox.process.wait(timeout=0.5)
        self._reset()  # the process group dies here
        if failure == "timeout":
            self._platform(f"{request_id} Task timed out after {self.spec.timeout_seconds:.2f} seconds")
            return "Status: timeout"
        if failure == "exit":
            self._platform(str(_decode(outcome.body)["errorMessage"]), "Runtime.ExitError")
        if failure == "memory":
            self._platform(str(_decode(outcome.body)["errorMessage"]))
            return "Status: error\tError Type: Runtime.OutOfMemory"
        return "Status: error\tError Type: Runtime.ExitError"

    def _watch(
        self, invocation: Invocation, process: subprocess.Popen[bytes], deadline: float
    ) -> tuple[Outcome, Failure | None]:
        """Waits for the runtime's answer until the deadline; the second item names a platform failure."""
        request_id = invocation.request_id
        while (outcome := invocation.wait(min(WATCH_INTERVAL_SECONDS, max(deadline - time.monotonic(), 0)))) is None:
            if self._closed:
                _kill_group(process)
            status = process.poll()
            if status is not None:
                message = f"RequestId: {request_id} Error: Runtime exited with error: exit status {status}"
                failure = Outcome(error_body("Runtime.ExitError", message), "Runtime.ExitError")
                if invocation.finish(failure):
                    return failure, "exit"
            elif _resident_memory_mb(process.pid) > self.spec.memory_mb:
                _kill_group(process)
                message = f"RequestId: {request_id} Error: Runtime exited with error: signal: killed"
                failure = Outcome(error_body("Runtime.OutOfMemory", message), "Runtime.OutOfMemory")
                if invocation.finish(failure):
                    return failure, "memory"
            elif time.monotonic() >= deadline:
                seconds = f"{self.spec.timeout_seconds:.2f}"
                message = f"RequestId: {request_id} Error: Task timed out after {seconds} seconds"
                failure = Outcome(error_body("Sandbox.Timedout", message), "Sandbox.Timedout")
                if invocation.finish(failure):
                    return failure, "timeout"
        return outcome, None

    def _report(
        self, request_id: str, duration_ms: float, memory_mb: int, init_ms: float | None, extra: str | None
    ) -> str:
        fields = [
            f"REPORT RequestId: {request_id}",
            f"Duration: {duration_ms:.2f} ms",
            f"Billed Duration: {math.ceil(duration_ms)} ms",
            f"Memory Size: {self.spec.memory_mb} MB",
            f"Max Memory Used: {memory_mb} MB",
        ]
        if init_ms is not None:
            fields.append(f"Init Duration: {init_ms:.2f} ms")
        if extra:
            fields.append(extra)
        return "\t".join(fields)

    def _platform(self, *lines: str) -> None:
        for line in lines:
            self.log.write(self._source, line)

    @staticmethod
    def _result(request_id: str, outcome: Outcome, duration_ms: float, init_ms: float | None) -> InvocationResult:
        payload = _decode(outcome.body)
        message = payload.get("errorMessage") if outcome.error_type and isinstance(payload, dict) else None
        return InvocationResult(
            request_id=request_id,
            payload=payload,
            error_type=outcome.error_type,
            error_message=message if isinstance(message, str) else None,
            duration_ms=duration_ms,
            init_duration_ms=init_ms,
        )
