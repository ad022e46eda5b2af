"""Which repository, wave and lane a command is about: typed, or known from the worktree."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from lanes.errors import BadInput

if TYPE_CHECKING:
    from lanes.config import Config


def cwd() -> Path:
    """Where the command runs; a directory removed under the shell is said, not a crash."""
    from lanes.errors import OperationalError

    try:
        return Path.cwd()
    except FileNotFoundError:
        raise OperationalError(
            "no-cwd",
            "the current directory no longer exists (was the worktree removed?)",
            hint="cd into the main checkout or a lane's worktree and run it again",
        ) from None


def config() -> Config:
    from lanes import config as config_mod

    return config_mod.load(cwd())


def lane_from_branch(branch: str | None) -> tuple[str, str] | None:
    """(wave, lane) of a lane branch `lanes/<wave>/<lane>`, else None."""
    if branch and branch.startswith("lanes/") and branch.count("/") == 2:
        _, wave, lane = branch.split("/")
        return wave, lane
    return None


def lane_of(
    cfg_branch: str | None, wave: str | None, lane: str | None, typed: bool = True
) -> tuple[str, str]:
    """WAVE LANE as typed, or read from the lane branch `lanes/<wave>/<lane>` checked out here."""
    if wave and lane:
        return wave, lane
    if wave or lane:
        raise BadInput(
            "bad-arguments",
            "give both WAVE and LANE, or neither (inside a lane's worktree)",
            hint="e.g. 44 api-dim-a; or neither, inside the lane's worktree",
        )
    here = lane_from_branch(cfg_branch)
    if here:
        return here
    if not typed:  # the fragment commands: only inside the lane
        raise BadInput(
            "no-lane-here",
            "this is not a lane's worktree, and this command works on the lane it runs in",
            hint="cd into the worktree lanes claim printed, then run it again",
        )
    raise BadInput(
        "no-lane-here",
        "WAVE and LANE were not given and this is not a lane's worktree",
        hint="give WAVE LANE (e.g. 44 api-dim-a), or run it inside the lane's worktree "
        "(lanes status lists them)",
    )


def current_lane(wave: str | None, lane: str | None, typed: bool = True) -> tuple[Config, str, str]:
    """`typed`: whether the command takes WAVE LANE (the fragment commands do not)."""
    from lanes import config as config_mod
    from lanes import git

    where = git.locate(cwd())
    cfg = config_mod.load_at(where.main_checkout, where.common_dir)
    w, ln = lane_of(where.branch, wave, lane, typed)
    from lanes.names import check_lane, check_wave

    return cfg, check_wave(w), check_lane(ln)
