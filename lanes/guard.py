"""The guard: which paths of a lane's branch no lane may change, and what to do instead.

One rule, used by `lanes submit`, the integrator's plan and dry run, and the gate: a path
is refused when it is a contended surface (written or discovered, and every candidate of
an ambiguous one), `lanes.toml`, or matched by a `protected` glob. It is applied to every
commit the pass would land, not only to the branch's net change: a commit that edits
server.json and a later one that puts it back would otherwise put the first on `main`,
its version files disagreeing.
"""

from __future__ import annotations

from dataclasses import dataclass

from lanes import git
from lanes.config import Config
from lanes.surfaces import deploy, manifest, protected, version


@dataclass(frozen=True)
class Violation:
    path: str
    surface: str  # manifest, version, deploy, config or protected
    instead: str  # what to do instead
    commits: tuple[tuple[str, str], ...] = ()  # (sha, subject) of the commits changing it


@dataclass(frozen=True)
class Touch:
    """A commit the pass would land that changes refused paths."""

    sha: str
    subject: str
    paths: list[str]


def violations(cfg: Config, changed: list[str]) -> list[Violation]:
    """Which changed paths are contended surfaces or protected, and the fragment to use."""
    s = cfg.surfaces
    m, v, d = s.manifest, s.version, s.deploy
    manifests = {m.path} if m.active else set(m.candidates)
    workflows = {d.workflow} if d.active else set(d.candidates)
    found = []
    for path in changed:
        if path in manifests:
            found.append(Violation(path, manifest.KIND, manifest.INSTEAD))
        elif v.active and path in v.files:
            found.append(Violation(path, version.KIND, version.INSTEAD))
        elif path in workflows:
            found.append(Violation(path, deploy.KIND, deploy.INSTEAD))
        elif path == protected.CONFIG_FILE:
            found.append(Violation(path, protected.CONFIG_KIND, protected.INSTEAD))
        elif any(protected.is_protected(path, glob) for glob in cfg.settings.protected):
            found.append(Violation(path, protected.KIND, protected.INSTEAD))
    return found


def touching_commits(cfg: Config, onto: str, tip: str) -> list[Touch]:
    """Every commit the pass would replay to bring `tip` onto `onto` (exactly what
    `git.commits_to_replay` picks: the non-merge commits of `onto..tip`, oldest first) that
    changes a refused path, with those paths. One `git log`, however many commits."""
    found = []
    for commit in git.replayed_changes(cfg.main_checkout, onto, tip):
        refused = violations(cfg, commit.paths)
        if refused:
            found.append(Touch(commit.sha, commit.subject, [v.path for v in refused]))
    return found


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
    found = []
    merges: list[tuple[str, str]] | None = None
    for v in violations(cfg, [*by_path, *net]):
        if v.path in by_path:
            commits = by_path[v.path]
        else:
            if merges is None:
                merges = git.merge_commits(repo, onto, tip)
            commits = merges
        found.append(Violation(v.path, v.surface, v.instead, tuple(commits)))
    return found


def branch_violations(cfg: Config, branch: str) -> list[Violation]:
    """The branch's refused paths, in every commit the pass would land from it onto `main`."""
    repo = cfg.main_checkout
    base = git.merge_base(repo, cfg.main, branch)
    found = _lane_violations(cfg, cfg.main, branch, base)
    return [_exact(cfg, base, branch, v) for v in found] if base else found


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
