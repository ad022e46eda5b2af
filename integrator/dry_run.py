"""`lanes integrate --dry-run`: the plan and what the pass would do, changing nothing.

Each lane is landed exactly as the pass lands it (integrator/land.py: its commits replayed
with merge-tree, its fragments judged by the same `plan.Surfaces`), on a simulated
integration head, in a folder of the system's temporary directory: no ref, worktree, inbox
file, ledger line or lock changes; only unreachable objects are written. Tests are not run;
the stacks the pass would test are shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from integrator import batches, land, plan
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
    batch: int = 32
    test_jobs: int = 1
    batches: list[list[str]] = field(default_factory=list)  # the stacks a test would run on

    def to_json(self) -> dict[str, object]:
        return {"dry_run": True, **self.__dict__, "lanes": [p.__dict__ for p in self.lanes]}


def predict(cfg: Config, wave: str) -> DryRun:
    """The plan and what it would do, each lane landed as the pass lands it: no ref,
    worktree, inbox file or ledger line changes (it only adds unreachable objects)."""
    import difflib

    from lanes.coord import for_config

    where = for_config(cfg)
    tip = where.fetch_main()  # remote: the plan is against the remote's main, ours untouched
    where.stage_wave(wave)
    the_plan = plan.read(cfg, wave, where, tip)
    found: list[Prediction] = []
    added: list[str] = []
    squash = cfg.settings.land == "squash"
    with land.Workspace(cfg, the_plan.head) as ws:
        lander = land.Lander(cfg, wave, ws)
        head = lander.head(the_plan.head)
        surfaces = plan.Surfaces(
            cfg, lambda path: lander.read_text(head.tree, path), the_plan.earlier_ops
        )
        deploy_before = surfaces.deploy_text or ""
        for lp in the_plan.lanes:
            own = len(lp.commits)
            try:
                if lp.problem is not None:
                    raise plan.BounceError(lp.problem.reason, lp.problem.files, lp.problem.message)
                landed = lander.land(head, lp, surfaces)
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
            surfaces.accept(lp, landed.change)
            added += landed.change.entries
            head = landed.head
            found.append(
                Prediction(
                    lp.lane,
                    lp.agent,
                    "land",
                    1 if squash else own,
                    lp.fragment_files,
                    landed.change.entries,
                    lp.bump,
                    [f"{op.op} {op.path}" for op in landed.change.ops],
                    own_commits=own,
                )
            )
    landing = [p.lane for p in found if p.outcome == "land"]
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
    testing = bool(cfg.settings.test_command)
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
        "not run in a dry run" if testing else "no test_command configured",
        cfg.settings.batch,
        cfg.settings.test_jobs,
        batches.planned(landing, cfg.settings.batch) if testing else [],
    )
