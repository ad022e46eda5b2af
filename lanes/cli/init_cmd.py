"""`lanes init`: write a commented lanes.toml from what discovery finds (or, with --dry-run,
only show it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from lanes.cli.output import JsonOpt, emit, plain, say

if TYPE_CHECKING:
    from lanes.init import InitResult


def register(app: typer.Typer) -> None:
    app.command("init")(init)


def init(
    project: Annotated[
        str | None,
        typer.Option(help="Project name, used in worktree paths (default: the checkout's name)."),
    ] = None,
    main: Annotated[
        str | None,
        typer.Option(help="The integration branch (default: the branch checked out)."),
    ] = None,
    worktree_root: Annotated[
        str | None,
        typer.Option(help="Absolute folder for lane worktrees (default: /tmp)."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing lanes.toml.")] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Print the lanes.toml and what was discovered; write nothing."
        ),
    ] = False,
    claude_code: Annotated[
        bool,
        typer.Option(
            "--claude-code",
            help="Also write lanes' WorktreeCreate/WorktreeRemove hooks into "
            ".claude/settings.json, keeping everything else in it (docs/claude-code.md); "
            "where lanes is configured already, only the hooks.",
        ),
    ] = False,
    json_: JsonOpt = False,
) -> None:
    """Write a commented lanes.toml from what discovery finds, and git-ignore the inbox.

    Discovery looks at the main checkout's files as they are: the boot manifest and the
    schema guard's required list, the version files, the deploy workflow. A surface found
    is written as a section; an ambiguous one is written commented out with its candidates,
    to pick one. Bad flag values exit 2 and nothing is written.

    With --claude-code, lanes' hooks for Claude Code's worktrees are merged into
    .claude/settings.json (a file that is not valid JSON is refused, unchanged, exit 2).
    """
    from lanes import init as init_mod
    from lanes.cli.context import cwd

    result = init_mod.init(
        cwd(),
        force=force,
        project=project,
        main=main,
        worktree_root=worktree_root,
        dry_run=dry_run,
        claude_code=claude_code,
    )
    emit(plain(result), json_, lambda: _human(result))


def _human(result: InitResult) -> None:
    from rich.markup import escape

    from lanes.cli.output import show_surfaces

    if result.config_kept:
        say(f"lanes is configured already: {escape(result.config_path)} left as it is")
        _human_hooks(result)
        return
    say(f"[dim]discovered in {escape(result.discovered_in)}:[/]")
    show_surfaces(result.surfaces)
    if result.inbox_ignored_by is not None:
        ignored = f"inbox already ignored ({escape(result.inbox_ignored_by)})"
    else:
        ignored = (
            f"inbox {'would be ' if result.dry_run else ''}ignored in {escape(result.gitignore)}"
        )
    if result.dry_run:
        say(f"dry run: would write {escape(result.config_path)}; {ignored}; wrote nothing")
        print(result.config_text, end="")
    else:
        say(f"wrote {escape(result.config_path)}; {ignored}")
    _human_hooks(result)


def _human_hooks(result: InitResult) -> None:
    from rich.markup import escape

    hooks = result.claude_settings
    if hooks is None:
        return
    for warning in hooks.warnings:
        say(f"[yellow]warning:[/] {escape(warning)}")
    added = ", ".join(hooks.added)
    if not hooks.changed:
        say(f"{escape(hooks.path)} has lanes' hooks already ({', '.join(hooks.present)})")
    elif hooks.dry_run:
        say(f"dry run: would add {added} to {escape(hooks.path)}, which would read:")
        print(hooks.text, end="")
    else:
        say(f"added {added} to {escape(hooks.path)}")
