"""`lanes ledger [WAVE]` and `lanes ledger verify [WAVE]`.

One command with a leading `verify` word, rather than a click group: a group with an
optional WAVE argument would swallow the word `verify` as a wave.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from lanes.cli.output import SCHEMA_VERSION, emit, say, table

if TYPE_CHECKING:
    from lanes.config import Config
    from lanes.ledger import Event


def register(app: typer.Typer) -> None:
    app.command("ledger")(ledger)


def ledger(
    words: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Argument(
            help="[WAVE] to show the ledger, or: verify [WAVE] to check its chain.",
            metavar="[verify] [WAVE]",
        ),
    ] = None,
    lane: Annotated[Optional[str], typer.Option(help="Only this lane.")] = None,  # noqa: UP045
    agent: Annotated[Optional[str], typer.Option(help="Only this agent.")] = None,  # noqa: UP045
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new events.")
    ] = False,
    json_: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Events as JSON Lines (one object per line); verify prints one document.",
        ),
    ] = False,
) -> None:
    """Show the wave's ledger (filtered), or `verify` its hash chain (exit 4 if broken)."""
    from lanes.cli.context import config
    from lanes.errors import BadInput

    args = list(words or [])
    verifying = bool(args) and args[0] == "verify"
    if verifying:
        args = args[1:]
    if len(args) > 1:
        raise BadInput(
            "bad-usage",
            f"too many arguments: {' '.join(args)}",
            hint="lanes ledger [WAVE] or lanes ledger verify [WAVE]",
        )
    cfg = config()
    wave = _wave(cfg, args[0] if args else None, follow and not verifying)
    if verifying:
        _verify(cfg, wave, json_)
    else:
        _show(cfg, wave, lane, agent, follow, json_)


def _wave(cfg: Config, wave: str | None, follow: bool) -> str:
    """The wave typed; else the lane's, inside a lane's worktree; else the only one."""
    from lanes import claims, git, state
    from lanes.cli.context import cwd, lane_from_branch
    from lanes.errors import BadInput
    from lanes.names import check_wave

    if wave is not None:  # named, even as "": an empty name is invalid, not "no wave"
        check_wave(wave)
        # A wave whose file is gone but whose anchor is kept is known: verify says so.
        if follow or claims.ledger(cfg, wave).anchor_path.exists():
            return wave
        return state.known_wave(cfg, wave)
    here = lane_from_branch(git.locate(cwd()).branch)
    if here:
        return check_wave(here[0])
    known = state.waves(cfg)
    if len(known) == 1:
        return known[0]
    raise BadInput(
        "no-wave",
        "no WAVE given and "
        + ("no wave has a ledger yet" if not known else f"there are several: {', '.join(known)}"),
        hint="name the wave: lanes ledger 44",
    )


def _show(
    cfg: Config, wave: str, lane: str | None, agent: str | None, follow: bool, as_json: bool
) -> None:
    from lanes import claims

    log = claims.ledger(cfg, wave)

    def keep(ev: Event) -> bool:
        return (not lane or ev.lane == lane) and (not agent or ev.agent == agent)

    if follow:
        if not cfg.ledger_path(wave).exists():
            say(f"wave {wave} has no ledger yet: waiting for its first event (Ctrl-C to stop)")
        for ev in log.follow():
            if keep(ev):
                _print_line(ev, as_json)
        return
    wanted = [ev for ev in log.events() if keep(ev)]
    if as_json:
        for ev in wanted:
            _print_line(ev, True)
        return
    table(
        f"ledger of wave {wave} ({cfg.ledger_path(wave)})",
        ["#", "time (UTC)", "event", "lane", "agent", "details"],
        [
            [
                str(e.seq),
                e.time[:19].replace("T", " "),
                e.event,
                e.lane,
                e.agent,
                _details(e.details),
            ]
            for e in wanted
        ],
    )


def _details(details: dict[str, object]) -> str:
    return ", ".join(f"{k}={v}" for k, v in details.items() if v not in (None, "", [], False))


def _print_line(ev: Event, as_json: bool) -> None:
    if as_json:
        line = json.dumps({"schema_version": SCHEMA_VERSION, **ev.to_json()})
    else:
        line = (
            f"{ev.seq:>4} {ev.time[:19]} {ev.event:<15} {ev.lane or '-':<20} "
            f"{ev.agent or '-':<16} {_details(ev.details)}"
        )
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _verify(cfg: Config, wave: str, as_json: bool) -> None:
    from lanes import claims
    from lanes.errors import Refused

    report = claims.ledger(cfg, wave).verify()
    path = str(cfg.ledger_path(wave))
    if not report.ok:
        raise Refused(
            "ledger-broken",
            f"{path} line {report.bad_line}: {report.reason}",
            hint="compare the file with a copy or with lanes ledger --json; lanes never rewrites a row",
            wave=wave,
            path=path,
            events=report.events,
            bad_line=report.bad_line,
            reason=report.reason,
            ok=False,
        )
    doc = {"wave": wave, "ok": True, "events": report.events, "path": path}
    emit(
        doc,
        as_json,
        lambda: say(f"ledger of wave {wave} is whole: {report.events} events, chain intact"),
    )
