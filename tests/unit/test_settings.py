"""Each function's settings read exactly what template.yaml gives that function, and fail at start-up otherwise."""

from __future__ import annotations

import pytest

from denoise_pipeline.domain.submission import SubmitMode
from denoise_pipeline.settings import (
    EnvSettings,
    ReconcileSettings,
    SettingsError,
    SubmitSettings,
    WebhookSettings,
)
from local.aws.template import Template

SETTINGS: dict[str, type[EnvSettings]] = {
    "SubmitFunction": SubmitSettings,
    "WebhookFunction": WebhookSettings,
    "ReconcileFunction": ReconcileSettings,
}
RUNTIME_LIBRARIES = "POWERTOOLS_"  # read by Powertools itself, not by our settings


def template_variables(function: str) -> set[str]:
    template = Template.load()
    shared = template.document["Globals"]["Function"]["Environment"]["Variables"]
    own = template.function(function).get("Environment", {}).get("Variables", {})
    return {name for name in {*shared, *own} if not name.startswith(RUNTIME_LIBRARIES)}


@pytest.mark.parametrize("function", SETTINGS)
def test_the_template_passes_what_the_function_reads_and_nothing_else(function: str) -> None:
    settings = SETTINGS[function]
    given = template_variables(function)

    assert given <= settings.variables(), f"{function} is given variables it never reads"
    assert settings.required() <= given, f"{function} requires variables the template does not give"


def submit_environment(**changes: str) -> dict[str, str]:
    environment = {
        "JOBS_TABLE_NAME": "jobs",
        "EVENT_BUS_NAME": "bus",
        "ADMISSION_QUEUE_URL": "https://sqs/admission",
        "MAX_PARALLEL_JOBS": "2",
        "MUSICGPT_API_URL": "https://api.example/v1/",
        "MUSICGPT_API_KEY_SECRET_ARN": "arn:key",
        "WEBHOOK_SIGNING_SECRET_ARN": "arn:signing",
        "WEBHOOK_BASE_URL": "https://hooks.example",
        "SUBMIT_MODE": "audio_file",
        "PRESIGN_EXPIRY_SECONDS": "3600",
        "STATUS_LOOKUPS_PER_MINUTE": "20",
        "COPY_QUEUE_URL": "https://sqs/copy",
        "INPUT_BUCKET": "in",
    }
    return {name: value for name, value in (environment | changes).items() if value}


def test_values_are_typed_and_defaults_fill_the_knobs_the_template_leaves_out() -> None:
    settings = SubmitSettings.from_env(submit_environment())

    assert settings.api_url == "https://api.example/v1"
    assert settings.submit_mode is SubmitMode.AUDIO_FILE
    assert settings.max_parallel_jobs == 2
    assert settings.max_retries == 3


def test_every_problem_is_named_in_one_start_up_error() -> None:
    broken = submit_environment(JOBS_TABLE_NAME="", MAX_PARALLEL_JOBS="0", SUBMIT_MODE="carrier pigeon")

    with pytest.raises(SettingsError) as error:
        SubmitSettings.from_env(broken)

    message = str(error.value)
    assert "JOBS_TABLE_NAME is required" in message
    assert "MAX_PARALLEL_JOBS must be >= 1" in message
    assert "SUBMIT_MODE: 'carrier pigeon' is not a valid value (one of audio_url, audio_file)" in message


def test_webhook_settings_read_lists_and_flags() -> None:
    webhook = {
        "JOBS_TABLE_NAME": "jobs",
        "EVENT_BUS_NAME": "bus",
        "ADMISSION_QUEUE_URL": "https://sqs/admission",
        "MAX_PARALLEL_JOBS": "2",
        "WEBHOOK_SIGNING_SECRET_ARN": "arn:signing",
        "COPY_QUEUE_URL": "https://sqs/copy",
        "OUTPUT_BUCKET": "out",
        "OUTPUT_HOST_ALLOWLIST": "Lalals.s3.amazonaws.com, musicgpt.s3.amazonaws.com",
        "COPY_MAX_BYTES": "1048576",
        "MAX_COPY_ATTEMPTS": "3",
        "CONFIRM_WITH_STATUS_LOOKUP": "true",
    }
    settings = WebhookSettings.from_env(webhook)
    assert settings.confirm_every_callback is True
    assert settings.output_allowlist == ("lalals.s3.amazonaws.com", "musicgpt.s3.amazonaws.com")

    with pytest.raises(SettingsError, match="CONFIRM_WITH_STATUS_LOOKUP: 'maybe' is not a valid flag"):
        WebhookSettings.from_env(webhook | {"CONFIRM_WITH_STATUS_LOOKUP": "maybe"})
