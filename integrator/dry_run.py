"""`lanes integrate --dry-run`: the plan and what the pass would do, changing nothing.

Each lane is predicted with `git merge-tree --write-tree` against a simulated integration
head, and judged by the same `plan.Surfaces` as the real pass: no ref, worktree, inbox file or
ledger line changes; only unreachable objects are written.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from integrator import plan
from lanes import git
from lanes.config import Config
from lanes.surfaces import version


@dataclass(frozen=True)
class Prediction:
    lane: str
    agent: str
    outcome: str  # "land" or "bounce"
    commits: int  # what the lane's work lands as: its commits, or 1 with land = "squash"
    fragments: list[str]
    entries: list[str] = field(default_factory=list)
    bump: str | None = None
    ops: list[str] = field(default_factory=list)
    reason: str = ""
    files: list[str] = field(default_factory=list)
    message: str = ""
    own_commits: int = 0  # the lane's own commits the pass would replay


@dataclass(frozen=True)
class DryRun:
    wave: str
    head: str
    land: str  # "replay" or "squash"
    lanes: list[Prediction]
    manifest_added: list[str]
    version: str | None  # now
    version_after: str | None
    version_bump: str | None
    deploy_diff: str
    tests: str

    def to_json(self) -> dict[str, object]:
        return {"dry_run": True, **self.__dict__, "lanes": [p.__dict__ for p in self.lanes]}


def predict(cfg: Config, wave: str) -> DryRun:
    """The plan and what it would do, predicted with `git merge-tree --write-tree`: no ref,
    worktree, inbox file or ledger line changes (it only adds unreachable objects)."""
    import difflib

    the_plan = plan.read(cfg, wave)
    repo = cfg.main_checkout
    surfaces = plan.Surfaces(
        cfg, lambda path: git.show_file(repo, the_plan.head, path), the_plan.earlier_ops
    )
    deploy_before = surfaces.deploy_text or ""
    sim = the_plan.head
    found: list[Prediction] = []
    added: list[str] = []
    squash = cfg.settings.land == "squash"
    for lp in the_plan.lanes:
        own = len(git.commits_to_replay(repo, the_plan.head, lp.tip)) if lp.tip else 0
        try:
            if lp.problem is not None:
                raise plan.BounceError(lp.problem.reason, lp.problem.files, lp.problem.message)
            assert lp.tip is not None
            clean, tree, conflicted = git.merge_tree(repo, sim, lp.tip)
            if not clean:
                raise plan.BounceError(
                    "conflict", conflicted, f"predicted conflict in {', '.join(conflicted)}"
                )
            present = set(git.list_files(repo, tree, cfg.entries_dir()) or [])
            change = surfaces.change_for(lp, present, plan.seen_by(repo, lp.tip))
        except plan.BounceError as exc:
            found.append(
                Prediction(
                    lp.lane,
                    lp.agent,
                    "bounce",
                    own,
                    lp.fragment_files,
                    reason=exc.reason,
                    files=exc.files,
                    message=exc.message,
                    own_commits=own,
                )
            )
            continue
        surfaces.accept(lp, change)
        added += change.entries
        sim = git.commit_tree(repo, tree, [sim, lp.tip], "lanes dry run: a simulated landing\n")
        found.append(
            Prediction(
                lp.lane,
                lp.agent,
                "land",
                1 if squash else own,
                lp.fragment_files,
                change.entries,
                lp.bump,
                [f"{op.op} {op.path}" for op in change.ops],
                own_commits=own,
            )
        )
    landing = {p.lane for p in found if p.outcome == "land"}
    requested = version.largest(
        [lp.bump for lp in the_plan.lanes if lp.lane in landing and lp.bump]
    )
    step = plan.version_step(the_plan.applied_bump, requested)
    after = version.bumped(the_plan.version, step) if step and the_plan.version else None
    diff = difflib.unified_diff(
        deploy_before.splitlines(keepends=True),
        (surfaces.deploy_text or "").splitlines(keepends=True),
        fromfile=f"a/{surfaces.deploy_path}",
        tofile=f"b/{surfaces.deploy_path}",
    )
    return DryRun(
        wave,
        the_plan.head,
        cfg.settings.land,
        found,
        added,
        the_plan.version,
        after,
        f"{step} {the_plan.version} -> {after}" if after else None,
        "".join(diff),
        "not run in a dry run" if cfg.settings.test_command else "no test_command configured",
    )
