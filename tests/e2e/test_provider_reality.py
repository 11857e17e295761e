"""The pipeline against a provider that behaves like a service, not like our parser: every behaviour of the local
provider drives a real upload through the local stack to a defined final state."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from local.cli import upload
from local.provider.config import Behaviour, FlakyStep
from local.stack import LocalStack, LocalStackConfig
from tests.e2e.audio import SAMPLES
from tests.e2e.test_local_stack import OUTPUT_NAMES, dead_letters, endpoints_of, outputs, wait_final

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
CLEANED_ONLY = ("no_noise.mp3", "no_noise.wav")
MP3_ONLY = ("no_noise.mp3", "noise.mp3")


@dataclass(frozen=True)
class Case:
    behaviours: tuple[str, ...]
    status: str = "COMPLETED"
    outputs: tuple[str, ...] = OUTPUT_NAMES
    error_code: str | None = None
    flaky_script: str | None = None
    surprised: bool = False
    """The pipeline keeps an answer it did not fully understand on the job."""
    extra: dict[str, Any] = field(default_factory=dict)


CASES = {
    "documented": Case(("documented",)),
    "progress callbacks first": Case(("progress",)),
    "final callback twice at once, then again": Case(("duplicate",)),
    "callback before the submit answer": Case(("early",)),
    "form-encoded callbacks": Case(("form",)),
    "multipart callbacks": Case(("multipart",)),
    "numbers and booleans as text": Case(("strings",)),
    "mp3 outputs only (confirmed by lookup)": Case(("mp3-only",), outputs=MP3_ONLY, surprised=True),
    "status-shaped answers only": Case(("status-only",), outputs=CLEANED_ONLY),
    "gzip-encoded outputs": Case(("gzip",)),
    "https outputs from a local CA": Case(("https",)),
    "flaky API (5xx, 429 with and without Retry-After)": Case(("flaky",), extra={"max_parallel_jobs": 1}),
    "no credits": Case(("flaky",), "FAILED", (), "INSUFFICIENT_CREDITS", flaky_script="402"),
    "bad key": Case(("flaky",), "FAILED", (), "PROVIDER_AUTH", flaky_script="403"),
    "everything at once": Case(("early", "progress", "https", "strings", "form", "gzip")),
}


@pytest.fixture(params=list(CASES.values()), ids=list(CASES))
def case_and_stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Case, LocalStack]]:
    case: Case = request.param
    config = LocalStackConfig(
        state_dir=tmp_path / "state",
        provider_behaviours=frozenset(Behaviour(name) for name in case.behaviours),
        provider_flaky_script=tuple(FlakyStep.parse(step) for step in case.flaky_script.split(","))
        if case.flaky_script
        else None,
        reconcile_interval=2.0,
        **case.extra,
    )
    with LocalStack(config) as stack:
        yield case, stack


def test_every_provider_behaviour_ends_in_a_defined_state(case_and_stack: tuple[Case, LocalStack]) -> None:
    case, stack = case_and_stack
    endpoints = endpoints_of(stack)

    job_id = upload(endpoints, SAMPLES / "noisy_speech.wav", "reality/take 1.wav")
    item = wait_final(endpoints, [job_id], timeout=120)[job_id]

    assert item["status"] == case.status, item
    assert item.get("error_code") == case.error_code
    if case.error_code:
        assert item["error_message"]
    assert sorted(outputs(endpoints, "reality/take 1")) == sorted(case.outputs)
    assert ("last_surprise" in item) is case.surprised, item.get("last_surprise")
    assert dead_letters(stack) == 0
    assert stack.provider is not None
    stats = stack.provider.stats()
    assert stats.duplicate_submissions == 0
    assert sum(stats.submissions_by_source.values()) == (1 if case.status == "COMPLETED" else 0)
