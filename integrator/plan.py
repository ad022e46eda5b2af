"""Which lanes a pass takes, in what order, what each asks for, and what applying it does.

The plan is read, never written: submitted lanes from the ledger (in submission order),
what is already integrated from the trailers on `main`, each lane's fragments from its
claim directory. `Surfaces` holds the contended files as the pass changes them, and is
shared by the real pass and the dry run (integrator/dry_run.py), so both judge a lane the
same way.
"""

from __future__ import annotations

import copy
import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from integrator import trailers
from lanes import fragments, git, guard, state
from lanes.config import Config
from lanes.errors import BadInput
from lanes.surfaces import deploy, manifest, version, workflows
from lanes.surfaces.deploy import DeployFragment, PatchOp
from lanes.surfaces.manifest import ManifestFragment
from lanes.surfaces.version import VersionFragment

if TYPE_CHECKING:
    from lanes.coord import Coord

APPLIED = "fragments.applied"  # beside fragments/ in the claim dir, once main has moved


@dataclass(frozen=True)
class Bounce:
    lane: str
    agent: str
    reason: str  # conflict, test-failed, test-flaky, bad-fragment, missing-entry, ...
    files: list[str]
    message: str
    together_with: list[str] = field(default_factory=list)  # lanes it fails the test with


class BounceError(Exception):
    def __init__(self, reason: str, files: list[str], message: str) -> None:
        super().__init__(message)
        self.reason, self.files, self.message = reason, files, message

    def bounce(self, lane: LanePlan) -> Bounce:
        return Bounce(lane.lane, lane.agent, self.reason, self.files, self.message)


@dataclass
class LanePlan:
    lane: str
    agent: str
    branch: str
    tip: str | None
    fragment_files: list[str] = field(default_factory=list)  # names, in drop order
    entries: list[str] = field(default_factory=list)
    entry_fragment: dict[str, str] = field(default_factory=dict)  # entry -> its file name
    bump: str | None = None
    patches: list[tuple[str, list[PatchOp]]] = field(default_factory=list)
    problem: Bounce | None = None  # found before any replay
    commits: list[git.RawCommit] = field(default_factory=list)  # to replay, oldest first


@dataclass(frozen=True)
class AppliedOp:
    lane: str
    commit: str  # the commit that landed it on main; "" while still inside this pass
    op: PatchOp


@dataclass
class Plan:
    wave: str
    head: str  # main when the plan was read
    lanes: list[LanePlan]
    landed: list[trailers.Landed]  # this wave's landings on main, newest first
    applied_bump: str | None  # the largest bump this wave has already made
    earlier_ops: list[AppliedOp]
    version: str | None  # the common version at `head`, when version files are configured


def read(cfg: Config, wave: str, coord: Coord | None = None, head: str | None = None) -> Plan:
    """The plan of `wave` against `head` (default: main here), each lane's fragments read
    where `coord` keeps them (default: this repository's coordination)."""
    from lanes.coord import for_config

    state.known_wave(cfg, wave)
    repo = cfg.main_checkout
    where = coord or for_config(cfg)
    head = head or git.rev_parse(repo, cfg.main)
    if head is None:
        raise BadInput(
            "no-main",
            f"the integration branch {cfg.main!r} does not exist",
            hint=f"commit to {cfg.main!r} first, or set main in the lanes configuration",
        )
    landed = trailers.landed(repo, head, wave)
    done = {ld.lane for ld in landed if ld.lane}
    bumps = [trailers.parse_bump(ld.version_bump)[0] for ld in landed if ld.version_bump]
    waiting = [hist for hist in state.submitted_in_order(cfg, wave) if hist.lane not in done]
    return Plan(
        wave,
        head,
        _lane_plans(cfg, wave, waiting, head, where),
        landed,
        version.largest(bumps),
        _earlier_ops(where, wave, landed),
        _main_version(cfg, head) if cfg.surfaces.version_files else None,
    )


def version_texts(cfg: Config, rev: str) -> dict[str, str]:
    files = cfg.surfaces.version_files
    texts = {}
    for name in files:
        text = git.show_file(cfg.main_checkout, rev, name)
        if text is None:
            raise BadInput(
                "bad-version-file",
                f"version file {name} does not exist on {cfg.main}",
                hint="list only existing files in [version].files",
            )
        texts[name] = text
    return texts


def version_step(applied: str | None, requested: str | None) -> str | None:
    """The bump to make now: the wave bumps once, again only for a strictly larger bump."""
    if requested is None:
        return None
    if applied is not None and version.RANK[requested] <= version.RANK[applied]:
        return None
    return requested


def fragment_path(coord: Coord, wave: str, lane: str, name: str) -> Path | None:
    """Where a lane's fragment file is now: still in fragments/, or archived beside it."""
    folder = coord.fragment_dir(wave, lane)
    for path in (folder / name, folder.parent / APPLIED / name):
        if path.is_file():
            return path
    return None


def _earlier_ops(coord: Coord, wave: str, landed: list[trailers.Landed]) -> list[AppliedOp]:
    """Deploy operations this wave has already landed, oldest first (for conflicts)."""
    found = []
    for ld in reversed(landed):
        for name in ld.fragments if ld.lane else []:
            path = fragment_path(coord, wave, ld.lane or "", name)
            if path is None or "-deploy-" not in name:
                continue
            # It landed once, valid; an unreadable archive only loses a conflict check.
            frag = fragments.parsed(path)
            if isinstance(frag, DeployFragment):
                found += [AppliedOp(ld.lane or "", ld.sha, op) for op in frag.patch]
    return found


def _lane_plans(
    cfg: Config, wave: str, waiting: list[state.LaneHistory], head: str, coord: Coord
) -> list[LanePlan]:
    """Every waiting lane's plan, its commits read for all lanes at once: one `cat-file`
    to resolve the submitted commits, one `git log --raw` for their commits and paths, one
    `cat-file --batch` for the commits themselves, whatever the number of lanes."""
    repo = cfg.main_checkout
    asked = [str((h.submit_details or {}).get("head") or cfg.branch(wave, h.lane)) for h in waiting]
    tips = git.resolve_commits(repo, asked)
    claimed = coord.submitted_heads(wave)
    graph = git.commits_between(repo, head, [t for t in tips if t])
    raw = {
        sha: git.parse_commit(sha, data)
        for sha, (kind, data) in git.read_objects(repo, list(graph)).items()
        if kind == "commit"
    }
    plans = []
    for hist, tip in zip(waiting, tips, strict=True):
        lp = LanePlan(hist.lane, hist.agent, cfg.branch(wave, hist.lane), tip)
        try:
            _check_lane(cfg, wave, lp, head, Lineage(tip, graph, raw) if tip else None, coord)
            # What the lane's commits are is judged first (the more telling bounce), then
            # whether the remote's claim hands them over at all.
            if claimed is not None and claimed.get(hist.lane) != tip:
                said = claimed.get(hist.lane)
                raise BounceError(
                    "not-submitted",
                    [],
                    "the ledger says this lane was submitted, but its claim on the remote "
                    + (
                        f"hands over {said[:12]}, not {str(tip)[:12]}"
                        if said
                        else "carries no submission"
                    )
                    + " (a row not written by lanes submit): run lanes submit again",
                )
        except BounceError as exc:
            lp.problem = exc.bounce(lp)
        plans.append(lp)
    return plans


@dataclass(frozen=True)
class Lineage:
    """A lane's commits not in main, read in bulk (`_lane_plans`), and what the guard's
    rules say of them without asking git again."""

    tip: str
    graph: dict[str, git.GraphCommit]
    raw: dict[str, git.RawCommit]

    def members(self) -> set[str]:
        seen: set[str] = set()
        todo = [self.tip]
        while todo:
            sha = todo.pop()
            if sha in self.graph and sha not in seen:
                seen.add(sha)
                todo += self.graph[sha].parents
        return seen

    def linear(self) -> list[str] | None:
        """The lane's commits, oldest first, when they are one line of non-merge commits
        whose oldest has its parent in main (what `guard.unlandable` accepts); else None."""
        members = self.members()
        chain, sha = [], self.tip
        while sha in self.graph:
            parents = self.graph[sha].parents
            if len(parents) != 1:
                return None
            chain.append(sha)
            sha = parents[0]
        return chain[::-1] if len(chain) == len(members) else None


def _check_lane(
    cfg: Config, wave: str, lp: LanePlan, head: str, lineage: Lineage | None, coord: Coord
) -> None:
    repo = cfg.main_checkout
    if lp.tip is None or lineage is None:
        raise BounceError("no-branch", [], f"the submitted commit of {lp.branch} is gone")
    # What lands is the branch's own commits replayed one by one: a branch without history
    # in common with main, or with a merge, would land something other than what it holds.
    chain = lineage.linear()
    if chain is None:
        shape = guard.unlandable(cfg, head, lp.tip, lp.branch)
        if shape is not None:
            raise BounceError(shape.code, [], f"{shape.message}: {shape.hint}")
        chain = git.commits_to_replay(repo, head, lp.tip)  # not expected: ask git itself
    missing = [sha for sha in chain if sha not in lineage.raw]
    if missing:
        raise BounceError("replay-failed", [], f"commit {missing[0][:12]} cannot be read")
    lp.commits = [lineage.raw[sha] for sha in chain]
    forged = [c.sha[:12] for c in reversed(lp.commits) if _lanes_keys(c.text)]
    if forged:
        raise BounceError(
            "forged-trailer",
            [],
            f"commit(s) {', '.join(forged)} carry Lanes-* trailers, which only the "
            "integrator writes (they would mark lanes integrated): reword them",
        )
    # Every commit the pass would land, not the net change: an edit put back by a later
    # commit would still land on main as it is. The paths of every commit were read with
    # the lane's commits; only a lane that changes a refused path, or a file the guard
    # judges by its content, is asked about again, through the guard itself.
    judged = set(guard._judged_by_content(cfg))
    paths = [p for sha in chain if sha in lineage.graph for p in lineage.graph[sha].paths]
    bad = (
        guard.lane_violations(cfg, head, lp.tip)
        if len(chain) != len(lineage.graph.keys() & set(chain))
        or judged.intersection(paths)
        or guard.violations(cfg, paths)
        else []
    )
    if bad:
        raise BounceError(
            "touches-contended-surface",
            sorted({v.path for v in bad}),
            "the branch changes files no lane may edit: "
            + "; ".join(guard.describe(v) for v in bad)
            + ". Rewrite its history so that no commit touches them (`lanes submit` prints "
            "the commands), and drop fragments instead",
        )
    try:
        found = fragments.read_all(coord.fragment_dir(wave, lp.lane))
    except BadInput as exc:
        raise BounceError(
            "bad-fragment", [Path(str(exc.extra.get("fragment", ""))).name], exc.message
        ) from None
    bumps = []
    for path, frag in found:
        lp.fragment_files.append(path.name)
        if isinstance(frag, ManifestFragment):
            for entry in frag.entries:
                lp.entry_fragment.setdefault(entry, path.name)
            lp.entries += [e for e in frag.entries if e not in lp.entries]
        elif isinstance(frag, VersionFragment):
            bumps.append(frag.bump)
        else:
            lp.patches.append((path.name, list(frag.patch)))
    lp.bump = version.largest(bumps)
    for wanted, what in ((lp.entries, "manifest"), (lp.bump, "version"), (lp.patches, "deploy")):
        surface = cfg.surfaces.of(what)
        if wanted and not surface.active:
            raise BounceError(
                "bad-fragment",
                [],
                f"a {what} fragment, but the {what} surface is {surface.status}: {surface.origin}",
            )


def _lanes_keys(message: str) -> bool:
    return any(line.startswith("Lanes-") and ": " in line for line in message.splitlines())


def seen_by(repo: Path, tip: str) -> Callable[[str], bool]:
    """Whether the lane's branch already contains a landed commit (it saw that change)."""
    return lambda sha: git.is_ancestor(repo, sha, tip)


# -- applying a lane's fragments -------------------------------------------------------


@dataclass
class LaneChange:
    files: dict[str, str]  # path -> new text, only the files that change
    entries: list[str]  # manifest entries added
    ops: list[PatchOp]  # deploy operations applied
    skipped: list[PatchOp]  # operations an earlier lane of the wave already applied


class Surfaces:
    """The manifest and deploy workflow as the pass has made them so far."""

    def __init__(
        self, cfg: Config, read_text: Callable[[str], str | None], earlier: list[AppliedOp]
    ) -> None:
        s = cfg.surfaces
        self.cfg = cfg
        self.manifest_path = s.manifest.path if s.manifest.active else None
        self.deploy_path = s.deploy.workflow if s.deploy.active else None
        self.manifest_text = (read_text(self.manifest_path) or "") if self.manifest_path else ""
        self.deploy_text = read_text(self.deploy_path) if self.deploy_path else None
        self.applied = list(earlier)
        self._checked: dict[str, list[str]] = {}  # deploy texts -> the gate's problems

    def change_for(self, lp: LanePlan, present: set[str], saw: Callable[[str], bool]) -> LaneChange:
        """What the lane's fragments do, given the entries present at the lane's head and
        whether the lane's branch already contains a given landed commit. Raises
        BounceError; changes nothing until `accept`."""
        change = LaneChange({}, [], [], [])
        if lp.entries and self.manifest_path:
            missing = [e for e in lp.entries if e not in present]
            if missing:
                where = self.cfg.entries_dir()
                asked_in = sorted({lp.entry_fragment.get(e, "?") for e in missing})
                raise BounceError(
                    "missing-entry",
                    [posixpath.join(where, e) for e in missing],
                    f"manifest entries name files that do not exist in {where}/: "
                    + ", ".join(missing)
                    + f" (asked in {', '.join(asked_in)}): commit the files, or take the "
                    "fragment back with `lanes fragment withdraw NAME`",
                )
            before = set(manifest.entries(self.manifest_text))
            text = manifest.add_entries(self.manifest_text, lp.entries)
            change.entries = [e for e in lp.entries if e not in before]
            if text != self.manifest_text:
                change.files[self.manifest_path] = text
        if lp.patches and self.deploy_path:
            change.files.update(self._deploy(lp, saw, change))
        return change

    def _deploy(
        self, lp: LanePlan, saw: Callable[[str], bool], change: LaneChange
    ) -> dict[str, str]:
        assert self.deploy_path is not None
        if self.deploy_text is None:
            raise BounceError(
                "bad-fragment", [self.deploy_path], f"{self.deploy_path} does not exist on main"
            )
        text = self.deploy_text
        for name, ops in lp.patches:
            keep = []
            for op in ops:
                if self._already_done(lp, op, saw):
                    change.skipped.append(op)
                else:
                    keep.append(op)
            try:
                text = deploy.apply(text, keep)
            except BadInput as exc:
                raise BounceError("bad-fragment", [name], f"{name}: {exc.message}") from None
            except (ValueError, TypeError, RecursionError, UnicodeError) as exc:
                # Whatever a lane's fragment makes the YAML machinery do, it bounces that
                # lane; the pass goes on with the others.
                raise BounceError(
                    "bad-fragment", [name], f"{name}: the patch could not be applied ({exc})"
                ) from None
            change.ops += keep
        self._still_deploys(text, lp)
        return {self.deploy_path: text} if text != self.deploy_text else {}

    def _still_deploys(self, text: str, lp: LanePlan) -> None:
        """A lane's patch may not break what the gate proves of the deploy workflow (no
        jobs, no dispatch, a guard false under a dispatch): it bounces, with the reason."""
        before = set(self._problems(self.deploy_text or ""))
        broken = [p for p in self._problems(text) if p not in before]
        path = self.deploy_path or ""
        if broken:
            raise BounceError(
                "deploy-breaks-chain",
                [path],
                f"after this lane's deploy patch ({', '.join(n for n, _ in lp.patches)}): "
                + "; ".join(broken),
            )

    def _problems(self, text: str) -> list[str]:
        """What the gate would find wrong with the deploy workflow `text`, parsed once: the
        text after one lane is the text before the next (the cache is shared by copies)."""
        found = self._checked.get(text)
        if found is None:
            if len(self._checked) >= 8:
                self._checked.clear()
            path = self.deploy_path or ""
            found = workflows.deploy_problems(path, workflows.parse(path, text))
            self._checked[text] = found
        return found

    def _already_done(self, lp: LanePlan, op: PatchOp, saw: Callable[[str], bool]) -> bool:
        """True when an earlier lane applied this very operation; BounceError when an
        earlier lane the branch has not seen touched the same path differently."""
        done = False
        for prior in self.applied:
            if prior.lane == lp.lane:
                continue
            if op.op == "add" and op.path.endswith("/-") and prior.op.to_json() == op.to_json():
                return True  # the same element appended by two lanes lands once
            if not deploy.conflict(op, prior.op):
                continue
            if prior.commit and saw(prior.commit):
                continue  # the lane was written on top of that change
            if prior.op.to_json() == op.to_json():
                done = True
                continue
            raise BounceError(
                "deploy-conflict",
                [self.deploy_path or ""],
                f"{op.op} {op.path} conflicts with lane {prior.lane} "
                f"({prior.op.op} {prior.op.path}), integrated before it",
            )
        return done

    def copy(self) -> Surfaces:
        """The same state, apart: a stack keeps one per lane, to go back to."""
        other = copy.copy(self)
        other.applied = list(self.applied)
        return other

    def accept(self, lp: LanePlan, change: LaneChange) -> None:
        if self.manifest_path in change.files:
            self.manifest_text = change.files[self.manifest_path]
        if self.deploy_path in change.files:
            self.deploy_text = change.files[self.deploy_path]
        self.applied += [AppliedOp(lp.lane, "", op) for op in change.ops]


def _main_version(cfg: Config, head: str) -> str:
    """The one version main's version files carry at `head`. Files that disagree make main
    unfit to integrate onto: bad input (exit 2, like no-main), not a bounce (exit 4)."""
    from lanes.errors import Refused

    try:
        return version.common(version_texts(cfg, head))
    except Refused as exc:
        if exc.code != "version-mismatch":
            raise
        raise BadInput(
            "main-versions-disagree",
            f"on {cfg.main}, {exc.message}",
            hint=f"make them carry the same version on {cfg.main} (one commit by hand), "
            "then rerun lanes integrate",
            **exc.extra,
        ) from None
