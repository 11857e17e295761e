"""The uploaded object a job is about, and the job id derived from it (one job per object version)."""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass

AUDIO_SUFFIXES = frozenset({".mp3", ".wav", ".m4a", ".flac", ".ogg", ".aac"})
JOB_ID_LENGTH = 32


@dataclass(frozen=True)
class SourceObject:
    """The uploaded object a job is about; its identity includes the version so a changed re-upload is a new job."""

    bucket: str
    key: str
    size: int
    etag: str = ""
    version_id: str = ""

    @property
    def job_id(self) -> str:
        return derive_job_id(self.bucket, self.key, self.version_id or self.etag)

    @property
    def skip_reason(self) -> str | None:
        """Why this object is not audio we should submit, or None."""
        if self.key.endswith("/"):
            return "folder marker"
        if posixpath.splitext(self.key)[1].lower() not in AUDIO_SUFFIXES:
            return "not an audio file suffix"
        if self.size <= 0:
            return "empty object"
        return None


def derive_job_id(bucket: str, key: str, revision: str) -> str:
    digest = hashlib.sha256("\n".join((bucket, key, revision)).encode("utf-8")).hexdigest()
    return digest[:JOB_ID_LENGTH]


def is_job_id(value: str) -> bool:
    return len(value) == JOB_ID_LENGTH and all(c in "0123456789abcdef" for c in value)
