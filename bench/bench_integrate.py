"""Integration benchmark: `lanes integrate` against the raw git it stands on.

For N = 25, 50, 100 lanes, each with one commit and fragments (a manifest entry naming the
migration it adds, a patch bump, every fifth one a deploy step), a seed-shaped repository
is built in a temporary directory (not timed). Then, timed:
- lanes: one `lanes integrate WAVE --json` process (start-up, lock, plan, scratch
  worktree, one cherry-pick and one fragment commit per lane, the version bump, the
  compare-and-swap, the checkout, the ledger, the archive);
- git: the same landing done by hand with plain git in a copy of the repository: a detached
  worktree, then per lane `git cherry-pick` of its commit and `git commit -a` of the
  manifest line it asks for, then one version commit and `git update-ref`.
The ratio is lanes / git: what the bookkeeping and the checks cost on top of the git.

    .venv/bin/python bench/bench_integrate.py [--lanes 25 50 100]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from bench_claims import git_env  # noqa: E402  (a sibling module, found through sys.path above)

BIN = Path(sys.executable).parent
LANES = str(BIN / "lanes") if (BIN / "lanes").exists() else ""
WAVE = "b1"
SIZES = (25, 50, 100)


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def build(root: Path, n: int) -> Path:
    """A seed-shaped repository with `n` submitted lanes (in this process, not timed)."""
    from lanes import claims, config, fragments, scaffold, submit
    from lanes.surfaces import manifest as manifest_surface
    from lanes.surfaces import version as version_surface
    from lanes.surfaces.deploy import DeployFragment, PatchOp

    repo = scaffold.make_seed_repo(root / "jpcite", root / "wt")
    cfg = config.load(repo)
    for i in range(n):
        lane = f"lane-{i:03d}"
        worktree = Path(claims.claim(cfg, WAVE, lane, f"agent-{i}").worktree)
        entry = f"{300 + i}_{lane.replace('-', '_')}.sql"
        (worktree / "scripts" / "migrations" / entry).write_text(f"-- {lane}\n")
        (worktree / "src" / f"{lane.replace('-', '_')}.py").write_text(f"N = {i}\n")
        _git(worktree, "add", "--all")
        _git(worktree, "commit", "-q", "-m", f"{lane}: work")
        fragments.drop(cfg, WAVE, lane, manifest_surface.fragment([entry]))
        fragments.drop(cfg, WAVE, lane, version_surface.fragment("patch"))
        if i % 5 == 0:
            op = {
                "op": "add",
                "path": "/jobs/deploy/steps/-",
                "value": {"name": lane, "run": "true"},
            }
            fragments.drop(cfg, WAVE, lane, DeployFragment(patch=[PatchOp.model_validate(op)]))
        submit.submit(cfg, WAVE, lane)
    return repo


def time_lanes(repo: Path, env: dict[str, str]) -> float:
    command = [LANES] if LANES else [sys.executable, "-m", "lanes"]
    start = time.perf_counter()
    proc = subprocess.run(
        [*command, "integrate", WAVE, "--json"], cwd=repo, env=env, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"lanes integrate failed ({proc.returncode}): {proc.stderr}")
    return elapsed


def time_git(copy: Path, n: int, env: dict[str, str]) -> float:
    """The same landing, by hand, with plain git: what lanes stands on."""
    from lanes import scaffold

    def git(cwd: Path, *args: str) -> None:
        subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)

    tips = [_git(copy, "rev-parse", f"lanes/{WAVE}/lane-{i:03d}") for i in range(n)]
    old = _git(copy, "rev-parse", "main")
    scratch = copy.parent / "git-scratch"
    start = time.perf_counter()
    git(copy, "worktree", "add", "--quiet", "--detach", str(scratch), "main")
    manifest = scratch / scaffold.MANIFEST
    for i, tip in enumerate(tips):
        git(scratch, "cherry-pick", tip)
        with open(manifest, "a", encoding="utf-8") as fh:
            fh.write(f"{300 + i}_lane_{i:03d}.sql\n")
        git(scratch, "commit", "-q", "-a", "-m", f"land lane-{i:03d}")
    for name in ("pyproject.toml", "server.json"):
        path = scratch / name
        path.write_text(path.read_text().replace("0.3.5", "0.3.6", 1))
    git(scratch, "commit", "-q", "-a", "-m", "version")
    new = _git(scratch, "rev-parse", "HEAD")
    git(copy, "update-ref", "refs/heads/main", new, old)
    return time.perf_counter() - start


def measure(n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="lanes-bench-integrate-") as tmp:
        root = Path(tmp)
        (root / "home").mkdir()
        env = git_env(root / "home")
        saved = dict(os.environ)
        os.environ.update({k: v for k, v in env.items() if k.startswith("GIT_") or k == "HOME"})
        try:
            repo = build(root, n)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        copy = root / "copy"
        shutil.copytree(repo, copy, symlinks=True)
        git_seconds = time_git(copy, n, env)
        lanes_seconds = time_lanes(repo, env)
        landed = _git(repo, "log", "--format=%s", "--grep=^lanes: land ", "main").count("\n") + 1
        if landed != n:
            raise RuntimeError(f"{landed} of {n} lanes landed")
    return {
        "name": f"integrate {n} lanes (commit + manifest + version, 1 in 5 deploy)",
        "lanes": n,
        "lanes_seconds": round(lanes_seconds, 3),
        "git_seconds": round(git_seconds, 3),
        "ratio": round(lanes_seconds / git_seconds, 2),
        "per_lane_lanes_ms": round(1000 * lanes_seconds / n, 1),
        "per_lane_git_ms": round(1000 * git_seconds / n, 1),
    }


def main(sizes: tuple[int, ...] = SIZES) -> list[dict[str, Any]]:
    rows = []
    for n in sizes:
        print(f"integrate: building and integrating {n} lanes ...", file=sys.stderr, flush=True)
        rows.append(measure(n))
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lanes", type=int, nargs="+", default=list(SIZES))
    args = parser.parse_args()
    print(
        f"{'lanes':>5} {'lanes s':>9} {'git s':>9} {'ratio':>6} {'ms/lane':>8} {'git ms/lane':>11}"
    )
    for row in main(tuple(args.lanes)):
        print(
            f"{row['lanes']:>5} {row['lanes_seconds']:>9.3f} {row['git_seconds']:>9.3f} "
            f"{row['ratio']:>5.2f}x {row['per_lane_lanes_ms']:>8.1f} {row['per_lane_git_ms']:>11.1f}"
        )
