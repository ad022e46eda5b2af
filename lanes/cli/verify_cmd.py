"""`lanes verify [WAVE]`: the pre-deploy gate. Exit 0 when every check holds, else 4.

With --json, stdout holds the one checks document even when the gate fails (the exit code
says it failed); an error that stops the gate from running (bad configuration, an
unknown wave) prints the usual error document instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer

from lanes.cli.output import JsonOpt, plain, say, show_surfaces

if TYPE_CHECKING:
    from integrator.gate import GateReport


def register(app: typer.Typer) -> None:
    app.command("verify")(verify)


def verify(
    wave: Annotated[
        Optional[str],  # noqa: UP045
        typer.Argument(
            help="Check this wave (and record the result in its ledger); all waves if omitted."
        ),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """The pre-deploy gate: manifest, versions, deploy chain, migrations, the wave, main.

    Reads the committed tree of main. Exit 0 when every check holds, then prints the
    `gh workflow run` commands that deploy by direct dispatch; 4 when any check fails
    (each one named, with what to do); 2 for bad configuration or an unknown wave.
    """
    from integrator import gate
    from lanes.cli.context import config

    report = gate.verify(config(), wave)
    doc = plain(report)
    doc["failed"] = report.failed
    if json_:
        from lanes.cli.output import print_json

        print_json(doc)
    else:
        _human(report)
    if not report.ok:
        from lanes.errors import exit_code

        raise typer.Exit(exit_code("gate-failed"))


_MARKS = {
    "pass": "[green]pass[/]",
    "fail": "[bold red]FAIL[/]",
    "off": "[yellow]off[/]",
    "none": "[dim]none[/]",
}


def _human(report: GateReport) -> None:
    from rich.markup import escape
    from rich.table import Table

    from lanes.cli.output import console

    show_surfaces(report.surfaces)
    tbl = Table(title=f"pre-deploy gate on main {report.main[:12]}", title_justify="left")
    tbl.add_column("status")
    tbl.add_column("check")
    tbl.add_column("detail", overflow="fold")
    for check in report.checks:
        tbl.add_row(_MARKS[check.status], escape(check.name), escape(check.detail))
    console().print(tbl)
    unchecked = [c.name for c in report.checks if c.status in ("off", "none")]
    if unchecked:
        say(f"[yellow]not checked[/] (off or absent, see above): {escape(', '.join(unchecked))}")
    if not report.ok:
        say(f"[bold red]gate failed[/]: {escape(', '.join(report.failed))}")
        return
    say(
        "[green]gate passed[/]"
        + (": deploy by direct dispatch, in this order:" if report.next else "")
    )
    for warning in report.warnings:
        say(f"[yellow]warning:[/] {escape(warning)}")
    for command in report.next:
        print(command)
