"""The MusicGPT webhook's documented fields (shared DESIGN.md), written down once for the tests that check them."""

WEBHOOK_FIELDS = (
    "success",
    "conversion_type",
    "task_id",
    "conversion_id",
    "audio_path",
    "no_noise",
    "no_noise_wav",
    "noise",
    "noise_wav",
    "message",
    "conversion_duration",
    "conversion_cost",
)
