"""The local provider's options are written once: the dataclass, the environment, the flags and the README agree."""

from __future__ import annotations

import argparse
import types
from pathlib import Path
from typing import Any, get_args, get_origin

import pytest
from hypothesis import given
from hypothesis import strategies as st

from local.provider.__main__ import main
from local.provider.config import (
    BEHAVIOUR_SUMMARY,
    Behaviour,
    FlakyStep,
    OptionSpec,
    ProviderConfig,
    add_arguments,
    cli_flag,
    env_var,
    option_fields,
    options_markdown,
    show_default,
)

README = Path(__file__).resolve().parents[2] / "local" / "provider" / "README.md"
SPECS = list(option_fields())


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser()
    add_arguments(result)
    return result


def non_default(spec: OptionSpec) -> Any:
    """A value of the field's type that differs from its default."""
    tp = spec.type
    if get_origin(tp) is types.UnionType:
        (tp,) = (arg for arg in get_args(tp) if arg is not type(None))
    samples: dict[Any, Any] = {
        str: f"text-{spec.name}",
        int: 7,
        float: 2.5,
        bool: not spec.default,
        Path: Path("/tmp/provider out"),
        frozenset[Behaviour]: frozenset({Behaviour.PROGRESS, Behaviour.MP3_ONLY}),
        tuple[FlakyStep, ...]: (FlakyStep(402), FlakyStep(429, 3), FlakyStep()),
    }
    value = samples[tp]
    assert value != spec.default, spec.name
    return value


def test_every_field_has_help_an_environment_variable_and_a_flag() -> None:
    names = [spec.name for spec in SPECS]
    assert len(names) == len(set(names))
    actions = {action.dest: action for action in parser()._actions if action.dest != "help"}
    assert set(actions) == set(names)
    for spec in SPECS:
        assert spec.help.strip(), spec.name
        assert env_var(spec) == "LOCAL_MUSICGPT_" + spec.name.upper()
        assert cli_flag(spec) == "--" + spec.name.replace("_", "-")
        assert cli_flag(spec) in actions[spec.name].option_strings
        assert env_var(spec) in (actions[spec.name].help or "")


def test_help_lists_every_option(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "10000")  # no line wrapping in the help text
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for spec in SPECS:
        assert cli_flag(spec) in text
        assert env_var(spec) in text
        assert " ".join(spec.help.split()) in text
    for behaviour in Behaviour:
        assert f"  {behaviour.value:<12} {BEHAVIOUR_SUMMARY[behaviour]}\n" in text


def test_environment_round_trip() -> None:
    expected = {spec.name: non_default(spec) for spec in SPECS}
    environ = {env_var(spec): show_default(expected[spec.name]) for spec in SPECS}
    assert ProviderConfig.from_env(environ) == ProviderConfig(**expected)


def test_command_line_round_trip() -> None:
    expected = {spec.name: non_default(spec) for spec in SPECS}
    argv: list[str] = []
    for spec in SPECS:
        value = expected[spec.name]
        if spec.type is bool:
            argv.append(cli_flag(spec) if value else "--no-" + cli_flag(spec)[2:])
        else:
            argv += [cli_flag(spec), show_default(value)]
    assert ProviderConfig.from_env({}, **vars(parser().parse_args(argv))) == ProviderConfig(**expected)


def test_defaults_are_kept_and_unset_means_default() -> None:
    config = ProviderConfig.from_env({env_var(spec): "" for spec in SPECS}, **vars(parser().parse_args([])))
    assert config == ProviderConfig()
    kept = (config.api_key, config.host, config.port, config.max_parallel, config.workers, config.retry_after)
    assert kept == ("local-musicgpt-key", "127.0.0.1", 0, 2, None, None)
    assert (config.deliver_webhooks, config.min_job_seconds, config.log_requests) == (True, 0.0, False)
    assert config.behaviours == {Behaviour.DOCUMENTED}


def test_flags_win_over_the_environment_and_aliases_work() -> None:
    environ = {"LOCAL_MUSICGPT_MAX_PARALLEL": "5", "LOCAL_MUSICGPT_BEHAVIOURS": "gzip", "LOCAL_MUSICGPT_ETA": "3"}
    args = parser().parse_args(["--max-parallel", "9", "--no-webhooks", "-v", "--behaviour", " Progress , HTTPS"])
    config = ProviderConfig.from_env(environ, **vars(args))
    assert (config.max_parallel, config.eta, config.deliver_webhooks, config.log_requests) == (9, 3, False, True)
    assert config.behaviours == {Behaviour.PROGRESS, Behaviour.HTTPS}
    assert ProviderConfig.from_env({"LOCAL_MUSICGPT_DELIVER_WEBHOOKS": "off"}).deliver_webhooks is False


def test_unknown_behaviours_are_refused_with_the_valid_names(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="LOCAL_MUSICGPT_BEHAVIOURS='progress,bogus'") as info:
        ProviderConfig.from_env({"LOCAL_MUSICGPT_BEHAVIOURS": "progress,bogus"})
    for behaviour in Behaviour:
        assert behaviour.value in str(info.value)
    with pytest.raises(SystemExit) as exit_info:
        main(["--behaviour", "early,sometimes"])
    assert exit_info.value.code == 2
    assert "unknown behaviour 'sometimes'; valid behaviours: documented, progress" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"LOCAL_MUSICGPT_BEHAVIOURS": "form,multipart"}, "exclusive"),
        ({"LOCAL_MUSICGPT_DELIVER_WEBHOOKS": "maybe"}, "LOCAL_MUSICGPT_DELIVER_WEBHOOKS='maybe'"),
        ({"LOCAL_MUSICGPT_PORT": "eighty"}, "LOCAL_MUSICGPT_PORT='eighty'"),
        ({"LOCAL_MUSICGPT_FLAKY_SCRIPT": "503,302"}, "bad flaky_script item '302'"),
        ({"LOCAL_MUSICGPT_FLAKY_SCRIPT": "429:soon"}, "bad flaky_script item '429:soon'"),
    ],
)
def test_bad_values_name_what_is_wrong(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ProviderConfig.from_env(environ)


@given(st.integers(400, 599), st.none() | st.integers(0, 10**6))
def test_flaky_steps_round_trip(status: int, retry_after: int | None) -> None:
    step = FlakyStep(status, retry_after)
    assert FlakyStep.parse(str(step)) == step
    assert FlakyStep.parse(" OK ") == FlakyStep()


def test_readme_options_table_is_generated_from_the_dataclass() -> None:
    text = README.read_text(encoding="utf-8")
    assert options_markdown() in text, (
        "regenerate: python -c 'import local.provider.config as c; print(c.options_markdown())'"
    )
    for behaviour in Behaviour:
        assert f"### `{behaviour.value}`" in text
    assert set(BEHAVIOUR_SUMMARY) == set(Behaviour)
