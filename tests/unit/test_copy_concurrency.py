"""A job's outputs are copied at once (a job takes about as long as its largest output), then promoted; a failure
is raised only once every copy has ended, and a permanent refusal wins over a transient error."""

from __future__ import annotations

import threading
from typing import Any, cast

import pytest

from denoise_pipeline.adapters.output_copier import CopyError, OutputCopier, OutputRefused
from denoise_pipeline.workflows.copy import OutputTransfer, stage_and_promote

TRANSFERS = [OutputTransfer(f"https://x/{i}", f".staging/{i}", f"out/{i}", "audio/wav") for i in range(4)]


class FakeCopier:
    """Each copy waits until all four have started: only concurrent copies get past the barrier."""

    def __init__(self, failures: dict[str, Exception] | None = None) -> None:
        self.started = threading.Barrier(len(TRANSFERS), timeout=10)
        self.failures = failures or {}
        self.ended: list[str] = []
        self.promoted: list[str] = []
        self._lock = threading.Lock()

    def copy(self, url: str, bucket: str, key: str, **_: Any) -> int:
        self.started.wait()
        with self._lock:
            self.ended.append(key)
        if url in self.failures:
            raise self.failures[url]
        return len(url)

    def promote(self, bucket: str, staging_key: str, final_key: str) -> None:
        with self._lock:
            self.promoted.append(final_key)


def _run(copier: FakeCopier) -> int:
    return stage_and_promote(cast("OutputCopier", copier), "bucket", TRANSFERS, {"job-id": "j"}, deadline=1e12)


def test_the_four_outputs_are_copied_at_once_then_all_promoted() -> None:
    copier = FakeCopier()
    assert _run(copier) == sum(len(t.url) for t in TRANSFERS)
    assert sorted(copier.promoted) == sorted(t.final_key for t in TRANSFERS)


def test_a_failure_is_raised_after_every_copy_ended_and_nothing_is_promoted() -> None:
    copier = FakeCopier({TRANSFERS[0].url: CopyError("output URL answered HTTP 503")})
    with pytest.raises(CopyError, match="503"):
        _run(copier)
    assert sorted(copier.ended) == sorted(t.staging_key for t in TRANSFERS)
    assert copier.promoted == []


def test_a_permanent_refusal_wins_over_a_transient_error() -> None:
    copier = FakeCopier(
        {TRANSFERS[0].url: CopyError("connection reset"), TRANSFERS[2].url: OutputRefused("not on the allowlist")}
    )
    with pytest.raises(OutputRefused):
        _run(copier)
