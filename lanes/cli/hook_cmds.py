"""`lanes hook worktree-create|worktree-remove`: Claude Code's worktree hooks, backed by lanes.

Claude Code reads the last non-empty line of a WorktreeCreate hook's standard output as the
worktree's path, so while lanes works everything is sent to standard error, file descriptor
1 included (git, and the setup commands a claim runs, inherit it): standard output holds the
path alone, and nothing at all when the hook fails. docs/claude-code.md tells the recipe.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

import typer

from lanes.cli.output import JsonOpt, emit, plain, say

hook_app = typer.Typer(
    help="Claude Code's WorktreeCreate/WorktreeRemove hooks backed by lanes: the hook's JSON "
    "document on stdin (lanes init --claude-code writes them into .claude/settings.json).",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Adds this module's commands to the lanes app."""
    app.add_typer(hook_app, name="hook")


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Point file descriptor 1 at standard error until the block ends, for this process
    and every child it starts; then give it back."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _document() -> dict[str, object]:
    from lanes import hooks

    if sys.stdin is None:
        return hooks.read_document(-1)  # no standard input at all: bad-hook-input
    return hooks.read_document(sys.stdin.fileno())


@hook_app.command("worktree-create")
def worktree_create(json_: JsonOpt = False) -> None:
    """Claim a lane for Claude Code's new worktree and print its absolute path alone.

    Reads the WorktreeCreate document on stdin (session_id, cwd, name), claims the lane
    named after the worktree in the wave LANES_WAVE (else d<YYYYMMDD>, UTC) for the agent
    claude-<session_id>, in the repository of cwd. Any failure exits non-zero, which makes
    Claude Code fail the creation; stdout is then empty.
    """
    from rich.markup import escape

    from lanes import hooks

    with _stdout_to_stderr():
        req = hooks.create_request(_document())
        result = hooks.worktree_create(req, os.environ.get("LANES_WAVE") or None)
        for note in result.notes:
            say(f"[dim]{escape(note)}[/]")
        verb = "already held" if result.reused else "claimed"
        say(
            f"lanes: {result.wave}/{result.lane} {verb} by {result.agent}: {escape(result.worktree)}"
        )

    def path() -> None:
        sys.stdout.write(result.worktree + "\n")
        sys.stdout.flush()

    emit(plain(result), json_, path)


@hook_app.command("worktree-remove")
def worktree_remove(json_: JsonOpt = False) -> None:
    """Release the lane of the worktree Claude Code removes, saving its work first.

    Reads the WorktreeRemove document on stdin (worktree_path). A path that is no lane's
    worktree, a lane held by another kind of agent, and a submitted or integrated lane are
    left as they are (exit 0, said on stderr). Prints nothing on stdout without --json.
    """
    from rich.markup import escape

    from lanes import hooks

    with _stdout_to_stderr():
        req = hooks.remove_request(_document())
        result = hooks.worktree_remove(req)
        saved = f"; uncommitted work saved to {result.saved_patch}" if result.saved_patch else ""
        say(f"lanes: {escape(result.reason + saved)}")
    emit(plain(result), json_, lambda: None)
