"""Handing a lane to the integrator, refusing one that edited a contended file itself."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

from lanes import claims, fragments, git, state
from lanes.config import Config
from lanes.errors import Refused

CONFIG_FILE = "lanes.toml"


@dataclass(frozen=True)
class Violation:
    path: str
    surface: str  # manifest, version, deploy, config or protected
    instead: str  # what to do instead


def violations(cfg: Config, changed: list[str]) -> list[Violation]:
    """Which changed paths are contended surfaces or protected, and the fragment to use."""
    s = cfg.settings
    found = []
    for path in changed:
        if s.manifest and path == s.manifest.path:
            found.append(Violation(path, "manifest", "lanes fragment manifest ENTRY..."))
        elif s.version and path in s.version.files:
            found.append(
                Violation(
                    path,
                    "version",
                    "lanes fragment version major|minor|patch for a version change; any "
                    "other edit of this file: ask the operator",
                )
            )
        elif s.deploy and path == s.deploy.workflow:
            found.append(Violation(path, "deploy", "lanes fragment deploy PATCH_FILE"))
        elif path == CONFIG_FILE:  # the rules a lane is judged by (its test_command...)
            found.append(Violation(path, "config", "nothing: ask the operator to change it"))
        elif any(is_protected(path, glob) for glob in s.protected):
            found.append(Violation(path, "protected", "nothing: ask the operator to change it"))
    return found


def is_protected(path: str, glob: str) -> bool:
    """`glob` (fnmatch: `*` crosses `/`) matches the path or a folder holding it, the way
    people write globs for git: `infra` and `infra/` hold `infra/main.tf`, and a leading
    `**/` also matches at the top (`**/Dockerfile` holds `Dockerfile`)."""
    pattern = glob.strip("/")
    patterns = {pattern, pattern[3:]} if pattern.startswith("**/") else {pattern}
    parts = path.split("/")
    held_by = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(fnmatchcase(p, g) for p in held_by for g in patterns)


def branch_violations(cfg: Config, branch: str) -> list[Violation]:
    repo = cfg.main_checkout
    base = git.merge_base(repo, cfg.main, branch)
    if base is None:
        return []
    return [
        _exact(cfg, base, branch, v) for v in violations(cfg, git.changed_paths(repo, base, branch))
    ]


def _exact(cfg: Config, base: str, branch: str, found: Violation) -> Violation:
    """For a manifest edit, the fragment that asks for exactly the entries it added."""
    if found.surface != "manifest":
        return found
    before, after = (
        _entries(git.show_file(cfg.main_checkout, rev, found.path)) for rev in (base, branch)
    )
    added = [e for e in after if e not in before]
    if not added:
        return found
    return Violation(found.path, found.surface, "lanes fragment manifest " + " ".join(added))


def _restore_commands(cfg: Config, base: str, paths: list[str]) -> list[str]:
    """Shell commands, run in the lane's worktree, that undo the branch's change to `paths`:
    a file that existed at `base` is checked out from it, one the branch added is removed."""
    import shlex

    there = [p for p in paths if git.show_file(cfg.main_checkout, base, p) is not None]
    added = [p for p in paths if p not in there]
    commands = []
    if there:
        commands.append(f"git checkout {base[:12]} -- " + " ".join(map(shlex.quote, there)))
    if added:
        commands.append("git rm -q -- " + " ".join(map(shlex.quote, added)))
    commands.append("git commit -q -m 'leave contended files alone'")
    return commands


def _entries(text: str | None) -> list[str]:
    """The manifest's entries, read by the integrator's own reader so the two never differ
    (a pure text module: importing it loads nothing else of the integrator)."""
    from lanes.surfaces import manifest

    return manifest.entries(text or "")


@dataclass(frozen=True)
class SubmitResult:
    wave: str
    lane: str
    agent: str
    branch: str
    head: str
    commits: int
    fragments: int
    warnings: list[str]


def submit(cfg: Config, wave: str, lane: str) -> SubmitResult:
    claims.held(cfg, wave, lane)  # not-held before any lock file is made
    # Under the lane's lock: gc, reaping a stale lane, must see the submit or precede it.
    with claims.lane_lock(cfg, wave, lane):
        return _submit(cfg, wave, lane)


def _submit(cfg: Config, wave: str, lane: str) -> SubmitResult:
    claim_dir, record = claims.held(cfg, wave, lane)
    state.require_open(cfg, wave, lane, "be submitted")
    log = claims.ledger(cfg, wave)
    found = branch_violations(cfg, record.branch)
    if found:
        log.append(
            "submit-refused",
            lane,
            record.agent,
            files=[v.path for v in found],
            instead=[v.instead for v in found],
        )
        detail = "; ".join(f"{v.path} ({v.surface}): use {v.instead}" for v in found)
        base = git.merge_base(cfg.main_checkout, cfg.main, record.branch) or ""
        restore = _restore_commands(cfg, base, [v.path for v in found])
        raise Refused(
            "touches-contended-surface",
            f"lane {wave}/{lane} changes files no lane may edit: {detail}",
            hint=f"put them back as they are where your branch leaves {cfg.main}: "
            + " && ".join(restore)
            + ", then drop fragments instead",
            files=[{"path": v.path, "surface": v.surface, "instead": v.instead} for v in found],
            compared_with=base,
            restore=restore,
        )
    frags = fragments.read_all(claim_dir / claims.FRAGMENTS)  # refuse a corrupt fragment now
    head = git.rev_parse(cfg.main_checkout, record.branch) or ""
    ahead = git.commits_ahead(cfg.main_checkout, cfg.main, record.branch)
    asked = [e for _, f in frags if isinstance(f, fragments.ManifestFragment) for e in f.entries]
    warnings = fragments.unmet_entries(cfg, record.branch, asked)
    log.append("submit", lane, record.agent, head=head, commits=ahead, fragments=len(frags))
    return SubmitResult(wave, lane, record.agent, record.branch, head, ahead, len(frags), warnings)
