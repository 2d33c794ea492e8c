"""The dependency rules of docs/architecture.md, checked on every run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def test_import_contracts_are_kept():
    result = subprocess.run([str(LINT_IMPORTS)], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout


def _importers_of(module: str) -> set[str]:
    pattern = re.compile(rf"^\s*(from|import)\s+{re.escape(module)}\b", re.MULTILINE)
    found = set()
    for package in ("core", "supply", "models", "library", "devicekeys", "provisioning", "transport", "appliance",
                    "central", "firmware"):
        for path in (ROOT / package).rglob("*.py"):
            if pattern.search(path.read_text()):
                found.add(str(path.relative_to(ROOT)))
    return found


def test_paho_is_imported_in_one_module():
    assert _importers_of("paho") == {"transport/mqtt.py"}


def test_topics_are_built_only_in_core_topics():
    offenders = [
        str(p.relative_to(ROOT))
        for package in ("appliance", "central")
        for p in (ROOT / package).rglob("*.py")
        if re.search(r"['\"]rfr/v1/", p.read_text())
    ]
    assert offenders == []
