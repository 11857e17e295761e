"""Secrets Manager reads, cached through Powertools Parameters (the API key, the webhook signing secret)."""

from __future__ import annotations

import time

from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
from botocore.config import Config


class SecretUnavailable(RuntimeError):
    """A secret could not be read (deleted, access denied, Secrets Manager down); names the secret, never its value."""

    def __init__(self, secret_id: str, cause: Exception) -> None:
        super().__init__(f"cannot read secret {secret_id}: {cause}")
        self.secret_id = secret_id


class SecretReader:
    """Cached reads; the previous version (AWSPREVIOUS) is read by its own provider because Powertools' cache key
    ignores the version stage. It keeps webhook tokens of in-flight jobs valid across a rotation."""

    def __init__(self, max_age: int, config: Config) -> None:
        self._max_age = max_age
        self._current = SecretsProvider(boto_config=config)
        self._previous = SecretsProvider(boto_config=config)
        self._no_previous_until: dict[str, float] = {}

    def current(self, secret_id: str) -> str:
        try:
            return str(self._current.get(secret_id, max_age=self._max_age))
        except GetParameterError as exc:
            raise SecretUnavailable(secret_id, exc) from exc

    def current_and_previous(self, secret_id: str) -> list[str]:
        secrets = [self.current(secret_id)]
        if self._no_previous_until.get(secret_id, 0.0) > time.monotonic():
            return secrets
        try:
            secrets.append(str(self._previous.get(secret_id, max_age=self._max_age, VersionStage="AWSPREVIOUS")))
        except GetParameterError:  # never rotated: no previous version; remember that as long as a value is cached
            self._no_previous_until[secret_id] = time.monotonic() + self._max_age
        return secrets
