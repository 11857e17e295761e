"""The four outputs of a denoise job and where each lands in the output bucket."""

from __future__ import annotations

import posixpath
from enum import StrEnum


class OutputName(StrEnum):
    """The provider's output fields; the value is also the object name in the output bucket."""

    NO_NOISE = "no_noise"
    NO_NOISE_WAV = "no_noise_wav"
    NOISE = "noise"
    NOISE_WAV = "noise_wav"

    @property
    def is_wav(self) -> bool:
        return self.value.endswith("_wav")

    @property
    def file_name(self) -> str:
        """`no_noise_wav` → `no_noise.wav`, `noise` → `noise.mp3`."""
        return f"{self.value.removesuffix('_wav')}.wav" if self.is_wav else f"{self.value}.mp3"

    @property
    def content_type(self) -> str:
        return "audio/wav" if self.is_wav else "audio/mpeg"


REQUIRED_OUTPUTS = (OutputName.NO_NOISE_WAV, OutputName.NOISE_WAV)


def output_key(prefix: str, source_key: str, name: OutputName) -> str:
    """`<prefix><input key without extension>/<fixed name>`: never derived from a provider URL."""
    stem = posixpath.splitext(source_key)[0]
    return f"{prefix}{stem}/{name.file_name}"
