"""The rules of the house that a test can check: dependencies point inward."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imported_top_modules(directory: Path) -> dict[str, set[str]]:
    """Top-level module names each file under ``directory`` imports (absolute imports only;
    a relative import stays inside the package)."""
    found: dict[str, set[str]] = {}
    for path in sorted(directory.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(directory))] = names
    return found


def violations(directory: Path, allowed: set[str]) -> dict[str, set[str]]:
    return {
        path: bad
        for path, names in imported_top_modules(directory).items()
        if (bad := {n for n in names if n not in allowed and n not in sys.stdlib_module_names})
    }


def test_domain_imports_only_the_standard_library_and_numpy() -> None:
    assert imported_top_modules(ROOT / "domain"), "the scan found no domain modules"
    assert violations(ROOT / "domain", {"domain", "numpy"}) == {}


def test_orchestrators_import_nothing_that_does_io() -> None:
    # The durable SDK is allowed; vendor clients, adapters and activities are not.
    assert violations(ROOT / "orchestrators", {"orchestrators", "domain", "azure"}) == {}
    for path in (ROOT / "orchestrators").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for forbidden in ("azure.cosmos", "azure.eventhub", "azure.storage", "azure.identity"):
            assert forbidden not in text, f"{path.name} imports {forbidden}"


def test_the_scan_catches_a_forbidden_import(tmp_path: Path) -> None:
    (tmp_path / "leaky.py").write_text(
        "import numpy\nimport json\nfrom azure.cosmos import CosmosClient\nimport adapters.x\n"
        "from . import sibling\n"
    )
    assert violations(tmp_path, {"domain", "numpy"}) == {"leaky.py": {"azure", "adapters"}}
