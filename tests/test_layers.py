"""The house's floors (docs/decisions.md): lanes/surfaces/ at the bottom, lanes/ above it,
integrator/ on top, the CLI beside. Checked on the imports themselves, read with ast."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def _ours(names: set[str]) -> set[str]:
    return {n for n in names if n.split(".")[0] in ("lanes", "integrator")}


def test_nothing_in_lanes_outside_the_cli_imports_the_integrator() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(n for n in _imports(path) if n.startswith("integrator"))
        for path in (ROOT / "lanes").rglob("*.py")
        if "cli" not in path.relative_to(ROOT / "lanes").parts
    }
    assert {p: names for p, names in offenders.items() if names} == {}


def test_the_surfaces_layer_imports_only_itself_and_the_errors() -> None:
    allowed = ("lanes.surfaces", "lanes.errors", "lanes.names")
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            n for n in _ours(_imports(path)) if not n.startswith(allowed) and n != "lanes"
        )
        for path in (ROOT / "lanes" / "surfaces").glob("*.py")
    }
    assert {p: names for p, names in offenders.items() if names} == {}
