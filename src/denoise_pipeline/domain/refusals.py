"""Callbacks we will not act on, as exceptions: the webhook handler answers each with its own status code."""

from __future__ import annotations


class CallbackRefused(Exception):
    """A callback we will not act on; nothing was written or fetched."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownCallback(CallbackRefused):
    """Wrong token or unknown job: one refusal for both, so the API does not reveal which jobs exist."""

    def __init__(self) -> None:
        super().__init__("no such webhook")


class InvalidCallback(CallbackRefused):
    """The payload cannot be tied to a task, a field is beyond any sane size, or an output URL is refused."""


class OversizedCallback(CallbackRefused):
    """The body is larger than any callback we expect; it is refused before it is read."""


class ConflictingCallback(CallbackRefused):
    """The callback does not fit the job (another task id, or a job not waiting for a result)."""
