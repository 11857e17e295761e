"""The layers the tree shows are the layers the imports keep: read from the source, so a stray import fails here."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "denoise_pipeline"
LAYERS = ("domain", "adapters", "workflows", "handlers")
FORBIDDEN = {
    "domain": {"adapters", "workflows", "handlers", "wiring", "settings", "clock"},  # nothing of ours outside domain
    "adapters": {"workflows", "handlers", "wiring", "settings"},
    "workflows": {"handlers", "wiring", "settings"},
}


def modules(layer: str) -> list[Path]:
    return sorted((PACKAGE / layer).glob("*.py"))


def our_imports(path: Path) -> set[str]:
    """Top-level parts of the package this module imports (`..adapters.job_store` → `adapters`)."""
    package_parts = path.relative_to(PACKAGE).parent.parts
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package_parts[: len(package_parts) - node.level + 1])
                target = [*base, *(node.module or "").split(".")] if node.module else base
                target = [part for part in target if part]
                if target:
                    found.add(target[0])
                else:  # `from .. import x`: each name is a module of the package
                    found.update(alias.name for alias in node.names)
            elif node.module and node.module.startswith("denoise_pipeline."):
                found.add(node.module.split(".")[1])
    return found


@pytest.mark.parametrize("layer", list(FORBIDDEN))
def test_each_layer_imports_only_what_it_may(layer: str) -> None:
    for path in modules(layer):
        assert not our_imports(path) & FORBIDDEN[layer], f"{path.name} imports {our_imports(path) & FORBIDDEN[layer]}"


@pytest.mark.parametrize("layer", ["domain", "workflows", "adapters"])
def test_no_http_answer_is_built_outside_the_handlers(layer: str) -> None:
    for path in modules(layer):
        text = path.read_text(encoding="utf-8")
        assert "event_handler" not in text, path.name
        assert not re.search(r"statusCode|Response\(|CallbackAnswer", text), path.name


def test_workflows_and_domain_know_no_status_codes() -> None:
    for path in [*modules("domain"), *modules("workflows")]:
        assert not re.search(r"status_code|HTTP \d{3}|\b(?:200|202|400|404|409|413|422|500)\b", path.read_text()), (
            path.name
        )


def test_handlers_are_thin() -> None:
    for path in modules("handlers"):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        assert lines <= 60, f"{path.name} has {lines} lines"


def test_every_module_says_what_it_owns() -> None:
    for path in PACKAGE.rglob("*.py"):
        assert ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))), f"{path} has no module docstring"


@pytest.mark.parametrize(
    ("handler", "absent"),
    [
        (
            "submit",
            {
                "requests",
                "denoise_pipeline.adapters.output_copier",
                "denoise_pipeline.workflows.copy",
                "denoise_pipeline.handlers.admission_worker",
                "aws_lambda_powertools.utilities.data_classes",
            },
        ),
        ("reconcile", {"requests", "denoise_pipeline.adapters.output_copier", "denoise_pipeline.workflows.copy"}),
        (
            "webhook",
            {
                "requests",
                "denoise_pipeline.adapters.musicgpt",
                "denoise_pipeline.adapters.output_copier",
                "denoise_pipeline.handlers.copy_worker",
                "aws_lambda_powertools.utilities.batch",
                "aws_lambda_powertools.event_handler",
                "aws_lambda_powertools.utilities.data_classes",
                "asyncio",
            },
        ),
    ],
)
def test_a_cold_start_loads_only_its_own_path(handler: str, absent: set[str]) -> None:
    """What a function never runs, or runs only behind its queue door (the webhook's copies, the submit function's
    admission queue), is not imported at cold start: each module costs init time on every new Lambda environment,
    and an upload or a callback should not pay for the other door."""
    code = f"import sys, denoise_pipeline.handlers.{handler}; print('\\n'.join(sys.modules))"
    loaded = set(
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()  # noqa: S603 - our interpreter, our code
    )
    assert f"denoise_pipeline.handlers.{handler}" in loaded
    assert not loaded & absent
