"""The guard: which paths of a lane's branch no lane may change, and what to do instead.

One rule, used by `lanes submit`, the integrator's plan and dry run, and the gate: a path
is refused when it is a contended surface (written or discovered, and every candidate of
an ambiguous one), `lanes.toml`, or matched by a `protected` glob.
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


def branch_violations(cfg: Config, branch: str) -> list[Violation]:
    """The branch's refused paths, since it left `main`."""
    repo = cfg.main_checkout
    base = git.merge_base(repo, cfg.main, branch)
    if base is None:
        return []
    return [
        _exact(cfg, base, branch, v) for v in violations(cfg, git.changed_paths(repo, base, branch))
    ]


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
    return Violation(found.path, found.surface, "lanes fragment manifest " + " ".join(added))
