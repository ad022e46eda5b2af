"""Rendering: one JSON document on stdout with --json, tables for people otherwise.

Messages and progress go to stderr; stdout holds results only.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

SCHEMA_VERSION = 1

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


def plain(obj: Any) -> Any:
    """Dataclasses and pydantic models to JSON-ready values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {k: plain(v) for k, v in dataclasses.asdict(obj).items()}
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json", by_alias=True)
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [plain(v) for v in obj]
    return obj


def emit(doc: dict[str, Any], as_json: bool, human: Callable[[], None]) -> None:
    if as_json:
        print_json(doc)
    else:
        human()


def print_json(doc: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps({"schema_version": SCHEMA_VERSION, **plain(doc)}) + "\n")
    sys.stdout.flush()


def say(message: str) -> None:
    """A message for people, on stderr."""
    err_console().print(message)


_consoles: dict[str, Any] = {}


def console() -> Any:
    if "out" not in _consoles:
        from rich.console import Console

        # Piped to a file or a pager, a table is not cut to 80 columns (COLUMNS still wins).
        wide = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 200
        _consoles["out"] = Console(highlight=False, width=wide)
    return _consoles["out"]


def err_console() -> Any:
    if "err" not in _consoles:
        from rich.console import Console

        # Not on a terminal, messages are not cut at 80 columns: a hint's shell command
        # broken across lines would run something else when pasted.
        wide = None if sys.stderr.isatty() or os.environ.get("COLUMNS") else 200
        _consoles["err"] = Console(
            stderr=True, highlight=False, width=wide, soft_wrap=not sys.stderr.isatty()
        )
    return _consoles["err"]


def table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    from rich.table import Table

    tbl = Table(title=title, title_justify="left")
    for col in columns:
        tbl.add_column(col)
    for row in rows:
        tbl.add_row(*row)
    console().print(tbl)


def ago(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def show_surfaces(rows: list[dict[str, object]]) -> None:
    """Which contended surfaces were used, and where each came from (written, discovered,
    switched off, absent, ambiguous): on stderr, for people."""
    from rich.markup import escape

    for row in rows:
        paths = ", ".join(str(p) for p in row["paths"]) or "-"  # type: ignore[attr-defined]
        say(
            f"[dim]{row['surface']}:[/] {row['status']} {escape(paths)} [dim]({escape(str(row['origin']))})[/]"
        )
        for bad in row.get("unreadable", []):  # type: ignore[attr-defined]
            say(
                f"[dim]  not a version file lanes can read: {escape(bad['file'])}: {escape(bad['why'])}[/]"
            )
