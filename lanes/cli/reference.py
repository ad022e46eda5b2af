"""docs/reference.md, generated from the `--help` of every command and subcommand.

`make docs` runs `python -m lanes.cli.reference > docs/reference.md`; tests/test_reference.py
fails when a command's help changed and the page was not regenerated. The width is fixed so
the page does not depend on the terminal it was generated in.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

WIDTH = 100

HEADER = """\
# Command reference

Generated from `lanes --help` by `make docs` (`python -m lanes.cli.reference`); do not edit
by hand. What the commands mean: [concepts](concepts.md); their exit codes:
[exit codes](exit-codes.md).
"""


def _walk(cmd: Any, ctx: Any, path: str) -> Iterator[tuple[str, Any, Any]]:
    """(command path, command, its context) for `cmd` and every command below it."""
    from typer._click import Context

    yield path, cmd, ctx
    for name, sub in getattr(cmd, "commands", {}).items():
        if getattr(sub, "hidden", False):
            continue
        sub_ctx = Context(sub, info_name=name, parent=ctx)
        yield from _walk(sub, sub_ctx, f"{path} {name}")


def _anchor(path: str) -> str:
    return path.replace(" ", "-")


def render() -> str:
    """The whole page, as `make docs` writes it."""
    import typer.main
    from typer._click import Context

    from lanes.cli import app

    root = typer.main.get_command(app)
    ctx = Context(root, info_name="lanes", terminal_width=WIDTH, max_content_width=WIDTH)
    found = list(_walk(root, ctx, "lanes"))
    toc = "\n".join(f"- [`{path}`](#{_anchor(path)})" for path, _, _ in found)
    sections = [
        f"## {path}\n\n```text\n{cmd.get_help(sub_ctx).rstrip()}\n```\n"
        for path, cmd, sub_ctx in found
    ]
    return HEADER + "\n" + toc + "\n\n" + "\n".join(sections)


def main() -> None:
    import sys

    sys.stdout.write(render())


if __name__ == "__main__":
    main()
