"""Print the checkov checks template.yaml skips (Metadata: Checkov: skip), comma-separated, for --skip-check.

Every skip must carry a reason; one without fails here, so it never reaches the command line.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cfn_tools import load_yaml

TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"


def skipped_checks(template: Path = TEMPLATE) -> list[str]:
    skips = load_yaml(template.read_text(encoding="utf-8"))["Metadata"]["Checkov"]["skip"]
    unexplained = [skip["id"] for skip in skips if not str(skip.get("comment", "")).strip()]
    if unexplained:
        sys.exit(f"checkov skips without a reason in template.yaml: {', '.join(unexplained)}")
    return [str(skip["id"]) for skip in skips]


if __name__ == "__main__":
    print(",".join(skipped_checks()))
