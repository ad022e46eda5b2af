"""The brief: what a lane's agent must know, filled in for its lane, and the lane's environment.

`brief(cfg, wave, lane)` gathers the facts of a held lane: its worktree, branch and base,
the main checkout, every file no lane may change with what to do instead, the heartbeat's
pace, the refusals an agent meets, and what its worktree lacks (the main checkout's
uncommitted changes, its git-ignored files that did not come along, the folders a sparse
lane leaves out). `brief_text` is its text, from the one template of
lanes/brief_template.py: `lanes brief` prints it, and the wave runner writes it, followed by
the task, on the agent's standard input. The same template, with the operator's
placeholders left in, is the block to paste of docs/subagents.md (`python -m lanes.brief
--doc` prints it, and tests/test_brief.py checks the page holds exactly that).

`lane_env(cfg, wave, lane)` is the lane's environment (`LANES_WAVE`, `LANES_LANE`,
`LANES_WORKTREE`, `LANES_BASE`, `LANES_PORT`, ...): `lanes env` prints it as shell exports,
and the runner and the setup commands run with it.

Nothing here writes: a brief only reads the claim, the configuration and git.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lanes import brief_template as template

if TYPE_CHECKING:
    from lanes.claims import ClaimRecord
    from lanes.config import Config


@dataclass(frozen=True)
class Contended:
    """A path no lane may change in any commit, and what to do instead."""

    path: str  # a file, a folder (ending in /) or a glob
    surface: str  # manifest, required, version, deploy, config, protected, inbox, attributes
    instead: str
    fragment: str | None = None  # the command that asks for a change, when one can


@dataclass(frozen=True)
class Change:
    """One path `git status` reports in the main checkout."""

    status: str  # git's two letters: " M", "A ", "??", ...
    path: str


@dataclass(frozen=True)
class Brief:
    wave: str
    lane: str
    agent: str
    state: str  # claimed, submitted or bounced
    bounce_reason: str
    worktree: str
    worktree_exists: bool
    branch: str
    base: str  # where the branch leaves main
    main: str
    main_checkout: str
    claim_dir: str
    sparse: list[str]
    port: int | None
    ports: list[int]
    stale_after_seconds: int
    heartbeat_every_seconds: int
    contended: list[Contended]
    fragments: list[str]  # the surfaces that take fragments here
    main_uncommitted: list[Change]
    ignored_missing: list[str]  # git-ignored in the main checkout, absent from the worktree
    saved: list[str]  # work saved when the lane was released or reaped before: newest first
    setup: dict[str, Any]
    env: dict[str, str]

    @property
    def text(self) -> str:
        return template.render(self)

    def to_json(self) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        doc["main_uncommitted_count"] = len(self.main_uncommitted)
        doc["ignored_missing_count"] = len(self.ignored_missing)
        doc["commands"] = dict(template.COMMANDS)
        doc["refusals"] = template.refusals(self)
        doc["text"] = self.text
        return doc


# -- the facts ---------------------------------------------------------------------------


def brief(cfg: Config, wave: str, lane: str) -> Brief:
    """The brief of a held lane; `not-held` (exit 4) when nobody holds it, `lane-integrated`
    when it is finished, `bad-wave`/`bad-lane` (exit 2) for a name that is not valid."""
    claim_dir, record, state, reason = _held(cfg, wave, lane)
    base = _base(cfg, record)
    worktree = Path(record.worktree)
    changes, ignored = _main_status(cfg)
    exists = worktree.is_dir()
    missing = [p for p in ignored if not (exists and os.path.lexists(worktree / p.rstrip("/")))]
    ports = _ports(cfg, record)
    found = contended(cfg)
    return Brief(
        wave=wave,
        lane=lane,
        agent=record.agent,
        state=state,
        bounce_reason=reason,
        worktree=record.worktree,
        worktree_exists=exists,
        branch=record.branch,
        base=base,
        main=cfg.main,
        main_checkout=str(cfg.main_checkout),
        claim_dir=str(claim_dir),
        sparse=list(record.sparse),
        port=ports[0] if ports else None,
        ports=ports,
        stale_after_seconds=cfg.stale_after_seconds,
        heartbeat_every_seconds=template.heartbeat_every(cfg.stale_after_seconds),
        contended=found,
        fragments=[k for k in template.FRAGMENT_COMMANDS if any(c.surface == k for c in found)],
        main_uncommitted=changes,
        ignored_missing=missing,
        saved=_saved(cfg, wave, lane),
        setup=_setup(cfg),
        env=env_of(cfg, record, base, ports),
    )


def _saved(cfg: Config, wave: str, lane: str) -> list[str]:
    """The saves (uncommitted work as a patch, ignored files as a tar.gz) that releases and
    reaps of this lane left in the wave's archive, newest first: a lane claimed again does
    not get them back by itself, so its agent is told where they are."""
    archive = cfg.wave_dir(wave) / ".archive"
    try:
        mine = re.compile(rf"{re.escape(lane)}-(released|reaped)-\d{{8}}T\d{{6}}-[0-9a-f]+")
        held = [d for d in archive.iterdir() if mine.fullmatch(d.name) and d.is_dir()]
    except OSError:
        return []
    found = []
    for folder in sorted(held, key=lambda d: d.name.split("-")[-2:], reverse=True):
        found += sorted(
            str(p)
            for p in folder.iterdir()
            if p.name.endswith(("-uncommitted.patch", "-ignored.tar.gz"))
        )
    return found[:10]


def brief_text(cfg: Config, wave: str, lane: str) -> str:
    """The instructions for the lane's agent, as text (what the runner writes on its stdin)."""
    return brief(cfg, wave, lane).text


def lane_env(cfg: Config, wave: str, lane: str) -> dict[str, str]:
    """The environment of a held lane's agent and setup commands (see `env_of`)."""
    _, record, _, _ = _held(cfg, wave, lane)
    base = _base(cfg, record)
    return env_of(cfg, record, base, _ports(cfg, record))


def env_of(
    cfg: Config, record: ClaimRecord, base: str | None = None, ports: list[int] | None = None
) -> dict[str, str]:
    """The lane's environment from its claim record, without reading the claim again (for a
    caller that holds the record, as setup does while it claims): LANES_WAVE, LANES_LANE,
    LANES_AGENT, LANES_WORKTREE, LANES_BRANCH, LANES_BASE (where the branch leaves main),
    LANES_MAIN_CHECKOUT, and when the lane has ports, LANES_PORT (the first) and LANES_PORTS
    (all of them, separated by spaces)."""
    env = {
        "LANES_WAVE": record.wave,
        "LANES_LANE": record.lane,
        "LANES_AGENT": record.agent,
        "LANES_WORKTREE": record.worktree,
        "LANES_BRANCH": record.branch,
        "LANES_BASE": base or record.base,
        "LANES_MAIN_CHECKOUT": str(cfg.main_checkout),
    }
    ports = _ports(cfg, record) if ports is None else ports
    if ports:
        env["LANES_PORT"] = str(ports[0])
        env["LANES_PORTS"] = " ".join(map(str, ports))
    return env


def shell_exports(env: dict[str, str]) -> str:
    """`export NAME=VALUE` lines, each value quoted for a POSIX shell."""
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in env.items())


def _held(cfg: Config, wave: str, lane: str) -> tuple[Path, ClaimRecord, str, str]:
    from lanes import claims, state
    from lanes.errors import Refused

    claim_dir, record = claims.held(cfg, wave, lane)
    hist = state.histories(cfg, wave).get(lane)
    now = hist.state if hist else "claimed"
    if now == "integrated":
        raise Refused(
            "lane-integrated",
            f"lane {wave}/{lane} is integrated (its work is on {cfg.main}): no agent works on it",
            hint="claim a new lane for new work",
        )
    return claim_dir, record, now, hist.bounce_reason if hist else ""


def _base(cfg: Config, record: ClaimRecord) -> str:
    """Where the lane's branch leaves main (a resumed lane's is older than its claim)."""
    from lanes import git

    return git.merge_base(cfg.main_checkout, cfg.main, record.branch) or record.base


def _ports(cfg: Config, record: ClaimRecord) -> list[int]:
    """The ports reserved for the lane: its first, and as many as [setup] ports says."""
    if record.port is None:
        return []
    return list(range(record.port, record.port + max(1, cfg.settings.setup.ports)))


def _setup(cfg: Config) -> dict[str, Any]:
    setup = cfg.settings.setup
    return {
        "copy": list(setup.copy_),
        "link": list(setup.link),
        "commands": list(setup.commands),
        "ports": setup.ports,
        "worktreeinclude": (cfg.main_checkout / ".worktreeinclude").is_file(),
    }


def contended(cfg: Config) -> list[Contended]:
    """Every path the guard refuses in a lane's commits (lanes/guard.py), as an agent must
    read it: the surfaces written or discovered (`cfg.surfaces`, as `lanes status` shows
    them), the required list, lanes.toml and [tool.lanes], `protected`, the inbox and any
    .gitattributes."""
    s = cfg.surfaces
    m, v, d = s.manifest, s.version, s.deploy
    found: dict[str, Contended] = {}

    def add(path: str, surface: str, instead: str, fragment: str | None = None) -> None:
        found.setdefault(path, Contended(path, surface, instead, fragment))

    unchosen = "several files fit and the configuration names none yet: ask the operator"
    if m.active:
        entries = f"{m.entries_dir}/" if m.entries_dir else "the top folder"
        add(
            m.path,
            "manifest",
            f"the boot manifest, entries naming files in {entries}: lanes fragment manifest",
            template.FRAGMENT_COMMANDS["manifest"],
        )
    for path in m.candidates if m.status == "ambiguous" else ():
        add(path, "manifest", f"may be the boot manifest; {unchosen}")
    for path in v.files if v.active else ():
        add(
            path,
            "version",
            "a version file: lanes fragment version for a bump; any other edit: ask the operator",
            template.FRAGMENT_COMMANDS["version"],
        )
    if d.active:
        add(
            d.workflow,
            "deploy",
            "the deploy workflow: lanes fragment deploy",
            template.FRAGMENT_COMMANDS["deploy"],
        )
    for path in d.candidates if d.status == "ambiguous" else ():
        add(path, "deploy", f"may be the deploy workflow; {unchosen}")
    for path in d.runners_up:
        add(path, "deploy", "looks like a deploy workflow too, so it is guarded: ask the operator")
    specs = [m.required] if m.required is not None else list(m.required_candidates)
    for spec in specs if m.status != "off" else []:
        what = f"its list {spec.name} only (the rest of the file is yours)" if spec.name else "it"
        add(spec.file, "required", f"the required migrations, {what}: ask the operator")
    add(
        "lanes.toml",
        "config",
        "lanes' configuration, the rules lanes are judged by: ask the operator",
    )
    if cfg.source == "pyproject.toml" or (cfg.main_checkout / "pyproject.toml").is_file():
        add(
            "pyproject.toml",
            "config",
            "its [tool.lanes] table only (the rest of the file is yours): ask the operator",
        )
    from lanes.surfaces.protected import SETUP_FILES

    for path in SETUP_FILES:
        add(path, "setup", "decides what every new lane worktree gets or runs: ask the operator")
    for glob in cfg.settings.protected:
        add(glob, "protected", "protected by the configuration: ask the operator")
    add(
        cfg.settings.inbox.strip("/") + "/",
        "inbox",
        "lanes' own state (claims, fragments, the ledger), written by lanes commands only: "
        "never git add -f anything under it",
    )
    add("**/.gitattributes", "attributes", "how git merges every lane: ask the operator")
    return list(found.values())


def _main_status(cfg: Config) -> tuple[list[Change], list[str]]:
    """The main checkout's uncommitted changes (tracked and untracked files) and its
    git-ignored paths, the inbox left out. Read without taking git's index lock."""
    from lanes import git

    res = git.run(
        [
            "--no-optional-locks",
            "status",
            "--porcelain=v1",
            "-z",
            "--untracked-files=normal",
            "--ignored=matching",
        ],
        cfg.main_checkout,
    )
    inbox = cfg.settings.inbox.strip("/")
    changes: list[Change] = []
    ignored: list[str] = []
    fields = res.stdout.split("\0")
    i = 0
    while i < len(fields):
        entry = fields[i]
        i += 1
        if len(entry) < 4:
            continue
        status, path = entry[:2], entry[3:]
        if "R" in status or "C" in status:
            i += 1  # the path it was renamed or copied from follows
        bare = path.rstrip("/")
        if bare == inbox or bare.startswith(inbox + "/") or inbox.startswith(bare + "/"):
            continue
        if status == "!!":
            ignored.append(path)
        else:
            changes.append(Change(status, path))
    return changes, ignored


def _main(argv: list[str]) -> int:
    from lanes.errors import exit_code

    if argv != ["--doc"]:
        sys.stderr.write(
            "usage: python -m lanes.brief --doc   (prints the block of docs/subagents.md)\n"
        )
        return exit_code("bad-usage")
    sys.stdout.write(template.doc_block())
    return exit_code("done")


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
