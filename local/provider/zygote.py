"""Denoise jobs without paying ``df_create``: a zygote process holds pristine DeepFilterNet states, one fork per job.

``df_create`` (load + optimise the model) costs 0.4-0.5 CPU-s per state, more than denoising a short clip, and libDF
has no reset: a state that saw one file carries that file's recurrent state into the next. So:

* **The zygote** (``python -m local.provider.zygote``, started by ``Zygote.start()``) imports the engine and creates
  one pristine state (a second on the first stereo job: a mono job uses the first, a stereo job both), then only
  waits for requests. It is single-threaded (BLAS/OpenMP/rayon pools are set to one thread, and it reports its
  thread count when ready), so forking it is safe; the multi-threaded server is never forked.
* **One child per job**: the zygote forks; the child owns copy-on-write copies of the pristine states - untouched
  by any other job, so each job is denoised exactly as by fresh states - runs ``engine.denoise_file_with`` (the four
  outputs, written as ``denoise_file`` writes them), reports ``{pid}``, then its result, and exits with
  ``os._exit``. The zygote reaps it and reports its exit status.
* **Wire**: an ``AF_UNIX``/``SOCK_SEQPACKET`` socketpair made by the caller (no address, no file: nothing is bound),
  one JSON message per packet. Per job the caller makes another socketpair and passes one end with the request
  (``SCM_RIGHTS``); the child and the zygote write on it, the caller reads until the exit report or EOF.
* **Lifetime**: the zygote exits when its control socket closes (``Zygote.close()``, or the server process died):
  it terminates and reaps the children still running first. It runs in its own session, so a terminal's Ctrl-C
  reaches the server (which shuts down in order), not the zygote.

Why not ``multiprocessing``'s forkserver: it is one process-wide server with a global preload list (a provider
could not stop "its" forkserver without breaking another's jobs), every child re-runs the parent's ``__main__``
script (under pytest, importing pytest in every job), and each request pickles the spawn preparation data. The
zygote here owns exactly what it needs, and nothing else.

``DenoiseRunner`` is what the server uses: the zygote started on the first job, restarted if it died, and
in-thread ``denoise_file`` when it cannot start (logged once, with the reason).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, NoReturn

from local.provider.engine import (
    DEFAULT_ATTENUATION_LIMIT_DB,
    ChannelDenoiser,
    DenoiseOutputs,
    UnreadableAudio,
    denoise_file,
    denoise_file_with,
    output_paths,
    probe_channels,
    warm_up_codecs,
)

__all__ = ["DenoiseJobError", "DenoiseRunner", "Zygote", "ZygoteUnavailable"]

log = logging.getLogger(__name__)

_MAX_MESSAGE: Final[int] = 1 << 16
"""Largest message on the wire (a SOCK_SEQPACKET packet); tracebacks are cut to fit."""
_TRACEBACK_CHARS: Final[int] = 8000
START_TIMEOUT: Final[float] = 120.0
"""Seconds the zygote may take to import the engine and create its first state (about 1 s on this machine)."""
_ONE_THREAD: Final[dict[str, str]] = {
    "OPENBLAS_NUM_THREADS": "1",  # numpy's OpenBLAS starts a thread pool at import otherwise
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "RAYON_NUM_THREADS": "1",
}
_PACKAGE_ROOT: Final[str] = str(Path(__file__).resolve().parents[2])
"""The directory holding ``local/``: on the zygote's PYTHONPATH, so ``-m local.provider.zygote`` resolves."""
MAX_RESTARTS: Final[int] = 3
"""``DenoiseRunner``: zygotes that may die and be replaced before it denoises in-thread for good."""


class ZygoteUnavailable(RuntimeError):
    """The zygote could not start, or is gone before a job was handed to it (the job did not run)."""


class DenoiseJobError(RuntimeError):
    """A job run in a zygote child failed (other than UnreadableAudio), or its child died before reporting."""


def _send(sock: socket.socket, message: dict[str, Any], fds: Sequence[int] = ()) -> None:
    data = json.dumps(message).encode()
    if fds:
        socket.send_fds(sock, [data], list(fds))
    else:
        sock.send(data)


def _load(data: bytes) -> dict[str, Any]:
    message = json.loads(data)
    if not isinstance(message, dict):
        raise ValueError(f"not a message: {data[:80]!r}")
    return message


# --- the caller's side ----------------------------------------------------------------------------------------------


class Zygote:
    """A running zygote (``start()``), its control socket, and ``denoise()`` per job. Thread-safe."""

    def __init__(self, attenuation_limit_db: float = DEFAULT_ATTENUATION_LIMIT_DB) -> None:
        if not attenuation_limit_db > 0:
            raise ValueError("attenuation_limit_db must be > 0 (0 disables the model)")
        self.attenuation_limit_db = attenuation_limit_db
        self.threads: int | None = None
        """Threads in the zygote when it was ready (1: forking it is safe)."""
        self._lock = threading.Lock()  # start/close, and one request at a time on the control socket
        self._proc: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None

    def _command(self, fd: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "local.provider.zygote",
            "--fd",
            str(fd),
            "--attenuation-limit-db",
            repr(self.attenuation_limit_db),
        ]

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = START_TIMEOUT) -> Zygote:
        """Start the zygote and wait until its pristine state exists. Raises ZygoteUnavailable."""
        if not (hasattr(os, "fork") and hasattr(socket, "send_fds") and hasattr(socket, "SOCK_SEQPACKET")):
            raise ZygoteUnavailable("this platform has no fork() or no SCM_RIGHTS on SOCK_SEQPACKET sockets")
        with self._lock:
            if self._proc is not None:
                raise RuntimeError("already started")
            try:
                ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            except OSError as exc:
                raise ZygoteUnavailable(f"no AF_UNIX SOCK_SEQPACKET socketpair: {exc}") from exc
            try:
                path = os.environ.get("PYTHONPATH")
                env = {
                    **os.environ,
                    **_ONE_THREAD,
                    "PYTHONPATH": os.pathsep.join([_PACKAGE_ROOT, path] if path else [_PACKAGE_ROOT]),
                }
                with theirs:
                    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                        self._command(theirs.fileno()),
                        pass_fds=(theirs.fileno(),),
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        env=env,
                        start_new_session=True,
                    )
            except OSError as exc:
                ours.close()
                raise ZygoteUnavailable(f"cannot start the zygote: {exc}") from exc
            try:
                hello = self._hello(ours, proc, timeout)
            except ZygoteUnavailable:
                ours.close()
                _reap(proc)
                raise
            threads = int(hello.get("threads", 0))
            if threads != 1:
                ours.close()
                _reap(proc)
                raise ZygoteUnavailable(f"the zygote runs {threads} threads when ready: forking it is not safe")
            self._proc, self._control, self.threads = proc, ours, threads
        return self

    @staticmethod
    def _hello(ours: socket.socket, proc: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
        ours.settimeout(timeout)
        try:
            data = ours.recv(_MAX_MESSAGE)
            hello = _load(data) if data else {}
        except TimeoutError as exc:
            raise ZygoteUnavailable(f"the zygote was not ready within {timeout:g} s") from exc
        except (OSError, ValueError) as exc:
            raise ZygoteUnavailable(f"no answer from the zygote: {exc}") from exc
        ours.settimeout(None)
        if "error" in hello:
            raise ZygoteUnavailable(f"the zygote failed to preload: {hello['error']}")
        if not hello.get("ready"):
            try:
                code: int | None = proc.wait(5)
            except subprocess.TimeoutExpired:
                code = None
            raise ZygoteUnavailable(f"the zygote {_describe_exit(code)} before it was ready")
        return hello

    def denoise(
        self,
        src_path: str | os.PathLike[str],
        out_dir: str | os.PathLike[str],
        stem: str,
        attenuation_limit_db: float | None = None,
        *,
        on_child: Callable[[int], None] | None = None,
    ) -> DenoiseOutputs:
        """``engine.denoise_file`` in a fresh child of the zygote: same outputs, same UnreadableAudio.

        ``attenuation_limit_db`` defaults to the zygote's. Raises ZygoteUnavailable if the zygote is gone before the
        job was handed over (nothing ran), DenoiseJobError for any other failure (partial outputs are removed).
        ``on_child(pid)`` is called with the child's pid once it runs.
        """
        limit = self.attenuation_limit_db if attenuation_limit_db is None else attenuation_limit_db
        if not limit > 0:
            raise ValueError("attenuation_limit_db must be > 0 (0 disables the model)")
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = output_paths(out, stem)
        channels = probe_channels(src_path)  # UnreadableAudio before any output exists, as denoise_file
        request = {
            "src": os.path.abspath(src_path),
            "out_dir": os.path.abspath(out),
            "stem": stem,
            "channels": channels,
            "attenuation_limit_db": limit,
        }
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with ours:
            try:
                with self._lock:
                    if self._control is None or not self.alive:
                        raise ZygoteUnavailable("the zygote is not running")
                    _send(self._control, request, [theirs.fileno()])
            except OSError as exc:
                raise ZygoteUnavailable(f"the zygote is gone: {exc}") from exc
            finally:
                theirs.close()
            pid, result, code = _collect(ours, on_child)
        if result is not None and "ok" in result:
            done = result["ok"]
            return DenoiseOutputs.at(
                paths,
                channels=int(done["channels"]),
                frames=int(done["frames"]),
                processing_seconds=float(done["processing_seconds"]),
            )
        for path in paths:  # a killed child leaves what it had written
            path.unlink(missing_ok=True)
        if result is not None and "unreadable" in result:
            raise UnreadableAudio(str(result["unreadable"]))
        if result is not None and "error" in result:
            raise DenoiseJobError(f"denoise child {pid} failed: {result['error']}\n{result.get('traceback', '')}")
        if pid is None and code is None:
            raise DenoiseJobError("the zygote went away before the job's child reported")
        raise DenoiseJobError(f"denoise child {pid} {_describe_exit(code)} before reporting a result")

    def close(self, timeout: float = 10.0) -> None:
        """Close the control socket: the zygote terminates the children still running, reaps them and exits."""
        with self._lock:
            control, proc = self._control, self._proc
            self._control = self._proc = None
        if control is not None:
            control.close()
        if proc is not None:
            _reap(proc, timeout)

    def __enter__(self) -> Zygote:
        return self.start() if self._proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _collect(
    conn: socket.socket, on_child: Callable[[int], None] | None
) -> tuple[int | None, dict[str, Any] | None, int | None]:
    """Read one job's messages - the child's ``{pid}`` and result, the zygote's ``{exit}`` - until the exit report,
    or EOF (the zygote and the child are both gone). Returns (pid, result, exit code)."""
    pid: int | None = None
    result: dict[str, Any] | None = None
    while data := conn.recv(_MAX_MESSAGE):
        message = _load(data)
        if "exit" in message:
            return pid, result, int(message["exit"])
        if "pid" in message:
            pid = int(message["pid"])
            if on_child is not None:
                on_child(pid)
        else:
            result = message
    return pid, result, None


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "vanished"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _reap(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class DenoiseRunner:
    """The server's denoiser: jobs through a zygote started on the first job (and again if it died), else in-thread
    ``denoise_file`` - when the zygote cannot start (logged once, with the reason) or died ``MAX_RESTARTS`` times.
    ``close()`` stops the zygote; jobs after that run in-thread."""

    def __init__(self, attenuation_limit_db: float = DEFAULT_ATTENUATION_LIMIT_DB) -> None:
        self.attenuation_limit_db = attenuation_limit_db
        self._lock = threading.Lock()
        self._zygote: Zygote | None = None
        self._started = 0
        self.fallback_reason: str | None = None
        """Why jobs run in-thread (None while the zygote is used or not yet started)."""

    @property
    def zygote(self) -> Zygote | None:
        return self._zygote

    def denoise(self, src_path: str | os.PathLike[str], out_dir: str | os.PathLike[str], stem: str) -> DenoiseOutputs:
        """``denoise_file(src_path, out_dir, stem, attenuation_limit_db)``'s outputs and exceptions (a child that
        died: DenoiseJobError)."""
        for _ in range(2):  # a zygote found gone before the handover is replaced once
            zygote = self._ready()
            if zygote is None:
                break
            try:
                return zygote.denoise(src_path, out_dir, stem)
            except ZygoteUnavailable as exc:
                log.warning("denoise zygote %s is gone (%s); starting another", zygote.pid, exc)
        return denoise_file(src_path, out_dir, stem, self.attenuation_limit_db)

    def _ready(self) -> Zygote | None:
        with self._lock:
            if self.fallback_reason is not None:
                return None
            if self._zygote is not None and self._zygote.alive:
                return self._zygote
            if self._zygote is not None:
                self._zygote.close()
                self._zygote = None
            if self._started > MAX_RESTARTS:
                self._fall_back(f"the zygote died {self._started} times")
                return None
            self._started += 1
            try:
                self._zygote = Zygote(self.attenuation_limit_db).start()
            except ZygoteUnavailable as exc:
                self._fall_back(str(exc))
            except Exception as exc:  # noqa: BLE001 - whatever stops the zygote, jobs still run (in-thread)
                self._fall_back(f"{type(exc).__name__}: {exc}")
            return self._zygote

    def _fall_back(self, reason: str) -> None:
        self.fallback_reason = reason
        log.warning("local MusicGPT: denoising in the job threads (fresh DeepFilterNet states per job): %s", reason)

    def close(self) -> None:
        with self._lock:
            zygote, self._zygote = self._zygote, None
            if self.fallback_reason is None:
                self.fallback_reason = "closed"
        if zygote is not None:
            zygote.close()


# --- the zygote's side ----------------------------------------------------------------------------------------------


class _Server:
    """The zygote's loop: requests on the control socket fork children; SIGCHLD reaps them."""

    def __init__(self, control: socket.socket, first: ChannelDenoiser) -> None:
        self.control = control
        self.states = [first]
        self.limit = first.attenuation_limit_db
        self.children: dict[int, socket.socket] = {}  # pid -> the job's reply socket
        self.wake_r, self.wake_w = os.pipe()
        for fd in (self.wake_r, self.wake_w):
            os.set_blocking(fd, False)
        self.selector = selectors.DefaultSelector()

    def serve(self) -> int:
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # a handler, so the wakeup fd is written
        signal.set_wakeup_fd(self.wake_w)
        self.selector.register(self.control, selectors.EVENT_READ, "control")
        self.selector.register(self.wake_r, selectors.EVENT_READ, "sigchld")
        while True:
            for key, _ in self.selector.select():
                if key.data == "sigchld":
                    while len(os.read(self.wake_r, 512)) == 512:
                        pass
                    self._reap(block=False)
                elif not self._request():
                    self._shut_down()
                    return 0

    def _request(self) -> bool:
        """Fork a child for the next request; False once the control socket closed."""
        data, fds, _, _ = socket.recv_fds(self.control, _MAX_MESSAGE, 1)
        if not data:
            for fd in fds:
                os.close(fd)
            return False
        if not fds:
            return True  # nothing to answer on
        reply = socket.socket(fileno=fds[0])
        try:
            request = _load(data)
            while len(self.states) < min(2, int(request["channels"])):
                self.states.append(ChannelDenoiser(self.limit))  # once, on the first stereo job
                gc.freeze()
            pid = os.fork()
        except Exception as exc:  # noqa: BLE001 - a bad request or a failed fork fails that job, not the zygote
            _send(reply, {"error": f"{type(exc).__name__}: {exc}"})
            reply.close()
            return True
        if pid == 0:
            self._child(reply, request)
        self.children[pid] = reply
        return True

    def _child(self, reply: socket.socket, request: dict[str, Any]) -> NoReturn:
        code = 0
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            self.selector.close()
            for fd in (self.wake_r, self.wake_w):
                os.close(fd)
            self.control.close()
            for other in self.children.values():
                other.close()
            _send(reply, {"pid": os.getpid()})
            _send(reply, _run_job(self.states, request))
        except BaseException:  # noqa: BLE001 - the caller sees "exited with code 70" and no result
            code = 70
        finally:
            os._exit(code)  # no atexit handlers, no stdio flush, no freeing of the states: the process ends

    def _reap(self, *, block: bool) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            reply = self.children.pop(pid, None)
            if reply is not None:
                with contextlib.suppress(OSError):  # the caller gave up on this job
                    _send(reply, {"exit": os.waitstatus_to_exitcode(status)})
                reply.close()

    def _shut_down(self) -> None:
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        self._reap(block=True)


def _run_job(states: list[ChannelDenoiser], request: dict[str, Any]) -> dict[str, Any]:
    try:
        outputs = denoise_file_with(
            states,
            request["src"],
            request["out_dir"],
            request["stem"],
            float(request["attenuation_limit_db"]),
        )
    except UnreadableAudio as exc:
        return {"unreadable": str(exc)}
    except Exception as exc:  # noqa: BLE001 - reported to the caller, who raises DenoiseJobError
        return {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-_TRACEBACK_CHARS:]}
    return {
        "ok": {
            "channels": outputs.channels,
            "frames": outputs.frames,
            "processing_seconds": outputs.processing_seconds,
        }
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.provider.zygote", description=__doc__.split("\n")[0])
    parser.add_argument("--fd", type=int, required=True, help="the control socket (SOCK_SEQPACKET), inherited")
    parser.add_argument("--attenuation-limit-db", type=float, default=DEFAULT_ATTENUATION_LIMIT_DB)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server stops us by closing the control socket
    control = socket.socket(fileno=args.fd)
    gc.disable()  # no collection between here and the forks: the children share the heap copy-on-write
    try:
        first = ChannelDenoiser(args.attenuation_limit_db)
        warm_up_codecs()
    except Exception as exc:  # noqa: BLE001 - reported: the caller falls back to in-thread denoising
        _send(control, {"error": f"{type(exc).__name__}: {exc}"})
        return 1
    gc.collect()  # also ends FFmpeg's decoder threads: PyAV's decoder contexts are freed by the cyclic collector
    gc.freeze()  # what exists now is never scanned by a child's collector (which would copy the pages it touches)
    gc.enable()
    _send(control, {"ready": True, "pid": os.getpid(), "threads": _threads()})
    return _Server(control, first).serve()


def _threads() -> int:
    """Threads of this process, native ones included where /proc tells (Linux)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


if __name__ == "__main__":
    sys.exit(main())
