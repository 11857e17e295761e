"""The local provider's options, written once.

Every ``ProviderConfig`` field is an option. Its help text is the field's ``metadata["help"]``; everything else is
derived, so the dataclass, the environment, the command line and the README cannot drift apart:

* environment variable ``LOCAL_MUSICGPT_<FIELD_NAME_UPPER>`` (an empty value counts as unset);
* command-line flag ``--field-name`` (booleans also get ``--no-field-name``), plus the field's ``metadata["aliases"]``;
* text converter from the field's type: ``str``, ``int``, ``float``, ``Path``, ``bool`` (1/true/yes/on,
  0/false/no/off), ``X | None`` as ``X``, ``tuple[X, ...]`` and ``frozenset[X]`` as comma-separated ``X``, an enum
  by value, and any class with a ``parse(text)`` class method;
* the README's options table: ``options_markdown()``.

Precedence: keyword arguments / command-line flags, then the environment, then the field's default.
"""

from __future__ import annotations

import argparse
import os
import re
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import Field, dataclass, field, fields
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any, Final, Union, get_args, get_origin, get_type_hints

from local.provider.engine import DEFAULT_ATTENUATION_LIMIT_DB

ENV_PREFIX: Final[str] = "LOCAL_MUSICGPT_"
_TRUE: Final[frozenset[str]] = frozenset({"1", "true", "yes", "on"})
_FALSE: Final[frozenset[str]] = frozenset({"0", "false", "no", "off"})
_FLAKY_ITEM: Final[re.Pattern[str]] = re.compile(r"([45][0-9][0-9])(?::([0-9]+))?")


class Behaviour(StrEnum):
    """Ways the provider departs from its documented sample, as real MusicGPT integrations have seen it do.

    ``documented`` is none of them; the others combine freely, except ``form`` with ``multipart``.
    """

    DOCUMENTED = "documented"
    PROGRESS = "progress"
    DUPLICATE = "duplicate"
    EARLY = "early"
    FORM = "form"
    MULTIPART = "multipart"
    STRINGS = "strings"
    MP3_ONLY = "mp3-only"
    STATUS_ONLY = "status-only"
    GZIP = "gzip"
    FLAKY = "flaky"
    HTTPS = "https"

    @classmethod
    def _missing_(cls, value: object) -> Behaviour:
        """Accept any case and surrounding blanks; otherwise fail with the list of valid names."""
        for member in cls:
            if isinstance(value, str) and member.value == value.strip().lower():
                return member
        raise ValueError(f"unknown behaviour {value!r}; valid behaviours: {', '.join(m.value for m in cls)}")


BEHAVIOUR_SUMMARY: Final[dict[Behaviour, str]] = {
    Behaviour.DOCUMENTED: "the documented JSON webhook and byId answer, nothing else",
    Behaviour.PROGRESS: "two non-final callbacks (IN_QUEUE, IN_PROGRESS; no URLs) before the final one",
    Behaviour.DUPLICATE: "the final callback twice at once, then once more after both were answered",
    Behaviour.EARLY: "POST /denoise answers only after the job's callbacks were delivered (at most 20 s)",
    Behaviour.FORM: "callbacks as application/x-www-form-urlencoded",
    Behaviour.MULTIPART: "callbacks as multipart/form-data fields",
    Behaviour.STRINGS: 'numbers and booleans as strings in callbacks and byId; conversion_type "DENOISING"',
    Behaviour.MP3_ONLY: "only the mp3 outputs (no_noise, noise); wav files not served",
    Behaviour.STATUS_ONLY: "status-shaped callbacks and byId (conversion_path...), no success, no noise outputs",
    Behaviour.GZIP: "output files served with Content-Encoding: gzip",
    Behaviour.FLAKY: "POST /denoise follows flaky_script; every other byId call answers 503",
    Behaviour.HTTPS: "outputs served over TLS by a second listener, certificate from a throwaway local CA",
}
"""One line per behaviour, for ``--help``; the README describes each in full."""


@dataclass(frozen=True, slots=True)
class FlakyStep:
    """One item of ``flaky_script``: ``ok`` (serve normally), ``STATUS``, or ``STATUS:SECONDS`` (with Retry-After)."""

    status: int | None = None
    """None = ``ok``; otherwise an HTTP status, 400..599."""
    retry_after: int | None = None

    @classmethod
    def parse(cls, text: str) -> FlakyStep:
        item = text.strip().lower()
        if item == "ok":
            return cls()
        match = _FLAKY_ITEM.fullmatch(item)
        if match is None:
            raise ValueError(f"bad flaky_script item {text!r}: expected ok, STATUS (400-599) or STATUS:SECONDS")
        status, after = match.groups()
        return cls(int(status), None if after is None else int(after))

    def __str__(self) -> str:
        if self.status is None:
            return "ok"
        return str(self.status) if self.retry_after is None else f"{self.status}:{self.retry_after}"


def option(default: Any, help: str, *aliases: str) -> Any:
    """A ``ProviderConfig`` field: its default, its help text, and extra command-line spellings."""
    return field(default=default, metadata={"help": help, "aliases": aliases})


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """Options of the local provider (see the module docstring for how each becomes a variable and a flag)."""

    api_key: str = option("local-musicgpt-key", "the exact Authorization header value accepted")
    host: str = option("127.0.0.1", "bind address of both listeners (keep it on loopback)")
    port: int = option(0, "API port; 0 = any free port (read the real one from the first line printed)")
    tls_port: int = option(0, "port of the https output listener (behaviour https); 0 = any free port")
    max_parallel: int = option(2, "jobs in flight at once (MusicGPT plans: 2 / 5 / 10); one more is answered 429")
    workers: int | None = option(
        None, "denoising threads; unset = min(max_parallel, CPUs); jobs beyond them wait IN_QUEUE"
    )
    attenuation_limit_db: float = option(
        DEFAULT_ATTENUATION_LIMIT_DB, "DeepFilterNet attenuation limit in dB, > 0 (100 = no limit)"
    )
    eta: int = option(10, "eta answered on submission and in progress callbacks, in seconds")
    credit_estimate: float = option(0.48, "credit_estimate answered on submission, and every job's conversion_cost")
    output_dir: Path | None = option(
        None, "where outputs and transient inputs live; unset = a temporary directory removed on stop"
    )
    deliver_webhooks: bool = option(
        True, "false = process jobs but never send callbacks (lost-webhook tests: use byId)", "--webhooks"
    )
    retry_after: int | None = option(
        None, "Retry-After seconds on the 429 answered at max_parallel (MusicGPT documents none); unset = no header"
    )
    min_job_seconds: float = option(0.0, "a job lasts at least this long before its final callback (slow provider)")
    fetch_timeout: float = option(30.0, "read timeout in seconds for fetching audio_url (connect timeout: 5 s)")
    max_input_bytes: int = option(512 * 1024 * 1024, "largest upload or audio_url body accepted, in bytes")
    webhook_timeout: float = option(10.0, "read timeout in seconds for each callback POST")
    webhook_attempts: int = option(
        4, "attempts per callback on connection errors, timeouts and 5xx answers (4xx is final)"
    )
    webhook_backoff: float = option(0.25, "seconds before the second callback attempt, doubling after each")
    log_requests: bool = option(False, "log every request and job event at INFO", "-v", "--verbose")
    behaviours: frozenset[Behaviour] = option(
        frozenset({Behaviour.DOCUMENTED}),
        "comma-separated behaviours, combinable: " + ", ".join(b.value for b in Behaviour),
        "--behaviour",
    )
    flaky_script: tuple[FlakyStep, ...] = option(
        (FlakyStep(503), FlakyStep(429), FlakyStep(429, 2), FlakyStep(500), FlakyStep()),
        "behaviour flaky: answers to successive POST /denoise, consumed in order, then ok forever; "
        "items ok, STATUS (400-599) or STATUS:SECONDS (with Retry-After: SECONDS)",
    )

    def __post_init__(self) -> None:
        if {Behaviour.FORM, Behaviour.MULTIPART} <= self.behaviours:
            raise ValueError("behaviours form and multipart are exclusive: a callback has one encoding")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ProviderConfig:
        """Defaults, then ``LOCAL_MUSICGPT_*`` variables (``os.environ`` by default), then non-None ``overrides``.

        A value that does not convert raises ``ValueError`` naming the variable.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for spec in option_fields():
            raw = env.get(env_var(spec))
            if raw:
                try:
                    values[spec.name] = converter(spec.type)(raw)
                except ValueError as exc:
                    raise ValueError(f"{env_var(spec)}={raw!r}: {exc}") from None
        values.update({name: value for name, value in overrides.items() if value is not None})
        return cls(**values)


@dataclass(frozen=True, slots=True)
class OptionSpec:
    """A ``ProviderConfig`` field with its type resolved (the dataclass only has the annotation's text)."""

    name: str
    type: Any
    default: Any
    help: str
    aliases: tuple[str, ...]


def option_fields() -> Iterator[OptionSpec]:
    hints = get_type_hints(ProviderConfig)
    spec: Field[Any]
    for spec in fields(ProviderConfig):
        yield OptionSpec(spec.name, hints[spec.name], spec.default, spec.metadata["help"], spec.metadata["aliases"])


def env_var(spec: OptionSpec) -> str:
    return ENV_PREFIX + spec.name.upper()


def cli_flag(spec: OptionSpec) -> str:
    return "--" + spec.name.replace("_", "-")


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE | _FALSE:
        return value in _TRUE
    raise ValueError(f"expected one of {', '.join(sorted(_TRUE | _FALSE))}, not {text!r}")


def converter(tp: Any) -> Callable[[str], Any]:
    """The text -> value converter for a field type (see the module docstring for the supported types)."""
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        (inner,) = (arg for arg in args if arg is not type(None))
        return converter(inner)
    if origin in (tuple, frozenset):
        item = converter(args[0])
        return lambda text: origin(item(part.strip()) for part in text.split(",") if part.strip())
    if tp is bool:
        return parse_bool
    parse: Callable[[str], Any] | None = getattr(tp, "parse", None)
    if isinstance(tp, type) and callable(parse):
        return parse
    if tp in (str, int, float, Path) or (isinstance(tp, type) and issubclass(tp, Enum)):
        construct: Callable[[str], Any] = tp
        return construct
    raise TypeError(f"no converter for options of type {tp!r}")


def _argparse_type(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """argparse hides a converter's ``ValueError`` text behind "invalid value"; keep it."""

    def parse(text: str) -> Any:
        try:
            return convert(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def show_default(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, frozenset):
        return ",".join(sorted(str(item) for item in value))
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    return str(value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per option. Defaults are suppressed: ``vars(parser.parse_args())`` holds only what was given."""
    for spec in option_fields():
        flags = [cli_flag(spec), *spec.aliases]
        text = f"{spec.help} [env {env_var(spec)}; default {show_default(spec.default)}]".replace("%", "%%")
        if spec.type is bool:
            parser.add_argument(
                *flags, dest=spec.name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=text
            )
        else:
            parser.add_argument(
                *flags,
                dest=spec.name,
                type=_argparse_type(converter(spec.type)),
                default=argparse.SUPPRESS,
                metavar=spec.name.upper(),
                help=text,
            )


def options_markdown() -> str:
    """The README's options table."""
    rows = [
        "| option | environment variable | flag | default | meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for spec in option_fields():
        flags = [cli_flag(spec), *spec.aliases]
        if spec.type is bool:
            flags += [f"--no-{flag[2:]}" for flag in flags if flag.startswith("--")]
        shown = ", ".join(f"`{flag}`" for flag in flags)
        default = show_default(spec.default)
        rows.append(f"| `{spec.name}` | `{env_var(spec)}` | {shown} | `{default}` | {spec.help.replace('|', '/')} |")
    return "\n".join(rows) + "\n"
