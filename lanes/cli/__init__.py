"""The `lanes` command line: parse, make one core call, render. Nothing else lives here.

Each command module imports the core lazily, inside the command, so `lanes --help` and
the cheap commands agents call hundreds of times do not pay for what they do not use.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from lanes.errors import exit_code

app = typer.Typer(
    name="lanes",
    help="Many agents, one repository: claim lanes, hand over fragments, integrate serially, "
    "gate the deploy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", help="Print the version of lanes and exit.")
    ] = False,
    json_: Annotated[
        bool, typer.Option("--json", help="With --version: print one JSON document.")
    ] = False,
) -> None:
    if version:
        _print_version(json_)
        raise typer.Exit(exit_code("done"))
    if ctx.invoked_subcommand is None:  # `lanes --json` alone
        ctx.fail("Missing command.")
    if json_:
        ctx.fail(f"--json goes after the command: lanes {ctx.invoked_subcommand} ... --json")


def _print_version(as_json: bool) -> None:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        found = dist_version("lanes")
    except PackageNotFoundError:  # run from a source tree that was never installed
        found = "unknown"
    if as_json:
        from lanes.cli.output import print_json

        print_json({"version": found})
    else:
        sys.stdout.write(f"lanes {found}\n")


def _register() -> None:
    from lanes.cli import agent_cmds, hook_cmds, lane_cmds, ledger_cmds, operator_cmds, run_cmd

    agent_cmds.register(app)
    lane_cmds.register(app)
    ledger_cmds.register(app)
    operator_cmds.register(app)
    run_cmd.register(app)
    hook_cmds.register(app)


_register()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; every error becomes its exit code and, with --json, a JSON document."""
    from lanes.errors import LanesError

    args = sys.argv[1:] if argv is None else argv
    as_json = "--json" in args
    if "--version" in args and set(args) <= {"--version", "--json"}:
        _print_version(as_json)  # before typer parses: its option coercion imports pydantic
        return exit_code("done")
    try:
        # Without standalone mode, typer returns an Exit's code instead of raising it.
        code = app(args=args, prog_name="lanes", standalone_mode=False)
    except LanesError as exc:
        return _fail(exc.exit_code, exc.code, exc.message, exc.hint, as_json, exc.extra)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.TyperException as exc:  # click's usage errors, vendored by typer: exit 2
        if type(exc).__name__ == "NoArgsIsHelpError":
            sys.stdout.write(exc.format_message() + "\n")
            return exit_code("done")
        return _fail(
            exit_code("bad-usage"),
            "bad-usage",
            exc.format_message(),
            _usage_hint(exc),
            as_json,
            {},
        )
    except typer.Abort:
        return exit_code("interrupted")
    except KeyboardInterrupt:
        return exit_code("interrupted")
    except OSError as exc:
        if exc.errno is None:  # raised by hand, not by the system: a bug
            return _crash(exc, as_json)
        # The filesystem said no (full, read-only, permissions, an I/O error): that is an
        # operational failure with its own code, never "a bug in lanes". Where the core knows
        # more (what was recorded, what to do) it raises its own OperationalError instead.
        return _os_failure(exc, _command(args), as_json)
    except Exception as exc:  # an unexpected exception is a bug: keep its traceback
        return _crash(exc, as_json)
    return code if isinstance(code, int) else exit_code("done")


def _command(args: list[str]) -> str:
    """`lanes claim`, `lanes ledger verify`: the words of the command line before its
    arguments, for messages."""
    words: list[str] = []
    for arg in args:
        if arg.startswith("-") or len(words) == 2:
            break
        words.append(arg)
        if arg not in ("ledger", "fragment", "hook"):
            break
    return " ".join(["lanes", *words])


def _os_failure(exc: OSError, command: str, as_json: bool) -> int:
    from lanes.errors import os_error

    # A write on an open file fails without a file name: name the inbox, where lanes
    # writes (claims, fragments, the ledger), so the user knows which disk to look at.
    err = os_error(exc, f"{command} failed", path="" if exc.filename else _inbox())
    extra = dict(err.extra)
    # A path that vanished or cannot be opened may be lanes' own fault after all: keep the
    # traceback when a file can be written for it (a full disk is not a bug: no file).
    trace = _write_traceback() if err.code == "io-failed" else None
    if trace is not None:
        extra["traceback"] = trace
    return _fail(err.exit_code, err.code, err.message, err.hint, as_json, extra)


def _inbox() -> str:
    """The inbox of the repository lanes runs in, or the current directory, or ""."""
    import os

    try:
        from lanes.cli.context import config

        return str(config().inbox)
    except Exception:  # the handler must not fail: any answer is better than none
        try:
            return os.getcwd()
        except OSError:
            return ""


def _write_traceback() -> str | None:
    """Write the current exception's traceback to a file; its path, or None when no file
    can be written (a full or read-only /tmp): then nothing is left behind."""
    import contextlib
    import os
    import tempfile
    import traceback

    path = ""
    try:
        fd, path = tempfile.mkstemp(prefix="lanes-crash-", suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            traceback.print_exc(file=fh)
        return path
    except OSError:
        if path:
            with contextlib.suppress(OSError):
                os.unlink(path)
        return None


def _usage_hint(exc: Exception) -> str:
    ctx = getattr(exc, "ctx", None)
    return f"see {ctx.command_path} --help" if ctx is not None else "see lanes --help"


def _fail(
    code: int, err: str, message: str, hint: str, as_json: bool, extra: dict[str, object]
) -> int:
    from lanes.cli.output import print_json, say

    if as_json:
        print_json({"error": err, "message": message, **({"hint": hint} if hint else {}), **extra})
    from rich.markup import escape

    say(f"[bold red]error[/] ({escape(err)}): {escape(message)}")
    if hint:
        say(f"[dim]hint:[/] {escape(hint)}")
    return code


def _crash(exc: Exception, as_json: bool) -> int:
    import traceback

    trace = _write_traceback()
    if trace is None:  # no file could be written: the traceback goes to standard error
        traceback.print_exc(file=sys.stderr)
    return _fail(
        exit_code("internal-error"),
        "internal-error",
        f"{type(exc).__name__}: {exc}",
        "this is a bug in lanes; "
        + (
            f"the traceback is in {trace}"
            if trace
            else "its traceback is above (no file could be written for it)"
        ),
        as_json,
        {"traceback": trace} if trace else {},
    )


def run() -> None:
    sys.exit(main())
