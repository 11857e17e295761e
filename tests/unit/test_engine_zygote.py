"""Denoise jobs forked from the zygote: exactly fresh-state outputs, errors as in-thread, dead children, fallback."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf

from local.provider.engine import SAMPLE_RATE, DenoiseOutputs, UnreadableAudio, denoise_file, output_paths
from local.provider.zygote import DenoiseJobError, DenoiseRunner, Zygote

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="the zygote forks"),
    pytest.mark.timeout(60),
]


def _noisy_tone(seconds: float, seed: int, freq: float = 220.0) -> npt.NDArray[np.float64]:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return 0.3 * np.sin(2 * np.pi * freq * t) * (np.sin(2 * np.pi * 3 * t) > 0) + 0.05 * rng.standard_normal(len(t))


def _wav(path: Path, *channels: npt.NDArray[np.float64]) -> Path:
    sf.write(path, np.stack(channels, axis=1), SAMPLE_RATE, subtype="PCM_16")
    return path


def _files(out: DenoiseOutputs) -> list[bytes]:
    return [p.read_bytes() for p in (out.no_noise_mp3, out.no_noise_wav, out.noise_mp3, out.noise_wav)]


def _same(zygote_out: DenoiseOutputs, fresh_out: DenoiseOutputs) -> None:
    """Bit-identical outputs (all four files), and the same report but for the paths and the wall time."""
    assert _files(zygote_out) == _files(fresh_out)
    fields = ("sample_rate", "channels", "frames")
    assert [getattr(zygote_out, f) for f in fields] == [getattr(fresh_out, f) for f in fields]


@pytest.fixture(scope="module")
def zygote() -> Iterator[Zygote]:
    with Zygote() as z:
        yield z


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("inputs")
    return {
        "a": _wav(d / "a.wav", _noisy_tone(0.4, seed=1)),
        "b": _wav(d / "b.wav", _noisy_tone(0.3, seed=2, freq=330.0)),
        "stereo": _wav(d / "st.wav", _noisy_tone(0.3, seed=3), 0.5 * _noisy_tone(0.3, seed=4, freq=180.0)),
        "long": _wav(d / "long.wav", _noisy_tone(3.0, seed=5)),
    }


# --- (1) exactly what fresh states give ------------------------------------------------------------------------------


def test_jobs_in_a_row_are_bit_identical_to_fresh_states(
    zygote: Zygote, inputs: dict[str, Path], tmp_path: Path
) -> None:
    """A, then B, stereo, then A again through one zygote: each equals ``denoise_file`` (fresh states) on its own.
    A state carried over from an earlier job (no reset in libDF) would change B, the stereo job and the second A."""
    through = [
        zygote.denoise(inputs["a"], tmp_path / "z", "a1"),
        zygote.denoise(inputs["b"], tmp_path / "z", "b"),
        zygote.denoise(inputs["stereo"], tmp_path / "z", "st"),
        zygote.denoise(inputs["a"], tmp_path / "z", "a2"),
    ]
    fresh_a = denoise_file(inputs["a"], tmp_path / "f", "a1")
    fresh = [
        fresh_a,
        denoise_file(inputs["b"], tmp_path / "f", "b"),
        denoise_file(inputs["stereo"], tmp_path / "f", "st"),
        fresh_a,
    ]
    for got, want in zip(through, fresh, strict=True):
        _same(got, want)
    assert [o.channels for o in through] == [1, 1, 2, 1]
    assert [p.name for p in (through[3].no_noise_mp3, through[3].no_noise_wav, through[3].noise_mp3)] == [
        "a2_nonoise.mp3",
        "a2_nonoise.wav",
        "a2_noise.mp3",
    ]
    assert through[3].noise_wav == tmp_path / "z" / "a2_noise.wav"


def test_concurrent_jobs_are_each_exactly_fresh(zygote: Zygote, inputs: dict[str, Path], tmp_path: Path) -> None:
    """The server's job threads share one zygote: their children run side by side, each on its own copies."""
    names = ["a", "b", "stereo", "b"]
    results: dict[int, DenoiseOutputs] = {}

    def job(i: int) -> None:
        results[i] = zygote.denoise(inputs[names[i]], tmp_path / "z", f"j{i}")

    threads = [threading.Thread(target=job, args=(i,)) for i in range(len(names))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results) == list(range(len(names)))
    fresh = {name: denoise_file(inputs[name], tmp_path / "f", name) for name in set(names)}
    for i, name in enumerate(names):
        _same(results[i], fresh[name])


def test_an_attenuation_limit_other_than_the_zygotes_is_exactly_a_fresh_state_with_it(
    zygote: Zygote, inputs: dict[str, Path], tmp_path: Path
) -> None:
    """The child sets the limit with df_set_atten_lim on its copy; the zygote's own states keep theirs."""
    assert zygote.attenuation_limit_db == 100.0
    limited = zygote.denoise(inputs["b"], tmp_path / "z", "b6", attenuation_limit_db=6.0)
    _same(limited, denoise_file(inputs["b"], tmp_path / "f", "b6", attenuation_limit_db=6.0))
    unlimited = zygote.denoise(inputs["b"], tmp_path / "z", "b100")
    _same(unlimited, denoise_file(inputs["b"], tmp_path / "f", "b100"))
    assert _files(limited) != _files(unlimited)


def test_the_zygote_is_single_threaded_and_has_no_network_socket(zygote: Zygote) -> None:
    assert zygote.threads == 1
    if not Path("/proc/net/unix").exists():
        pytest.skip("needs Linux /proc")
    unix = {line.split()[6] for line in Path("/proc/net/unix").read_text().splitlines()[1:]}
    fds = Path(f"/proc/{zygote.pid}/fd")
    sockets = {os.readlink(fd)[len("socket:[") : -1] for fd in fds.iterdir() if os.readlink(fd).startswith("socket:")}
    assert sockets  # its control socket
    assert sockets <= unix  # every socket it holds is an AF_UNIX one: nothing is bound to a network interface


# --- (2) unreadable input ------------------------------------------------------------------------------------------


def test_unreadable_input_is_unreadable_audio_and_leaves_nothing(zygote: Zygote, tmp_path: Path) -> None:
    garbage = tmp_path / "bad.mp3"
    garbage.write_bytes(b"definitely not audio" * 100)
    empty = tmp_path / "empty.wav"  # opens as audio (one channel), then has no samples: found in the child
    sf.write(empty, np.zeros(0), SAMPLE_RATE, subtype="PCM_16")
    for src, message in ((garbage, "cannot open as audio"), (empty, "no samples")):
        with pytest.raises(UnreadableAudio, match=message):
            zygote.denoise(src, tmp_path / "out", src.stem)
        assert not any(p.exists() for p in output_paths(tmp_path / "out", src.stem))
        with pytest.raises(UnreadableAudio, match=message):  # as in-thread
            denoise_file(src, tmp_path / "out", src.stem)


def test_another_failure_in_the_child_is_an_exception(zygote: Zygote, inputs: dict[str, Path], tmp_path: Path) -> None:
    stem = "no-such-dir/x"  # the outputs cannot be created
    with pytest.raises(Exception) as in_thread:  # noqa: PT011 - whatever the in-thread error is, the child's matches it
        denoise_file(inputs["b"], tmp_path, stem)
    with pytest.raises(DenoiseJobError, match=rf"failed: {type(in_thread.value).__name__}: "):
        zygote.denoise(inputs["b"], tmp_path, stem)


# --- (3) a child that dies ----------------------------------------------------------------------------------------


def _kill_once_writing(out_dir: Path, stem: str) -> tuple[list[int], Callable[[int], None]]:
    killed: list[int] = []

    def on_child(pid: int) -> None:
        first_output = output_paths(out_dir, stem)[0]
        deadline = time.monotonic() + 10
        while not first_output.exists() and time.monotonic() < deadline:
            time.sleep(0.001)
        os.kill(pid, signal.SIGKILL)  # mid-job: its outputs exist, partly written
        killed.append(pid)

    return killed, on_child


def test_a_killed_child_fails_its_job_and_the_next_job_works(
    zygote: Zygote, inputs: dict[str, Path], tmp_path: Path
) -> None:
    killed, on_child = _kill_once_writing(tmp_path, "long")
    with pytest.raises(DenoiseJobError, match=r"denoise child \d+ was killed by SIGKILL before reporting a result"):
        zygote.denoise(inputs["long"], tmp_path, "long", on_child=on_child)
    assert killed
    assert not any(p.exists() for p in output_paths(tmp_path, "long"))  # its partial outputs were removed
    assert zygote.alive
    _same(zygote.denoise(inputs["b"], tmp_path / "z", "b"), denoise_file(inputs["b"], tmp_path / "f", "b"))


def test_close_ends_the_zygote_and_fails_the_job_still_running(inputs: dict[str, Path], tmp_path: Path) -> None:
    z = Zygote().start()
    running = threading.Event()
    errors: list[BaseException] = []

    def job() -> None:
        try:
            z.denoise(inputs["long"], tmp_path, "long", on_child=lambda pid: running.set())
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=job)
    worker.start()
    assert running.wait(30)
    pid = z.pid
    z.close()
    worker.join(30)
    assert pid is not None
    assert not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    assert not z.alive
    assert len(errors) == 1
    assert isinstance(errors[0], DenoiseJobError)
    assert "SIGTERM" in str(errors[0])


# --- (4) the runner: lazy start, restart, fallback ------------------------------------------------------------------


def test_runner_starts_the_zygote_on_the_first_job_and_replaces_a_dead_one(
    inputs: dict[str, Path], tmp_path: Path
) -> None:
    runner = DenoiseRunner()
    try:
        assert runner.zygote is None  # lazy
        _same(runner.denoise(inputs["b"], tmp_path / "z", "b1"), denoise_file(inputs["b"], tmp_path / "f", "b1"))
        first = runner.zygote
        assert first is not None
        assert first.pid is not None
        os.kill(first.pid, signal.SIGKILL)
        assert first._proc is not None
        first._proc.wait(10)
        _same(runner.denoise(inputs["b"], tmp_path / "z", "b2"), denoise_file(inputs["b"], tmp_path / "f", "b2"))
        assert runner.zygote is not None
        assert runner.zygote.pid != first.pid
        assert runner.fallback_reason is None
    finally:
        runner.close()
    assert runner.zygote is None


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        ([sys.executable, "-c", "raise SystemExit(3)"], "exited with code 3 before it was ready"),
        (  # the real zygote, failing to create its state
            [sys.executable, "-m", "local.provider.zygote", "--fd", "{fd}", "--attenuation-limit-db", "0"],
            "failed to preload: ValueError: attenuation_limit_db must be > 0",
        ),
    ],
)
def test_runner_falls_back_to_in_thread_denoising_and_says_why_once(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    inputs: dict[str, Path],
    tmp_path: Path,
    argv: list[str],
    reason: str,
) -> None:
    monkeypatch.setattr(Zygote, "_command", lambda self, fd: [a.format(fd=fd) for a in argv])
    runner = DenoiseRunner()
    try:
        with caplog.at_level(logging.WARNING, logger="local.provider.zygote"):
            got = [runner.denoise(inputs["b"], tmp_path / "z", f"b{i}") for i in range(2)]
        assert runner.zygote is None
        assert runner.fallback_reason is not None
        assert reason in runner.fallback_reason
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1
        assert reason in warnings[0]
        for i, out in enumerate(got):
            _same(out, denoise_file(inputs["b"], tmp_path / "f", f"b{i}"))
        with pytest.raises(UnreadableAudio):
            runner.denoise(inputs["b"].with_suffix(".missing"), tmp_path, "missing")
    finally:
        runner.close()
