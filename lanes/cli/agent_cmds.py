"""The agent's commands: claim, heartbeat, fragment, submit, release, status, gc."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from lanes.cli.output import JsonOpt, ago, emit, plain, say, table

if TYPE_CHECKING:
    from lanes.state import LaneStatus

WaveArg = Annotated[Optional[str], typer.Argument(help="Wave; known from the worktree if omitted.")]  # noqa: UP045
LaneArg = Annotated[Optional[str], typer.Argument(help="Lane; known from the worktree if omitted.")]  # noqa: UP045

fragment_app = typer.Typer(
    help="Ask the integrator for a change to a contended file.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.command("claim")(claim)
    app.command("heartbeat")(heartbeat)
    app.add_typer(fragment_app, name="fragment")
    app.command("submit")(submit)
    app.command("release")(release)
    app.command("status")(status)
    app.command("gc")(gc)


def claim(
    wave: Annotated[str, typer.Argument(help="Wave, e.g. 44 or w45.")],
    lane: Annotated[str, typer.Argument(help="Lane, e.g. api-dim-a.")],
    agent: Annotated[str, typer.Option("--agent", help="Who holds the lane.")],
    base: Annotated[str | None, typer.Option(help="Branch from this ref instead of main.")] = None,
    sparse: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option(help="Check out only this directory (cone mode); repeatable."),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Claim a lane and create its worktree, branched from the tip of main."""
    from lanes import claims
    from lanes.cli.context import config

    result = claims.claim(config(), wave, lane, agent, base=base, sparse=sparse or [])

    def human() -> None:
        say(f"claimed {wave}/{lane} for {agent}; its worktree:")
        print(result.worktree)

    emit(plain(result), json_, human)


def heartbeat(wave: WaveArg = None, lane: LaneArg = None, json_: JsonOpt = False) -> None:
    """Record that the lane's holder is alive."""
    from lanes import claims
    from lanes.cli.context import current_lane

    cfg, w, ln = current_lane(wave, lane)
    result = claims.heartbeat(cfg, w, ln)
    emit(result, json_, lambda: say(f"heartbeat {w}/{ln}"))


def _drop(fragment: object, json_: bool) -> None:
    from lanes import claims, fragments
    from lanes.cli.context import current_lane

    cfg, w, ln = current_lane(None, None, typed=False)
    path = fragments.drop(cfg, w, ln, fragment)  # type: ignore[arg-type]
    warnings: list[str] = []
    if isinstance(fragment, fragments.ManifestFragment):
        _, record = claims.held(cfg, w, ln)
        warnings = fragments.unmet_entries(
            cfg, record.branch, fragment.entries, Path(record.worktree)
        )
    doc = {
        "wave": w,
        "lane": ln,
        "fragment": str(path),
        **fragments.fragment_to_json(fragment),  # type: ignore[arg-type]
        "warnings": warnings,
    }

    def human() -> None:
        say(f"fragment {path.name} added to {w}/{ln}")
        _warn(warnings)

    emit(doc, json_, human)


def _warn(warnings: list[str]) -> None:
    from rich.markup import escape

    for warning in warnings:
        say(f"[yellow]warning:[/] {escape(warning)}")


@fragment_app.command("manifest")
def fragment_manifest(
    entries: Annotated[
        list[str], typer.Argument(help="Migration file names to add to the manifest.")
    ],
    json_: JsonOpt = False,
) -> None:
    """Ask for entries in the boot manifest (run inside the lane's worktree)."""
    from lanes.surfaces import manifest

    _drop(manifest.fragment(entries), json_)


@fragment_app.command("version")
def fragment_version(
    bump: Annotated[str, typer.Argument(help="major, minor or patch.")],
    json_: JsonOpt = False,
) -> None:
    """Ask for a version bump (run inside the lane's worktree)."""
    from lanes.surfaces import version

    _drop(version.fragment(bump), json_)


@fragment_app.command("deploy")
def fragment_deploy(
    patch_file: Annotated[Path, typer.Argument(help="A JSON Patch (RFC 6902), in YAML or JSON.")],
    json_: JsonOpt = False,
) -> None:
    """Ask for a change to the deploy workflow (run inside the lane's worktree)."""
    from lanes.surfaces import deploy

    _drop(deploy.parse_patch_file(patch_file), json_)


@fragment_app.command("withdraw")
def fragment_withdraw(
    names: Annotated[
        list[str], typer.Argument(help="Fragment file names, as `lanes fragment` printed them.")
    ],
    json_: JsonOpt = False,
) -> None:
    """Take fragments back before (re)submitting, e.g. the one a bounce named (run inside
    the lane's worktree). They move to the claim's withdrawn/ folder."""
    from lanes import fragments
    from lanes.cli.context import current_lane

    cfg, w, ln = current_lane(None, None, typed=False)
    moved = fragments.withdraw(cfg, w, ln, names)
    doc = {"wave": w, "lane": ln, "withdrawn": [str(p) for p in moved]}
    emit(doc, json_, lambda: say(f"withdrew {len(moved)} fragment(s) from {w}/{ln}"))


def submit(wave: WaveArg = None, lane: LaneArg = None, json_: JsonOpt = False) -> None:
    """Hand the lane to the integrator (refused if it edited a contended file)."""
    from lanes import submit as submit_mod
    from lanes.cli.context import current_lane

    cfg, w, ln = current_lane(wave, lane)
    result = submit_mod.submit(cfg, w, ln)

    def human() -> None:
        say(f"submitted {w}/{ln}: {result.commits} commit(s), {result.fragments} fragment(s)")
        _warn(result.warnings)

    emit(plain(result), json_, human)


def release(
    wave: WaveArg = None,
    lane: LaneArg = None,
    keep_worktree: Annotated[bool, typer.Option(help="Leave the worktree on disk.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Give the lane up; uncommitted work is saved as a patch first."""
    from lanes import claims
    from lanes.cli.context import current_lane

    cfg, w, ln = current_lane(wave, lane)
    result = claims.release(cfg, w, ln, keep_worktree=keep_worktree)
    emit(
        plain(result),
        json_,
        lambda: say(
            f"released {w}/{ln}"
            + (f"; uncommitted work saved to {result.saved_patch}" if result.saved_patch else "")
        ),
    )


def status(
    wave: Annotated[Optional[str], typer.Argument(help="Only this wave.")] = None,  # noqa: UP045
    json_: JsonOpt = False,
) -> None:
    """Lanes with agent, state, age, heartbeat, commits ahead and fragments."""
    from lanes import state
    from lanes.cli.context import config
    from lanes.cli.output import show_surfaces

    cfg = config()
    rows = state.status(cfg, wave)
    surfaces = cfg.surfaces.describe()

    def human() -> None:
        show_surfaces(surfaces)
        _lanes_table(wave, rows)

    emit({"lanes": plain(rows), "surfaces": surfaces}, json_, human)


def _lanes_table(wave: str | None, rows: list[LaneStatus]) -> None:
    from rich.markup import escape

    table(
        "lanes" + (f" in wave {wave}" if wave else ""),
        [
            "wave",
            "lane",
            "agent",
            "state",
            "age",
            "heartbeat",
            "ahead",
            "fragments",
            "worktree",
        ],
        [
            [
                r.wave,
                r.lane,
                r.agent,
                r.state
                + (" (stale)" if r.stale else "")
                + (f" ({r.bounce_reason})" if r.bounce_reason else "")
                + "".join(f"\n[yellow]! {escape(p)}[/]" for p in r.problems),
                ago(r.age_seconds),
                ago(r.heartbeat_age_seconds),
                str(r.commits_ahead),
                str(r.fragments),
                r.worktree,
            ]
            for r in rows
        ],
    )


def gc(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be reaped; change nothing.")
    ] = False,
    json_: JsonOpt = False,
) -> None:
    """Reap stale claims (saving their uncommitted work) and remove finished worktrees."""
    from lanes import gc as gc_mod
    from lanes.cli.context import config

    report = gc_mod.gc(config(), dry_run=dry_run)

    def human() -> None:
        if not report.actions:
            say("nothing to collect")
            return
        rows = [
            [
                f"{a.wave}/{a.lane}",
                ("would " if dry_run else "") + a.action,
                a.reason,
                a.saved_patch or "",
            ]
            for a in report.actions
        ]
        table(
            "lanes gc" + (" (dry run)" if dry_run else ""),
            ["lane", "action", "why", "work saved to"],
            rows,
        )

    emit(plain(report), json_, human)
