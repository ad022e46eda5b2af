"""`lanes integrate WAVE [--dry-run]`: the single serial integration pass."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from lanes.cli.output import JsonOpt, emit, say, table

if TYPE_CHECKING:
    from integrator.dry_run import DryRun
    from integrator.integrate import IntegrateResult


def register(app: typer.Typer) -> None:
    app.command("integrate")(integrate)


def integrate(
    wave: Annotated[str, typer.Argument(help="The wave whose submitted lanes to integrate.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan and change nothing.")
    ] = False,
    json_: JsonOpt = False,
) -> None:
    """Integrate the wave's submitted lanes into main, one at a time, in submission order.

    Exit 0 when every lane landed, 4 when some bounced (the others landed), 3 when another
    pass is running or main moved under this one (nothing changed: run it again), 2 when
    main itself is not fit to integrate onto (no main, its version files disagree).
    """
    from lanes.cli.context import config

    cfg = config()
    if dry_run:
        from integrator.dry_run import predict

        report = predict(cfg, wave)
        emit(report.to_json(), json_, lambda: _show_plan(report))
        return
    from integrator.integrate import integrate as run_pass

    with _progress() as progress:
        result = run_pass(cfg, wave, progress)
    emit(result.to_json(), json_, lambda: _show_result(result))
    if result.bounced:
        from lanes.errors import exit_code

        raise typer.Exit(exit_code("lane-bounced"))


@contextmanager
def _progress() -> Iterator[Callable[[str, str], None] | None]:
    """What the pass is doing, on standard error when it is a terminal (never on stdout):
    lane i of N on one line that keeps changing, the tests and the bisection as lines."""
    import sys

    if not sys.stderr.isatty():
        yield None
        return
    from rich.markup import escape

    from lanes.cli.output import err_console

    console = err_console()
    with console.status("integrating ...") as status:

        def show(kind: str, text: str) -> None:
            if kind == "lane":
                status.update(escape(text))
            else:
                console.print(f"[dim]{escape(text)}[/]")

        yield show


def _show_result(result: IntegrateResult) -> None:
    from rich.markup import escape

    rows = [
        [
            ld.lane,
            "[green]integrated[/]",
            escape(
                f"{len(ld.commits)} commit(s)"
                + (f", manifest +{len(ld.entries)}" if ld.entries else "")
                + (f", {ld.bump} bump" if ld.bump else "")
                + (f", deploy {ld.ops} op(s)" if ld.ops else "")
            ),
        ]
        for ld in result.landings
    ]
    rows += [
        [b.lane, f"[red]bounced: {escape(b.reason)}[/]", escape(_bounce_detail(b.files, b.message))]
        for b in result.bounced
    ]
    rows += [
        [lane, "[green]integrated[/] (earlier, interrupted pass)", ""] for lane in result.reconciled
    ]
    if rows:
        table(f"integrate {result.wave}", ["lane", "result", "detail"], rows)
    else:
        say(f"wave {result.wave}: no submitted lanes to integrate")
    if result.head != result.old_head:
        say(f"main: {result.old_head[:12]} -> {result.head[:12]}")
    else:
        say(f"main unchanged at {result.head[:12]}")
    if result.tests:
        failed = sum(1 for run in result.tests if not run.ok)
        seconds = sum(run.seconds for run in result.tests)
        say(
            f"tests: {len(result.tests)} run(s) of test_command ({failed} failed), "
            f"{seconds:.1f} s in all"
        )
    if result.flaky:
        say(
            "[yellow]flaky:[/] "
            + escape(", ".join(result.flaky))
            + " failed in a stack and passed alone: see the bounce"
        )
    if result.version_bump:
        say(f"version: {result.version_bump}")
    elif result.version:
        say(f"version: {result.version} (unchanged)")
    if result.checkout_note:
        say(f"[yellow]checkout:[/] {escape(result.checkout_note)}")
    if result.bounced:
        say(
            "[red]bounced lanes[/] go back to their agents: fix the branch (rebase on main) or "
            "the fragment, then `lanes submit` again"
        )


def _show_plan(report: DryRun) -> None:
    from rich.markup import escape

    rows = []
    for i, p in enumerate(report.lanes, start=1):
        if p.outcome == "land":
            asks = [f"+{e}" for e in p.entries] + ([f"{p.bump} bump"] if p.bump else []) + p.ops
            rows.append([str(i), p.lane, "[green]land[/]", str(p.commits), escape(", ".join(asks))])
        else:
            detail = f"{p.reason}: {_bounce_detail(p.files, p.message)}"
            rows.append([str(i), p.lane, "[red]bounce[/]", str(p.commits), escape(detail)])
    if rows:
        table(
            f"dry run: integrate {report.wave} onto {report.head[:12]}",
            ["#", "lane", "predicted", "commits", "asks / why"],
            rows,
        )
    else:
        say(f"wave {report.wave}: no submitted lanes to integrate")
    if report.manifest_added:
        say("manifest would gain: " + ", ".join(report.manifest_added))
    if report.version_bump:
        say(f"version would go: {report.version_bump}")
    if report.deploy_diff:
        print(report.deploy_diff, end="")
    if report.batches:
        at_once = f", {report.test_jobs} at a time" if report.test_jobs > 1 else ""
        say(
            f"tests: test_command would run on {len(report.batches)} stack(s) of up to "
            f"{report.batch} lane(s){at_once}, if every one passes:"
        )
        for i, lanes in enumerate(report.batches, start=1):
            say(f"  stack {i}: " + escape(", ".join(lanes)))
    say(f"tests: {report.tests}; nothing was changed")


def _bounce_detail(files: list[str], message: str) -> str:
    first = message.splitlines()[0] if message else ""
    return first + (
        f" [{', '.join(files)}]" if files and not first.endswith(", ".join(files)) else ""
    )
