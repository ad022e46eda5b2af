"""`lanes demo`: the story on a scratch repository, rendered as it happens.

The narrative is the command's result, so it goes to stdout; with --json, stdout holds only
the summary document. The story itself lives in lanes/demo.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from lanes.cli.output import JsonOpt, plain, print_json

if TYPE_CHECKING:
    from lanes.demo import DemoResult, Step


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the scratch directory and print its path.")
    ] = False,
    json_: JsonOpt = False,
) -> None:
    """Run the whole story on a scratch repository: parallel agents, a race, a refused
    rule-breaker, a bounce, integrate, verify, the ledger. Offline, in seconds.

    The scratch directory (in $TMPDIR) is removed at the end unless --keep. Exit 0 when the
    story went as expected, 1 when any step did not (each named in "problems").
    """
    from lanes import demo as demo_mod

    result = demo_mod.run((lambda step: None) if json_ else _render, keep=keep)
    if json_:
        print_json(summary(result))
    else:
        _epilogue(result)
    if not result.ok:
        from lanes.errors import exit_code

        raise typer.Exit(exit_code("demo-failed"))


def summary(result: DemoResult) -> dict[str, Any]:
    doc: dict[str, Any] = plain(result)
    doc["ok"] = result.ok
    return doc


def _render(step: Step) -> None:
    from rich.markup import escape

    from lanes.cli.output import console

    out = console()
    if step.kind == "section":
        out.print()
        out.rule(f"[bold]{escape(step.title)}[/]", align="left")
        if step.text:
            out.print(escape(step.text))
    elif step.kind == "note":
        out.print(f"[dim]{escape(step.text)}[/]")
    elif step.kind == "run":
        where = f"[dim]{escape(step.where)}[/] " if step.where else ""
        out.print(f"[bold cyan]{escape(step.actor):>8}[/] {where}[dim]$[/] {escape(step.command)}")
        colour = "green" if step.rc == 0 else "yellow" if step.expected else "red"
        first, *rest = step.text.splitlines() or [""]
        out.print(f"{'':>9}[{colour}]exit {step.rc}[/] {escape(first)}")
        for line in rest:
            out.print(f"{'':>16}{escape(line)}")
    elif step.kind == "table":
        from rich.table import Table

        tbl = Table(title=step.title, title_justify="left", title_style="dim", pad_edge=False)
        for i, col in enumerate(step.columns):  # the last column folds, the others never wrap
            last = i == len(step.columns) - 1
            tbl.add_column(col, overflow="fold", no_wrap=not last)
        for row in step.rows:
            tbl.add_row(*(escape(cell) for cell in row))
        out.print(tbl)
    elif step.kind == "lines":
        out.print(f"[dim]{escape(step.title)}[/]")
        for line in step.text.splitlines():
            out.print(f"  {escape(line)}")


def _epilogue(result: DemoResult) -> None:
    from rich.markup import escape

    from lanes.cli.output import console

    out = console()
    out.print()
    out.rule("[bold]Summary[/]", align="left")
    out.print(
        f"integrated {len(result.integrated)} lane(s), bounced {len(result.bounced)}, "
        f"refused {len(result.refused)} command(s); gate "
        + ("passed" if result.verify_ok else "[red]did not pass[/]")
        + f"; main at {result.head[:12]}, version {result.version}; {result.seconds} s"
    )
    for name in result.unavailable:
        out.print(f"[yellow]{escape(name)} is not available in this build: its step was skipped")
    for problem in result.problems:
        if problem.endswith("is not available in this build"):
            continue
        out.print(f"[red]unexpected:[/] {escape(problem)}")
    if result.kept:
        out.print(f"kept the scratch repository: {escape(result.directory)}/jpcite", soft_wrap=True)
    else:
        out.print(f"[dim]removed {escape(result.directory)}[/]")
