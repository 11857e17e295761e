"""Audio helpers for the e2e tier: make inputs in any container with PyAV, read the bundled sample."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import soundfile as sf

SAMPLES = Path(__file__).resolve().parents[2] / "local" / "samples"


def encode(samples: npt.NDArray[np.float32], fmt: str, codec: str, rate: int = 48_000) -> bytes:
    """Encode (channels, n) float audio with PyAV into a file of container ``fmt``."""
    layout = "mono" if samples.shape[0] == 1 else "stereo"
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as container:
        stream: Any = container.add_stream(codec, rate=rate, layout=layout)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples, dtype=np.float32), "fltp", layout)
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return buf.getvalue()


def noisy_sample() -> npt.NDArray[np.float32]:
    data, _ = sf.read(SAMPLES / "noisy_speech.wav", dtype="float32")
    return np.asarray(data, dtype=np.float32)
