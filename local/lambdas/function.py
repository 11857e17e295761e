"""A function's pool of execution environments: warm reuse, cold starts on demand, a cap on concurrency."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .environment import Credentials, ExecutionEnvironment, FunctionLog, FunctionSpec, InvocationResult
from .runtime import Runtime


class LocalFunction:
    """Invokes one function the way Lambda's frontend does: on an idle warm environment when there is one (the
    most recently used first, so the others can go cold), else on a new environment.

    At `max_environments` busy environments Lambda would throttle (TooManyRequestsException); here `invoke` blocks
    until one is free instead, because the callers (event source pollers, the scheduler) cap their own concurrency
    and would retry a throttle anyway. All environments log into `log_dir/<FunctionName>.log`.
    """

    def __init__(
        self,
        spec: FunctionSpec,
        runtime: Runtime,
        *,
        credentials: Credentials,
        extra_environment: Mapping[str, str],
        log_dir: Path,
        max_environments: int,
    ) -> None:
        if max_environments < 1:
            raise ValueError("max_environments must be at least 1")
        self.spec = spec
        self.runtime = runtime
        self.credentials = credentials
        self.extra_environment = dict(extra_environment)
        self.max_environments = max_environments
        self.log = FunctionLog(log_dir / f"{spec.name}.log")
        self._environments: list[ExecutionEnvironment] = []
        self._idle: list[ExecutionEnvironment] = []  # least recently used first
        self._cond = threading.Condition()
        self._closed = False
        self._invocations = self._errors = self._cold_starts = 0

    @property
    def invocations(self) -> int:
        with self._cond:
            return self._invocations

    @property
    def errors(self) -> int:
        with self._cond:
            return self._errors

    @property
    def cold_starts(self) -> int:
        with self._cond:
            return self._cold_starts

    def invoke(self, event: Any) -> InvocationResult:
        environment = self._acquire()
        try:
            result = environment.invoke(event)
        finally:
            self._release(environment)
        with self._cond:
            self._invocations += 1
            self._errors += not result.ok
            self._cold_starts += result.init_duration_ms is not None
        return result

    def close(self) -> None:
        """Kills every environment's process group; invocations still waiting for an environment raise."""
        with self._cond:
            self._closed = True
            environments = list(self._environments)
            self._cond.notify_all()
        for environment in environments:
            environment.close()
        self.log.close()

    def __enter__(self) -> LocalFunction:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _acquire(self) -> ExecutionEnvironment:
        with self._cond:
            while True:
                if self._closed:
                    raise RuntimeError(f"{self.spec.name} is closed")
                if self._idle:
                    warm = [environment for environment in self._idle if environment.warm]
                    environment = warm[-1] if warm else self._idle[-1]
                    self._idle.remove(environment)
                    return environment
                if len(self._environments) < self.max_environments:
                    environment = ExecutionEnvironment(
                        self.spec,
                        self.runtime,
                        credentials=self.credentials,
                        extra_environment=self.extra_environment,
                        log=self.log,
                    )
                    self._environments.append(environment)
                    return environment
                self._cond.wait()

    def _release(self, environment: ExecutionEnvironment) -> None:
        with self._cond:
            if not self._closed:
                self._idle.append(environment)
                self._cond.notify()
