"""The four outputs of a denoise job, where each lands in the output bucket, and what it carries as metadata.

Keys and metadata fit S3's limits by construction: a key is at most 1,024 bytes of UTF-8 (a long input key's stem
is shortened, deterministically, with a hash of the whole key), user metadata at most 2 KB (the source key is
kept as text when it is printable ASCII, as base64url otherwise, and left out when it would not fit: the job item
always has it).
"""

from __future__ import annotations

import base64
import hashlib
import posixpath
from enum import StrEnum

MAX_KEY_BYTES = 1024
MAX_METADATA_BYTES = 2048
STAGING_PREFIX = ".staging/"
"""Where a job's outputs are written before all of them are promoted to their final keys together."""


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
    """`<prefix><input key without extension>/<fixed name>`: never derived from a provider URL.

    When that is longer than S3 allows, the stem keeps as much of its start as fits, followed by `~` and 16 hex
    digits of the whole source key's SHA-256, so the same input always maps to the same keys. Inputs that differ
    only in their extension (`song.wav`, `song.mp3`) share their outputs, as DESIGN.md's layout has it: the job
    that finishes last wins, and each job item keeps its own output keys and source key.
    """
    stem = posixpath.splitext(source_key)[0]
    key = f"{prefix}{stem}/{name.file_name}"
    if len(key.encode("utf-8")) <= MAX_KEY_BYTES:
        return key
    marker = "~" + hashlib.sha256(source_key.encode("utf-8")).hexdigest()[:16]
    room = MAX_KEY_BYTES - len(f"{prefix}{marker}/{name.file_name}".encode())
    shortened = stem.encode("utf-8")[: max(0, room)].decode("utf-8", errors="ignore")
    return f"{prefix}{shortened}{marker}/{name.file_name}"


def staging_key(job_id: str, name: OutputName) -> str:
    return f"{STAGING_PREFIX}{job_id}/{name.file_name}"


def output_metadata(job_id: str, task_id: str, source_key: str) -> dict[str, str]:
    """User metadata of every output: the job, the task and (when it fits) the source key, within 2 KB."""
    metadata = {"job-id": job_id, "task-id": task_id}
    if source_key.isascii() and source_key.isprintable():
        candidate = {"source-key": source_key}
    else:
        candidate = {"source-key-b64": base64.urlsafe_b64encode(source_key.encode("utf-8")).decode("ascii")}
    if metadata_bytes(metadata | candidate) <= MAX_METADATA_BYTES:
        metadata |= candidate
    return metadata


def metadata_bytes(metadata: dict[str, str]) -> int:
    """How S3 counts user metadata: the UTF-8 bytes of every name (without `x-amz-meta-`) and value."""
    return sum(len(name.encode("utf-8")) + len(value.encode("utf-8")) for name, value in metadata.items())
