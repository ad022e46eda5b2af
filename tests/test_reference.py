"""docs/reference.md is what `--help` says today: regenerate it (make docs) when a command changes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer.main

from lanes.cli import app
from lanes.cli.reference import render

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "reference.md"


def _paths(cmd: object, path: str) -> list[str]:
    found = [path]
    for name, sub in getattr(cmd, "commands", {}).items():
        found += _paths(sub, f"{path} {name}")
    return found


def test_committed_reference_is_current() -> None:
    assert REFERENCE.read_text(encoding="utf-8") == render(), (
        "docs/reference.md is stale: run `make docs` and commit it"
    )


def test_every_command_has_a_section() -> None:
    text = render()
    paths = _paths(typer.main.get_command(app), "lanes")
    assert len(paths) > 10
    for path in paths:
        assert f"\n## {path}\n" in text, path
        assert f"Usage: {path} " in text, path


def test_page_does_not_depend_on_the_terminal() -> None:
    """The page is the same under a narrow terminal, run as `make docs` runs it."""
    proc = subprocess.run(
        [sys.executable, "-m", "lanes.cli.reference"],
        capture_output=True,
        text=True,
        check=True,
        env={"COLUMNS": "40", "PATH": "/usr/bin:/bin"},
        cwd=ROOT,
    )
    assert proc.stdout == render()
