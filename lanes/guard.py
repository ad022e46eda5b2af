"""The guard: which paths of a lane's branch no lane may change, and what to do instead.

One rule, used by `lanes submit`, the integrator's plan and dry run, and the gate: a path
is refused when it is a contended surface (written or discovered, and every candidate of
an ambiguous one), `lanes.toml`, the inbox or anything under it, a `.gitattributes`, or
matched by a `protected` glob (lanes/surfaces/protected.py says why, and how look-alikes
are caught); a commit that changes the `[tool.lanes]` table of `pyproject.toml` is refused
too. It is applied to every commit the pass would land, not only to the branch's net
change: a commit that edits server.json and a later one that puts it back would otherwise
put the first on `main`, its version files disagreeing.

What the pass lands is the branch's non-merge commits, replayed one by one: a branch with
a merge commit, or with no history in common with `main`, would land something other than
what it holds, so it is refused whole (`unlandable`, docs/decisions.md D34).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from lanes import git
from lanes.config import Config
from lanes.errors import Refused
from lanes.surfaces import deploy, manifest, protected, required, version
from lanes.surfaces.required import RequiredSpec


@dataclass(frozen=True)
class Violation:
    path: str
    surface: str  # manifest, version, deploy, config, inbox, attributes or protected
    instead: str  # what to do instead
    commits: tuple[tuple[str, str], ...] = ()  # (sha, subject) of the commits changing it


@dataclass(frozen=True)
class Touch:
    """A commit the pass would land that changes refused paths."""

    sha: str
    subject: str
    paths: list[str]


@dataclass(frozen=True)
class Unlandable:
    """A branch the pass cannot land as it is, whatever its files: why, and what to do."""

    code: str  # orphan-branch or lane-has-merge (error codes and bounce reasons)
    message: str
    hint: str
    commits: tuple[tuple[str, str], ...] = ()  # (sha, subject): the merge commits

    def refusal(self, prefix: str = "") -> Refused:
        """The error `lanes submit` raises (exit 4), its message after `prefix`."""
        commits = [{"sha": sha, "subject": subject} for sha, subject in self.commits]
        message = prefix + self.message
        if self.code == "orphan-branch":
            return Refused("orphan-branch", message, hint=self.hint)
        return Refused("lane-has-merge", message, hint=self.hint, merges=commits)


def _rules(cfg: Config) -> dict[str, protected.Rule]:
    s = cfg.surfaces
    m, v, d = s.manifest, s.version, s.deploy
    rules: dict[str, protected.Rule] = {}
    for path in [m.path] if m.active else list(m.candidates):
        rules.setdefault(path, protected.Rule(manifest.KIND, manifest.INSTEAD))
    for path in v.files if v.active else ():
        rules.setdefault(path, protected.Rule(version.KIND, version.INSTEAD))
    for path in [*([d.workflow] if d.active else d.candidates), *d.runners_up]:
        rules.setdefault(path, protected.Rule(deploy.KIND, deploy.INSTEAD))
    rules.setdefault(
        protected.CONFIG_FILE, protected.Rule(protected.CONFIG_KIND, protected.INSTEAD)
    )
    for path in protected.SETUP_FILES:
        rules.setdefault(path, protected.Rule(protected.SETUP_KIND, protected.SETUP_INSTEAD))
    return rules


_TOOL_LANES = protected.Rule(protected.CONFIG_KIND, protected.TOOL_LANES_INSTEAD)
_REQUIRED = protected.Rule(
    "required",
    "nothing: the required-migrations list is what the gate proves the manifest against "
    "(RC3); ask the operator to change it (the rest of the file is yours)",
)


def violations(cfg: Config, changed: list[str]) -> list[Violation]:
    """Which changed paths are contended surfaces or protected, and the fragment to use."""
    rules = _rules(cfg)
    inbox = PurePosixPath(cfg.settings.inbox).as_posix()
    lookalikes = {protected.PYPROJECT: _TOOL_LANES}
    found = []
    for path in changed:
        rule = protected.match(path, rules, inbox, cfg.settings.protected, lookalikes)
        if rule is not None:
            found.append(Violation(path, rule.kind, rule.instead))
    return found


def touching_commits(cfg: Config, onto: str, tip: str) -> list[Touch]:
    """Every commit the pass would replay to bring `tip` onto `onto` (exactly what
    `git.commits_to_replay` picks: the non-merge commits of `onto..tip`, oldest first) that
    changes a refused path, with those paths. One `git log`, however many commits, and one
    `git cat-file` for the commits that change pyproject.toml."""
    commits = git.replayed_changes(cfg.main_checkout, onto, tip)
    judged = {
        path: _content_changed(cfg, path, reader, [c.sha for c in commits if path in c.paths])
        for path, (reader, _) in _judged_by_content(cfg).items()
    }
    found = []
    for commit in commits:
        refused = [v.path for v in violations(cfg, commit.paths)]
        refused += [p for p, shas in judged.items() if commit.sha in shas and p not in refused]
        if refused:
            found.append(Touch(commit.sha, commit.subject, refused))
    return found


Reader = Callable[[bytes | None], Any]


def _judged_by_content(cfg: Config) -> dict[str, tuple[Reader, protected.Rule]]:
    """Files a lane may edit, but not in the part lanes reads: the `[tool.lanes]` table of
    pyproject.toml (the rules), and the required-migrations list (what RC3 is proved
    against: a lane shortening it would make the gate pass a manifest that lacks one)."""
    judged: dict[str, tuple[Reader, protected.Rule]] = {
        protected.PYPROJECT: (_tool_lanes, _TOOL_LANES)
    }
    m = cfg.surfaces.manifest
    specs = [m.required] if m.required is not None else list(m.required_candidates)
    for spec in specs if m.status != "off" else []:
        judged.setdefault(spec.file, (_reads_list(spec), _REQUIRED))
    return judged


def _reads_list(spec: RequiredSpec) -> Reader:
    return lambda blob: _required_list(spec, blob)


def _content_changed(cfg: Config, path: str, reader: Reader, shas: list[str]) -> set[str]:
    """The commits (each with one parent, as every replayed commit has) after which
    `reader` reads `path` otherwise than in their parent (a file that no longer reads is a
    change too)."""
    if not shas:
        return set()
    specs = [f"{rev}:{path}" for sha in shas for rev in (f"{sha}^", sha)]
    blobs = git.blobs_at(cfg.main_checkout, specs)
    changed = set()
    for i, sha in enumerate(shas):
        before, after = (reader(blobs[2 * i]), reader(blobs[2 * i + 1]))
        if before != after and not (before is _BROKEN and after is _BROKEN):
            changed.add(sha)
    return changed


def _required_list(spec: RequiredSpec, blob: bytes | None) -> Any:
    from lanes.errors import LanesError

    if blob is None:
        return None
    try:
        return required.read(spec, blob.decode("utf-8"))
    except (LanesError, UnicodeDecodeError):
        return _BROKEN


_BROKEN: Any = object()  # a pyproject.toml that is not valid TOML (UTF-8)


def _tool_lanes(blob: bytes | None) -> Any:
    if blob is None:
        return None
    try:
        tool = tomllib.loads(blob.decode("utf-8")).get("tool")
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return _BROKEN
    return tool.get("lanes") if isinstance(tool, dict) else None


def lane_violations(cfg: Config, onto: str, tip: str) -> list[Violation]:
    """The refused paths of what `tip` would land onto `onto`, each with the commits that
    change it: every replayed commit is judged on its own, so a commit that edits a file
    and a later one that puts it back are both named. The net change since the fork point
    is judged too: a path changed only there was changed by a merge commit (the replay
    skips merges, not what they bring), and is named with the lane's merges."""
    return _lane_violations(cfg, onto, tip, git.merge_base(cfg.main_checkout, onto, tip))


def _lane_violations(cfg: Config, onto: str, tip: str, base: str | None) -> list[Violation]:
    repo = cfg.main_checkout
    by_path: dict[str, list[tuple[str, str]]] = {}
    for touch in touching_commits(cfg, onto, tip):
        for path in touch.paths:
            by_path.setdefault(path, []).append((touch.sha, touch.subject))
    net = [p for p in git.changed_paths(repo, base, tip) if p not in by_path] if base else []
    judged = _judged_by_content(cfg)
    found = []
    for path, commits in by_path.items():
        rule = judged[path][1] if path in judged else _TOOL_LANES
        [v] = violations(cfg, [path]) or [Violation(path, rule.kind, rule.instead)]
        found.append(Violation(v.path, v.surface, v.instead, tuple(commits)))
    merges: list[tuple[str, str]] | None = None
    for v in violations(cfg, net):
        if merges is None:
            merges = git.merge_commits(repo, onto, tip)
        found.append(Violation(v.path, v.surface, v.instead, tuple(merges)))
    return found + _rediscovered(cfg, tip)


_DISCOVERY = protected.Rule(
    "discovery",
    "nothing: the branch changes which files lanes guards and checks (a new deploy "
    "workflow, manifest or required list that discovery would find); ask the operator to "
    "land it, or to name the surface in lanes.toml",
)


def _rediscovered(cfg: Config, tip: str) -> list[Violation]:
    """What discovery settles on `main` is what every lane is judged by: a branch whose
    tip would make it settle otherwise (a look-alike required list, a second deploy
    workflow that ties) could move the rules for the lanes after it. Only sections left
    to discovery can move; a written one is taken as written."""
    from lanes import discover

    s = cfg.settings
    if s.manifest is not None and s.version is not None and s.deploy is not None:
        return []
    before = discover.watched(cfg.surfaces)
    after = discover.watched(discover.resolve_at(cfg, tip, tip[:12]))
    moved = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    return [Violation(p.split(":")[0], _DISCOVERY.kind, _DISCOVERY.instead) for p in moved]


def branch_violations(cfg: Config, branch: str) -> list[Violation]:
    """The branch's refused paths, in every commit the pass would land from it onto `main`."""
    repo = cfg.main_checkout
    base = git.merge_base(repo, cfg.main, branch)
    found = _lane_violations(cfg, cfg.main, branch, base)
    return [_exact(cfg, base, branch, v) for v in found] if base else found


def unlandable(cfg: Config, onto: str, tip: str, branch: str) -> Unlandable | None:
    """Why the pass could not land `tip` onto `onto` as the branch holds it, or None.

    A branch with no history in common with `onto` (`git checkout --orphan`, a branch
    force-moved onto unrelated commits) would be replayed from its root commit, its whole
    tree as one change. A merge commit is never replayed, and what it brings is replayed
    commit by commit in some order: not what the branch holds, and an agent's conflict
    resolution in the merge would be lost. Both are refused; a rebase makes either right.
    """
    repo = cfg.main_checkout
    main = cfg.main
    if git.merge_base(repo, onto, tip) is None:
        if git.rev_parse(repo, tip) is None or git.rev_parse(repo, onto) is None:
            return None  # nothing to judge: the caller says what is missing
        return Unlandable(
            "orphan-branch",
            f"{branch} shares no history with {main} (made with `git checkout --orphan`, or "
            "moved onto unrelated commits): a lane branches from main, and the pass would "
            "land its first commit as a whole new tree",
            f"put the work back on top of {main}: `git rebase --root --onto {main}` in the "
            "lane's worktree (or cherry-pick its commits onto a branch from main), then "
            "submit again",
        )
    merges = git.merge_commits(repo, onto, tip)
    if merges:
        named = ", ".join(f"{sha[:12]} {subject!r}" for sha, subject in merges)
        return Unlandable(
            "lane-has-merge",
            f"{branch} holds merge commit(s): {named}; the pass lands a lane's own commits "
            "one by one and never a merge, so what would land is not what the branch holds",
            f"rebase instead of merging: `git rebase {main}` in the lane's worktree replays "
            "your commits on top of it without the merges, then submit again",
            tuple(merges),
        )
    return None


def describe(found: Violation) -> str:
    """'server.json (version), changed in 1a2b3c4d5e6f "edit", ...': for messages."""
    where = ", ".join(f"{sha[:12]} {subject!r}" for sha, subject in found.commits)
    return f"{found.path} ({found.surface})" + (f", changed in {where}" if where else "")


def _exact(cfg: Config, base: str, branch: str, found: Violation) -> Violation:
    """For a manifest edit, the fragment that asks for exactly the entries it added."""
    if found.surface != manifest.KIND:
        return found
    before, after = (
        manifest.entries(git.show_file(cfg.main_checkout, rev, found.path) or "")
        for rev in (base, branch)
    )
    added = [e for e in after if e not in before]
    if not added:
        return found
    instead = "lanes fragment manifest " + " ".join(added)
    return Violation(found.path, found.surface, instead, found.commits)
