"""Route each request to its moto service without listing moto's package directory every time.

moto's HTTP server finds a request's service (`DomainDispatcherApplication.get_backend_for_host`) by listing its
own package directory (about 150 `isdir` calls) and then matching the host against every service's URL patterns,
for every request and under one process-wide lock. The answer depends on the host alone and never changes while
the server runs, so it is remembered per host. Measured in a 200-file burst: the dispatcher was about an eighth of
the stack process's samples (py-spy).
"""

from __future__ import annotations

import functools
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication

_ORIGINAL = DomainDispatcherApplication.get_backend_for_host
_KNOWN: dict[str | None, Any] = {}


@functools.wraps(_ORIGINAL)
def _remembered(self: DomainDispatcherApplication, host: str | None) -> Any:
    if host not in _KNOWN:  # two threads may both look a new host up; they find the same answer
        _KNOWN[host] = _ORIGINAL(self, host)
    return _KNOWN[host]


def remember_backends_per_host() -> None:
    """Process-wide and idempotent: moto's dispatcher looks a host's service up once."""
    DomainDispatcherApplication.get_backend_for_host = _remembered  # type: ignore[method-assign]
