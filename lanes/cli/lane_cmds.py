"""The lane's own facts: `lanes brief` (its agent's instructions) and `lanes env` (its
environment as shell exports)."""

from __future__ import annotations

import sys

import typer

from lanes.cli.agent_cmds import LaneArg, WaveArg
from lanes.cli.output import JsonOpt, emit


def register(app: typer.Typer) -> None:
    """Adds this module's commands to the lanes app."""
    app.command("brief")(brief)
    app.command("env")(env)


def brief(wave: WaveArg = None, lane: LaneArg = None, json_: JsonOpt = False) -> None:
    """The instructions for the lane's agent: where it works, the contended files and the
    fragment commands, its base, what its worktree lacks. Plain text, for a person or an
    agent's standard input; --json gives the same facts as fields, and the text."""
    from lanes import brief as brief_mod
    from lanes.cli.context import current_lane

    cfg, w, ln = current_lane(wave, lane)
    found = brief_mod.brief(cfg, w, ln)
    emit(found.to_json(), json_, lambda: _write(found.text))


def env(wave: WaveArg = None, lane: LaneArg = None, json_: JsonOpt = False) -> None:
    """The lane's environment as shell exports, for: eval "$(lanes env)". LANES_WAVE,
    LANES_LANE, LANES_AGENT, LANES_WORKTREE, LANES_BRANCH, LANES_BASE, LANES_MAIN_CHECKOUT,
    and LANES_PORT and LANES_PORTS when the lane has ports."""
    from lanes import brief as brief_mod
    from lanes.cli.context import current_lane

    cfg, w, ln = current_lane(wave, lane)
    found = brief_mod.lane_env(cfg, w, ln)
    doc = {"wave": w, "lane": ln, "env": found}
    emit(doc, json_, lambda: _write(brief_mod.shell_exports(found)))


def _write(text: str) -> None:
    # Plain text, never rich: `[setup]` and `[tool.lanes]` are not markup.
    sys.stdout.write(text)
    sys.stdout.flush()
