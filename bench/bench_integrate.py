"""Integration benchmarks: `lanes integrate` against the raw git it stands on, and test runs.

Landing, without a test command: for N = 25, 50, 100, 500 lanes, on a small seed-shaped
repository and on one with 20,000 more files, each lane one commit (a migration and a
source file; in the 20,000-file repository the source file goes into one of its 200
folders), either alone ("commit") or with fragments ("fragments": a manifest entry naming
its migration and a patch bump, and every fifth a deploy step). Timed, alternately:
- lanes: one `lanes integrate WAVE --json` process, start-up included;
- floor: the raw tree-level loop, from Python as lanes runs git: per lane
  `git merge-tree --write-tree HEAD LANE` and `git commit-tree`, then one `git update-ref`
  (no plan, no checks, no fragments, no ledger, no checkout).
The lanes are built without lanes (one `git fast-import` for their commits, their claim
directories and fragments written, their claim and submit rows appended): not timed.
After each run the repository is put back as it was built (main, refs, objects), so every
run lands on the same repository.

Testing: 24 lanes and a test command that sleeps, green or with one lane that breaks it,
with `batch = 32` against `batch = 1` (one test run per lane: what the pass did before),
and with two test jobs: test runs counted, wall time measured.

Where the time goes: one pass of 500 lanes with fragments on the 20,000-file repository,
in a process of its own that wraps the pass's steps in timers (each step's own time, its
callees' not counted twice), against the wall time of that process.

    .venv/bin/python bench/bench_integrate.py [--lanes 25 50 100 500] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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
LANES = [str(BIN / "lanes")] if (BIN / "lanes").exists() else [sys.executable, "-m", "lanes"]
SIZES = (25, 50, 100, 500)
BIG_DIRS, BIG_FILES_PER_DIR = 200, 100
TEST_LANES, TEST_SLEEP = 24, 0.5


def _git(cwd: Path, *args: str, stdin: bytes | None = None) -> str:
    return (
        subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, input=stdin)
        .stdout.decode()
        .strip()
    )


# -- repositories and lanes, built without lanes (not timed) -------------------------------


def make_repo(root: Path, big: bool) -> Path:
    from lanes import scaffold

    repo = scaffold.make_seed_repo(root / ("big" if big else "small") / "jpcite", root / "wt")
    if big:
        for d in range(BIG_DIRS):
            folder = repo / "src" / f"pkg{d:03d}"
            folder.mkdir(parents=True)
            for f in range(BIG_FILES_PER_DIR):
                text = "".join(f"# {d}/{f} line {n}\n" for n in range(1 + (d * f) % 12))
                (folder / f"mod{f:03d}.py").write_text(text, encoding="utf-8")
        _git(repo, "add", "--all")
        _git(repo, "commit", "-q", "-m", f"{BIG_DIRS * BIG_FILES_PER_DIR} files")
    _git(repo, "repack", "-adq")  # as a clone is
    _git(repo, "prune")
    return repo


def make_wave(repo: Path, wave: str, n: int, shape: str, big: bool, bad: int = -1) -> list[str]:
    """n submitted lanes of `wave`: their commits in one fast-import, their claims,
    fragments and submit rows written directly. Returns the lane tips."""
    from lanes import claims, config, fragments
    from lanes.surfaces import manifest as manifest_surface
    from lanes.surfaces import version as version_surface
    from lanes.surfaces.deploy import DeployFragment, PatchOp

    cfg = config.load(repo)
    main = _git(repo, "rev-parse", "main")
    stream = []
    for i in range(n):
        lane = f"{wave}-{i:03d}"
        migration = f"scripts/migrations/{300 + i}_{lane.replace('-', '_')}.sql"
        src = f"src/pkg{i % BIG_DIRS:03d}/lane_{lane}.py" if big else f"src/lane_{lane}.py"
        if i == bad:
            src = f"src/bad_{lane}.py"
        message = f"{lane}: work\n".encode()
        stream.append(
            f"commit refs/heads/lanes/{wave}/{lane}\ncommitter bench <bench@lanes.invalid> "
            f"{1_700_000_000 + i} +0000\ndata {len(message)}\n".encode()
            + message
            + f"from {main}\n".encode()
        )
        for path, text in ((migration, f"-- {lane}\n"), (src, f"N = {i}\n")):
            data = text.encode()
            stream.append(f"M 100644 inline {path}\ndata {len(data)}\n".encode() + data + b"\n")
        stream.append(b"\n")
    _git(repo, "fast-import", "--quiet", stdin=b"".join(stream))
    by_name = dict(
        line.split()
        for line in _git(
            repo,
            "for-each-ref",
            "--format=%(refname:short) %(objectname)",
            f"refs/heads/lanes/{wave}/",
        ).splitlines()
    )
    log = claims.ledger(cfg, wave)
    for i in range(n):
        lane = f"{wave}-{i:03d}"
        frag_dir = cfg.claim_dir(wave, lane) / claims.FRAGMENTS
        frag_dir.mkdir(parents=True)
        log.append("claim", lane, f"agent-{i}")
        if shape == "fragments":
            entry = f"{300 + i}_{lane.replace('-', '_')}.sql"
            fragments.write(frag_dir, manifest_surface.fragment([entry]))
            fragments.write(frag_dir, version_surface.fragment("patch"))
            if i % 5 == 0:
                op = {"op": "add", "path": "/jobs/deploy/steps/-", "value": {"name": lane}}
                fragments.write(frag_dir, DeployFragment(patch=[PatchOp.model_validate(op)]))
        log.append("submit", lane, f"agent-{i}", head=by_name[f"lanes/{wave}/{lane}"])
    return [by_name[f"lanes/{wave}/{wave}-{i:03d}"] for i in range(n)]


# -- timed --------------------------------------------------------------------------------


def time_lanes(repo: Path, wave: str, env: dict[str, str]) -> tuple[float, dict[str, Any]]:
    start = time.perf_counter()
    proc = subprocess.run(
        [*LANES, "integrate", wave, "--json"], cwd=repo, env=env, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 4):
        raise RuntimeError(f"lanes integrate failed ({proc.returncode}): {proc.stderr}")
    return elapsed, json.loads(proc.stdout)


def time_floor(repo: Path, tips: list[str], env: dict[str, str]) -> float:
    """The raw tree-level loop: merge-tree + commit-tree per lane, then one update-ref."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True
        ).stdout

    start = time.perf_counter()
    head = git("rev-parse", "main").strip()
    for i, tip in enumerate(tips):
        tree = git("merge-tree", "--write-tree", head, tip).split("\n", 1)[0]
        head = git("commit-tree", tree, "-p", head, "-m", f"land {i}").strip()
    git("update-ref", f"refs/heads/floor-{len(tips)}-{time.time_ns()}", head)
    return time.perf_counter() - start


def reset(repo: Path, base: str, wave: str) -> None:
    """Back to the repository as it was built: main at its first tip, the wave's branches
    and the floor's refs gone, their objects pruned, so that no run lands on a bigger
    repository (a longer manifest, a fuller migrations folder) than the one before."""
    _git(repo, "update-ref", "refs/heads/main", base)
    _git(repo, "reset", "-q", "--hard", base)
    refs = _git(repo, "for-each-ref", "--format=%(refname)", f"refs/heads/lanes/{wave}/")
    refs += "\n" + _git(repo, "for-each-ref", "--format=%(refname)", "refs/heads/floor-")
    stdin = "".join(f"delete {ref}\n" for ref in refs.split() if ref)
    _git(repo, "update-ref", "--stdin", stdin=stdin.encode())
    _git(repo, "reflog", "expire", "--expire=now", "--all")
    _git(repo, "prune", "--expire=now")


def landing(root: Path, env: dict[str, str], sizes: tuple[int, ...], repeats: int) -> list[Any]:
    rows = []
    for big in (False, True):
        repo = make_repo(root, big)
        base = _git(repo, "rev-parse", "main")
        files = int(_git(repo, "ls-files").count("\n")) + 1
        for shape in ("commit", "fragments"):
            for n in sizes:
                lanes_s, floor_s = [], []
                for r in range(repeats if n <= 100 else 1):
                    wave = f"{shape[0]}{n}r{r}"
                    print(f"integrate: {files} files, {n} lanes ({shape}) ...", file=sys.stderr)
                    tips = make_wave(repo, wave, n, shape, big)
                    floor_s.append(time_floor(repo, tips, env))
                    seconds, doc = time_lanes(repo, wave, env)
                    if len(doc["integrated"]) != n:
                        raise RuntimeError(f"{len(doc['integrated'])} of {n} lanes landed")
                    lanes_s.append(seconds)
                    reset(repo, base, wave)
                lanes_m, floor_m = statistics.median(lanes_s), statistics.median(floor_s)
                rows.append(
                    {
                        "repository": "20,000 files" if big else "small",
                        "files": files,
                        "shape": shape,
                        "lanes": n,
                        "runs": len(lanes_s),
                        "lanes_seconds": round(lanes_m, 3),
                        "floor_seconds": round(floor_m, 3),
                        "ratio": round(lanes_m / floor_m, 2),
                        "per_lane_lanes_ms": round(1000 * lanes_m / n, 2),
                        "per_lane_floor_ms": round(1000 * floor_m / n, 2),
                    }
                )
    return rows


def testing(root: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    """24 lanes, a test that sleeps; runs counted by the test itself, wall time measured."""
    repo = make_repo(root / "testing", big=False)
    rows = []
    runs = root / "test-runs"
    command = (
        f'echo x >> "{runs}"; sleep {TEST_SLEEP}; '
        'for f in src/bad_*.py; do [ -e "$f" ] && exit 1; done; exit 0'
    )
    text = (repo / "pyproject.toml").read_text(encoding="utf-8")
    text = text.replace('test_command = ""', f"test_command = {json.dumps(command)}")
    (repo / "pyproject.toml").write_text(text, encoding="utf-8")
    _git(repo, "commit", "-q", "-am", "ci: a test that sleeps")
    modes = [
        ("batch = 1", {"batch": 1, "test_jobs": 1}),
        ("batch = 32", {"batch": 32, "test_jobs": 1}),
        ("batch = 32, test_jobs = 2", {"batch": 32, "test_jobs": 2}),
    ]
    for case, bad in (("24 green lanes", -1), ("24 lanes, one breaks the test", 13)):
        for mode, settings in modes:
            wave = f"t{len(rows)}"
            print(f"integrate: {case}, {mode} ...", file=sys.stderr)
            make_wave(repo, wave, TEST_LANES, "commit", False, bad)
            _set(repo, settings)
            runs.unlink(missing_ok=True)
            seconds, doc = time_lanes(repo, wave, env)
            rows.append(
                {
                    "case": case,
                    "mode": mode,
                    "runs": len(runs.read_text().splitlines()),
                    "seconds": round(seconds, 2),
                    "landed": len(doc["integrated"]),
                    "bounced": [b["lane"] for b in doc["bounced"]],
                }
            )
    return rows


def _set(repo: Path, settings: dict[str, int]) -> None:
    text = (repo / "pyproject.toml").read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if not ln.startswith(("batch =", "test_jobs ="))]
    at = next(i for i, ln in enumerate(lines) if ln.startswith("test_command ="))
    lines[at + 1 : at + 1] = [f"{k} = {v}" for k, v in settings.items()]
    (repo / "pyproject.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    _git(repo, "commit", "-q", "-am", f"ci: {settings}")


# -- where the time goes ------------------------------------------------------------------

PROFILE = r"""
import json, sys, time
t0 = time.perf_counter()
from pathlib import Path
from integrator import checkout, integrate, land, plan, trailers
from lanes import config, git, ledger
from lanes.cli import integrate_cmd  # what the CLI imports too
imported = time.perf_counter() - t0
own, stack = {}, []

def timed(name, fn):
    def wrapper(*args, **kwargs):
        stack.append(0.0)
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent = time.perf_counter() - start
            inner = stack.pop()
            own[name] = own.get(name, 0.0) + spent - inner
            if stack:
                stack[-1] += spent
    return wrapper

for name, owner, attr in [
    ("plan: submitted lanes, their commits, the guard, fragments", plan, "read"),
    ("reconcile the ledger with main", integrate, "_reconcile"),
    ("merge-tree, one process per replayed commit", land.Workspace, "merge"),
    ("commit objects (replayed, trailers, bump)", git.ObjectStore, "commit"),
    ("fragments: the surfaces (manifest, deploy patches)", plan.Surfaces, "change_for"),
    ("fragments: their blobs and trees", land.Lander, "write_files"),
    ("trailers: the messages", trailers, "lane_message"),
    ("ledger rows (one append each)", ledger.Ledger, "append"),
    ("move main (update-ref)", git, "update_ref"),
    ("the user's checkout brought along", checkout, "bring_along"),
    ("archive the applied fragments", integrate, "_archive"),
    ("the workspace: main's .gitattributes, git processes", land.Workspace, "__init__"),
]:
    setattr(owner, attr, timed(name, getattr(owner, attr)))
cfg = config.load(Path(sys.argv[1]))
start = time.perf_counter()
result = integrate.integrate(cfg, sys.argv[2])
total = time.perf_counter() - start
print(json.dumps({"imported": imported, "total": total, "own": own,
                  "landed": len(result.integrated)}))
"""


def phases(root: Path, env: dict[str, str], n: int) -> dict[str, Any]:
    repo = make_repo(root / "phases", big=True)
    make_wave(repo, "p", n, "fragments", True)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", PROFILE, str(repo), "p"],
        cwd=repo,
        env={**env, "PYTHONPATH": str(HERE.parent)},
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"the profile failed: {proc.stderr}")
    doc = json.loads(proc.stdout)
    rows = [("interpreter start-up and imports", wall - doc["total"])]
    rows += sorted(doc["own"].items(), key=lambda kv: -kv[1])
    rows.append(("the rest (the pass's own Python: plan data, stacks, results)", 0.0))
    rows[-1] = (rows[-1][0], doc["total"] - sum(doc["own"].values()))
    return {
        "lanes": n,
        "landed": doc["landed"],
        "wall": round(wall, 3),
        "rows": [{"phase": name, "seconds": round(s, 3)} for name, s in rows],
    }


def main(sizes: tuple[int, ...] = SIZES, quick: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="lanes-bench-integrate-") as tmp:
        root = Path(tmp)
        (root / "home").mkdir()
        (root / "wt").mkdir()
        env = git_env(root / "home")
        # Bytecode cached as an installed lanes has it (this environment may say not to
        # write it; then every run would compile lanes first), away from the sources.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
        saved = dict(os.environ)
        os.environ.update({k: v for k, v in env.items() if k.startswith("GIT_") or k == "HOME"})
        warm = "import lanes.cli, lanes.cli.integrate_cmd, integrator.integrate, integrator.dry_run"
        subprocess.run([sys.executable, "-c", warm], env=env, check=True, cwd=HERE.parent)
        try:
            land_rows = landing(root, env, sizes, 1 if quick else 3)
            test_rows = testing(root, env)
            where = phases(root, env, max(sizes))
        finally:
            os.environ.clear()
            os.environ.update(saved)
    return {"landing": land_rows, "testing": test_rows, "phases": where}


# -- docs/benchmarks.md (bench/run.py puts this section in) --------------------------------

GOAL = 1.5  # lanes integrate / the raw tree-level loop, landing without a test command


def section(figures: dict[str, Any]) -> list[str]:
    out: list[str] = ["## Integration\n"]
    w = out.append
    rows = figures["landing"]
    plain = [r for r in rows if r["shape"] == "commit"]
    worst = max((r for r in plain if r["lanes"] >= 100), key=lambda r: r["ratio"], default=None)
    w(
        "Landing without a test command: one `lanes integrate WAVE --json` process (start-up "
        "included) against the raw tree-level loop it stands on, run from Python as lanes runs "
        "git: per lane `git merge-tree --write-tree HEAD LANE` and `git commit-tree`, then one "
        "`git update-ref` (no plan, no checks, no fragments, no trailers, no ledger, no "
        "checkout). Each lane is one commit (a migration and a source file; in the 20,000-file "
        "repository the source file goes into one of its 200 folders), alone (`commit`) or "
        "with fragments (`fragments`: a manifest entry and a patch bump each, a deploy step "
        "every fifth). The two run back to back on the same lanes, and the repository is "
        "put back as it was built after each run; the median of "
        f"{max(r['runs'] for r in rows)} runs up to 100 lanes, one run at 500. Building the "
        "lanes is not timed.\n"
    )
    w("| repository | lanes | shape | lanes | floor | lanes / floor | per lane | floor, per lane |")
    w("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        w(
            f"| {r['repository']} | {r['lanes']} | {r['shape']} | {r['lanes_seconds']:.3f} s | "
            f"{r['floor_seconds']:.3f} s | {r['ratio']:.2f}x | {r['per_lane_lanes_ms']:.1f} ms | "
            f"{r['per_lane_floor_ms']:.1f} ms |"
        )
    w("")
    if worst is not None:
        met = all(r["ratio"] <= GOAL for r in plain if r["lanes"] >= 100)
        w(
            f"Goal (issue 11): at most {GOAL}x the floor, and linear. Lanes of one commit, from "
            f"100 lanes on: at most {worst['ratio']:.2f}x (**{'met' if met else 'not met'}**); "
            "at 25 lanes the process's start-up is most of the difference (below). The floor "
            "is not linear itself: each `merge-tree` finds its merge base by walking back "
            "through every commit the loop has made; the pass merges against a stand-in "
            "commit whose parent is the replayed commit's own, so its merges cost the same "
            "at the 500th lane as at the first.\n"
        )
    ph = figures["phases"]
    w(
        f"Where the time goes: one pass of {ph['lanes']} lanes with fragments on the "
        "20,000-file repository, in a process of its own whose steps are wrapped in timers "
        f"(each step's own time; {ph['wall']:.3f} s in all, the process's wall time):\n"
    )
    w("| step | seconds | share |")
    w("| --- | --- | --- |")
    for r in ph["rows"]:
        w(f"| {r['phase']} | {r['seconds']:.3f} | {100 * r['seconds'] / ph['wall']:.0f}% |")
    w("")
    w(
        "The merges are the floor's own work (one `git merge-tree` process a replayed "
        "commit). Everything else the pass writes goes through long-running git processes "
        "(`cat-file --batch`, `hash-object --stdin-paths`, `mktree --batch`): a commit or a "
        "tree is a round trip, not a process. The ledger takes one append a row (its API "
        "has no batch append: lock, write, fsync, anchor each time). The deploy patches are "
        "the largest share with fragments: `lanes/surfaces/deploy.py` loads and dumps the "
        "whole workflow with ruamel.yaml several times a patch, so a patch costs more as the "
        "workflow grows with every step the wave appends.\n"
    )
    tests = figures["testing"]
    w(
        f"Testing: {TEST_LANES} lanes and a test command that sleeps {TEST_SLEEP} s and fails "
        "while a lane's file is in the tree; its runs are counted by the command itself (a "
        "line appended to a file outside the repository). `batch = 1` is one run a lane, "
        "what the pass did before batches.\n"
    )
    w("| case | setting | test runs | wall time | landed | bounced |")
    w("| --- | --- | --- | --- | --- | --- |")
    for r in tests:
        w(
            f"| {r['case']} | `{r['mode']}` | {r['runs']} | {r['seconds']:.2f} s | {r['landed']} | "
            f"{', '.join(r['bounced']) or '-'} |"
        )
    w("")
    return out


def summary(figures: dict[str, Any]) -> list[str]:
    """Lines for the console table of bench/run.py."""
    lines = [
        f"{'integrate: ' + r['repository'] + ', ' + str(r['lanes']) + ' lanes, ' + r['shape']:58} "
        f"{r['ratio']:8.2f}x"
        for r in figures["landing"]
    ]
    lines += [
        f"{'integrate: ' + r['case'] + ', ' + r['mode']:58} {r['runs']:5d} runs"
        for r in figures["testing"]
    ]
    return lines


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lanes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--quick", action="store_true", help="one run per size")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args()
    figures = main(tuple(args.lanes), args.quick)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print("\n".join(summary(figures)))
    for row in figures["phases"]["rows"]:
        print(f"{row['phase']:64} {row['seconds']:>7.3f} s")
    print("\n".join(section(figures)))
