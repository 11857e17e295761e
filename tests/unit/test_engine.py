"""The DeepFilterNet engine on short synthetic audio and on the bundled sample."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf

from local.provider.engine import (
    DELAY,
    HOP,
    SAMPLE_RATE,
    StreamDenoiser,
    UnreadableAudio,
    denoise_file,
    output_paths,
)
from local.provider.metrics import si_sdr, snr_db

SAMPLES = Path(__file__).resolve().parents[2] / "local" / "samples"
LSB = 1 / 32768


def _noisy_tone(seconds: float, rate: int = SAMPLE_RATE, seed: int = 0) -> npt.NDArray[np.float64]:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 2 * t) > 0)
    return tone + 0.05 * rng.standard_normal(len(t))


def _read(path: Path) -> npt.NDArray[np.float64]:
    data, rate = sf.read(path, always_2d=True)
    assert rate == SAMPLE_RATE
    return np.asarray(data, dtype=np.float64)


def test_outputs_have_input_length_and_noise_is_the_difference(tmp_path: Path) -> None:
    src = tmp_path / "in.wav"
    x = _noisy_tone(1.0)[: SAMPLE_RATE - 123]  # not a whole number of DFN frames
    sf.write(src, x, SAMPLE_RATE, subtype="PCM_16")

    out = denoise_file(src, tmp_path / "out", "job1")

    assert (out.channels, out.sample_rate, out.frames) == (1, SAMPLE_RATE, len(x))
    assert [p.name for p in (out.no_noise_mp3, out.no_noise_wav, out.noise_mp3, out.noise_wav)] == [
        "job1_nonoise.mp3",
        "job1_nonoise.wav",
        "job1_noise.mp3",
        "job1_noise.wav",
    ]
    noisy = _read(src)
    clean, noise = _read(out.no_noise_wav), _read(out.noise_wav)
    assert clean.shape == noise.shape == noisy.shape
    np.testing.assert_allclose(clean + noise, noisy, atol=2 * LSB)  # PCM16 rounding of each output
    assert float(np.mean(clean**2)) < float(np.mean(noisy**2))  # something was removed
    for mp3 in (out.no_noise_mp3, out.noise_mp3):
        with av.open(str(mp3)) as container:
            stream = container.streams.audio[0]
            assert container.format.name == "mp3"
            assert stream.rate == SAMPLE_RATE
            assert sum(frame.samples for frame in container.decode(stream)) == len(x)  # LAME gapless header


def test_other_sample_rate_is_resampled_to_48k(tmp_path: Path) -> None:
    src = tmp_path / "in.flac"
    x = _noisy_tone(0.5, rate=16_000)
    sf.write(src, x, 16_000)

    out = denoise_file(src, tmp_path, "r16")

    assert out.sample_rate == SAMPLE_RATE
    assert abs(out.frames - len(x) * 3) <= 32  # FFmpeg's resampler may trim its filter tail
    assert _read(out.no_noise_wav).shape == (out.frames, 1)


def test_stereo_is_denoised_per_channel(tmp_path: Path) -> None:
    left, right = _noisy_tone(0.6, seed=1), 0.5 * _noisy_tone(0.6, seed=2)[::-1]
    sf.write(tmp_path / "st.wav", np.stack([left, right], axis=1), SAMPLE_RATE, subtype="PCM_16")
    sf.write(tmp_path / "l.wav", left, SAMPLE_RATE, subtype="PCM_16")
    sf.write(tmp_path / "r.wav", right, SAMPLE_RATE, subtype="PCM_16")

    stereo = denoise_file(tmp_path / "st.wav", tmp_path, "st")
    mono_l = denoise_file(tmp_path / "l.wav", tmp_path, "l")
    mono_r = denoise_file(tmp_path / "r.wav", tmp_path, "r")

    assert stereo.channels == 2
    both = _read(stereo.no_noise_wav)
    assert both.shape == (len(left), 2)
    # Each channel went through its own DFN state: identical to denoising that channel alone.
    np.testing.assert_allclose(both[:, 0], _read(mono_l.no_noise_wav)[:, 0], atol=LSB)
    np.testing.assert_allclose(both[:, 1], _read(mono_r.no_noise_wav)[:, 0], atol=LSB)


def test_streaming_is_independent_of_block_sizes() -> None:
    rng = np.random.default_rng(3)
    x = (_noisy_tone(0.7)[None, :]).astype(np.float32)

    def run(sizes: list[int]) -> npt.NDArray[np.float32]:
        outs: list[npt.NDArray[np.float32]] = []
        with StreamDenoiser(1) as dn:
            pos = 0
            for size in sizes:
                outs.extend(clean for clean, _ in dn.feed(x[:, pos : pos + size]))
                pos += size
            outs.extend(clean for clean, _ in dn.finish())
        return np.concatenate(outs, axis=1)

    whole = run([x.shape[1]])
    cuts = rng.integers(1, 3 * HOP, size=200)
    pieces = run([*cuts.tolist(), x.shape[1]])
    assert whole.shape == pieces.shape == x.shape
    np.testing.assert_array_equal(whole, pieces)


def test_output_is_time_aligned_with_input() -> None:
    """The 1440-sample DFN delay is removed: an attenuation-limited output correlates with the input at lag 0."""
    x = _noisy_tone(0.5)[None, :].astype(np.float32)
    with StreamDenoiser(1, attenuation_limit_db=6.0) as dn:
        clean = np.concatenate([c for c, _ in [*dn.feed(x), *dn.finish()]], axis=1)[0]
    lags = range(-DELAY - HOP, DELAY + HOP + 1, 10)
    corr = [
        float(np.dot(x[0][max(0, -k) : len(x[0]) - max(0, k)], clean[max(0, k) : len(clean) - max(0, -k)]))
        for k in lags
    ]
    assert list(lags)[int(np.argmax(corr))] == 0


@pytest.mark.parametrize("content", [b"", b"definitely not audio" * 100, bytes(range(256)) * 40])
def test_unreadable_bytes_raise_and_leave_nothing(tmp_path: Path, content: bytes) -> None:
    src = tmp_path / "bad.mp3"
    src.write_bytes(content)
    with pytest.raises(UnreadableAudio):
        denoise_file(src, tmp_path / "out", "bad")
    assert not any(p.exists() for p in output_paths(tmp_path / "out", "bad"))


def test_file_without_audio_stream_is_unreadable(tmp_path: Path) -> None:
    src = tmp_path / "video.mp4"
    with av.open(str(src), "w") as container:
        stream = container.add_stream("mpeg4", rate=5)
        stream.width, stream.height = 32, 32
        for _ in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    with pytest.raises(UnreadableAudio, match="no audio stream"):
        denoise_file(src, tmp_path, "video")


def test_bundled_sample_gains_at_least_8_db_si_sdr(tmp_path: Path) -> None:
    clean = _read(SAMPLES / "clean_speech.wav")[:, 0]
    noisy = _read(SAMPLES / "noisy_speech.wav")[:, 0]
    assert 0.0 <= snr_db(clean, noisy - clean) <= 5.0  # a hard mix, not a trivial one

    out = denoise_file(SAMPLES / "noisy_speech.wav", tmp_path, "sample")
    denoised = _read(out.no_noise_wav)[:, 0]

    gain = si_sdr(clean, denoised) - si_sdr(clean, noisy)
    assert gain >= 8.0, f"SI-SDR gain {gain:.2f} dB"


def test_memory_does_not_grow_with_length(tmp_path: Path) -> None:
    def peak_for(seconds: float) -> int:
        src = tmp_path / f"{seconds}.wav"
        with sf.SoundFile(src, "w", SAMPLE_RATE, 1, subtype="PCM_16") as f:
            for i in range(int(seconds)):
                f.write(_noisy_tone(1.0, seed=i) * 0.5)
        tracemalloc.start()
        try:
            denoise_file(src, tmp_path, f"m{seconds}")
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    short, long = peak_for(2), peak_for(24)
    # 24 s of 48 kHz float32 would be 4.6 MB per copy; streaming keeps the peak flat.
    assert long < short + 1_000_000, (short, long)


def test_si_sdr_basics() -> None:
    rng = np.random.default_rng(5)
    s = rng.standard_normal(10_000)
    n = rng.standard_normal(10_000)
    assert si_sdr(s, 3.0 * s) > 100  # scale-invariant
    assert si_sdr(s, s + n) == pytest.approx(0.0, abs=0.3)
    assert si_sdr(s, s + 0.1 * n) == pytest.approx(20.0, abs=0.3)
    assert si_sdr(s, np.concatenate([s + 0.1 * n, np.zeros(50)])) == pytest.approx(20.0, abs=0.3)
    with pytest.raises(ValueError, match="silent"):
        si_sdr(np.zeros(10), s[:10])
