from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st

from denoise_pipeline.domain.outputs import OutputName, output_key
from denoise_pipeline.domain.source import SourceObject, derive_job_id, is_job_id
from denoise_pipeline.domain.tokens import sign, verify
from denoise_pipeline.handlers.upload_events import read_uploads
from local.lambdas.events import s3_put_record

secrets = st.text(min_size=1, max_size=64)
job_ids = st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)


@given(secret=secrets, job_id=job_ids)
def test_token_round_trips_and_is_url_safe(secret: str, job_id: str) -> None:
    token = sign(secret, job_id)
    assert verify([secret], job_id, token)
    assert len(token) == 43
    assert set(token) <= set(string.ascii_letters + string.digits + "-_")


@given(secret=secrets, other=secrets, job_id=job_ids, other_job=job_ids, garbage=st.text(max_size=60))
def test_token_fails_closed(secret: str, other: str, job_id: str, other_job: str, garbage: str) -> None:
    token = sign(secret, job_id)
    if other != secret:
        assert not verify([other], job_id, token)
    if other_job != job_id:
        assert not verify([secret], other_job, token)
    if garbage != token:
        assert not verify([secret], job_id, garbage)
    assert not verify([], job_id, token)
    assert not verify([""], job_id, sign("", job_id))
    assert not verify([secret], job_id, "")


def test_previous_secret_keeps_old_tokens_valid_during_rotation() -> None:
    old_token = sign("old-secret", "a" * 32)
    assert verify(["new-secret", "old-secret"], "a" * 32, old_token)
    assert not verify(["new-secret"], "a" * 32, old_token)


@given(
    bucket=st.text(min_size=3, max_size=20),
    key=st.text(min_size=1, max_size=50),
    revision=st.text(max_size=20),
    other_revision=st.text(max_size=20),
)
def test_job_id_is_stable_and_changes_with_the_object_revision(
    bucket: str, key: str, revision: str, other_revision: str
) -> None:
    job_id = derive_job_id(bucket, key, revision)
    assert job_id == derive_job_id(bucket, key, revision)
    assert is_job_id(job_id)
    if other_revision != revision:
        assert derive_job_id(bucket, key, other_revision) != job_id


def test_version_id_wins_over_etag() -> None:
    a = SourceObject("b", "k.wav", 1, etag="e1", version_id="v1")
    b = SourceObject("b", "k.wav", 1, etag="e2", version_id="v1")
    assert a.job_id == b.job_id


keys = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=60
)


@given(key=keys)
def test_s3_event_keys_are_decoded_exactly(key: str) -> None:
    (source,) = read_uploads({"Records": [s3_put_record("bucket", key, 10, "etag")]}, "bucket")
    assert isinstance(source, SourceObject)
    assert source.key == key


def test_classic_plus_and_space_key() -> None:
    event = {"Records": [s3_put_record("b", "uploads/My Song+(1) é.wav", 10, "e")]}
    assert event["Records"][0]["s3"]["object"]["key"] == "uploads/My+Song%2B%281%29+%C3%A9.wav"
    (source,) = read_uploads(event, "b")
    assert isinstance(source, SourceObject)
    assert source.key == "uploads/My Song+(1) é.wav"


def test_skip_reasons() -> None:
    assert SourceObject("b", "a/", 0).skip_reason == "folder marker"
    assert SourceObject("b", "a.txt", 5).skip_reason == "not an audio file suffix"
    assert SourceObject("b", "a.wav", 0).skip_reason == "empty object"
    assert SourceObject("b", "A.FlAc", 5).skip_reason is None
    for suffix in (".mp3", ".wav", ".m4a", ".flac", ".ogg", ".aac"):
        assert SourceObject("b", f"x{suffix.upper()}", 1).skip_reason is None


def test_output_keys_come_from_the_job_never_the_url() -> None:
    assert output_key("denoised/", "uploads/a.b/song.final.wav", OutputName.NO_NOISE_WAV) == (
        "denoised/uploads/a.b/song.final/no_noise.wav"
    )
    assert output_key("denoised/", "noext", OutputName.NOISE) == "denoised/noext/noise.mp3"
    assert {name.file_name for name in OutputName} == {"no_noise.mp3", "no_noise.wav", "noise.mp3", "noise.wav"}
