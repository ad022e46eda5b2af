"""What the wave runner and setup cost (issue 10, docs/runner.md, docs/setup.md).

- The runner's overhead: a wave of trivial agents (each commits one file) run by
  `lanes run --parallel 4`, against the same claims, agents and submits done by hand, four
  at a time (`lanes claim`, the agent, `lanes submit`, each a real process). Goal: at most
  1.1x.
- Setup of a 200 MB git-ignored folder (`[setup] copy`) during `lanes claim`, against the
  same claim without it and against the raw copies it stands on: `cp -a` (a copy),
  `cp -a --reflink=always` and `cp -al` (hard links), where the filesystem has them. Run on
  the temporary directory's filesystem and, when root can make one, on an XFS image with
  reflinks (a loop device), where the copy is a reflink.
Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from bench_claims import LANES, git_env  # noqa: E402

GOAL = 1.1  # lanes run / the same claims, agents and submits by hand
AGENT = 'echo "$LANES_LANE" > "src/$LANES_LANE.txt" && git add -A && git commit -qm "$LANES_LANE"'
PARALLEL = 4


def _run(args: list[str], cwd: Path, env: dict[str, str], ok: tuple[int, ...] = (0,)) -> str:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode not in ok:
        raise RuntimeError(f"{args} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return proc.stdout


def _env(root: Path) -> dict[str, str]:
    home = root / "home"
    home.mkdir(parents=True, exist_ok=True)
    return git_env(home)


def _seed(root: Path, name: str) -> Path:
    from lanes import scaffold

    return scaffold.make_seed_repo(root / name, root / f"wt-{name}")


# -- the runner against the same work by hand -------------------------------------------------


def _by_hand(repo: Path, lanes: list[str], env: dict[str, str]) -> float:
    def one(lane: str) -> None:
        doc = json.loads(
            _run([LANES, "claim", "w", lane, "--agent", f"run-{lane}", "--json"], repo, env)
        )
        wt = Path(doc["worktree"])
        _run(["sh", "-c", AGENT], wt, {**env, "LANES_LANE": lane})
        _run([LANES, "submit", "--json"], wt, env)

    started = time.perf_counter()
    with ThreadPoolExecutor(PARALLEL) as pool:
        list(pool.map(one, lanes))
    return time.perf_counter() - started


def _by_runner(repo: Path, lanes: list[str], env: dict[str, str]) -> float:
    plan = repo.parent / f"{repo.name}-plan.toml"
    text = ["[defaults]", f"command = {json.dumps(['sh', '-c', AGENT])}", ""]
    for lane in lanes:
        text += ["[[lane]]", f'name = "{lane}"', 'task = "commit one file"', ""]
    plan.write_text("\n".join(text), encoding="utf-8")
    started = time.perf_counter()
    out = _run(
        [LANES, "run", "w", "--plan", str(plan), "--parallel", str(PARALLEL), "--json"], repo, env
    )
    took = time.perf_counter() - started
    summary = json.loads(out.splitlines()[-1])
    if summary.get("outcome") != "done":
        raise RuntimeError(f"lanes run did not finish: {summary.get('outcome')}")
    return took


def runner_overhead(root: Path, quick: bool) -> dict[str, Any]:
    env = _env(root)
    count, rounds = (8, 1) if quick else (32, 3)
    lanes = [f"l{i:02d}" for i in range(count)]
    hand, runner = [], []
    for n in range(rounds):  # alternate who goes first, each on a fresh repository
        ways = [("hand", _by_hand, hand), ("runner", _by_runner, runner)]
        for name, way, into in ways if n % 2 == 0 else ways[::-1]:
            repo = _seed(root, f"{name}{n}")
            into.append(way(repo, lanes, env))
    h, r = statistics.median(hand), statistics.median(runner)
    return {
        "agents": count,
        "rounds": rounds,
        "parallel": PARALLEL,
        "hand": hand,
        "runner": runner,
        "hand_median": h,
        "runner_median": r,
        "ratio": r / h,
        "goal": GOAL,
        "met": r / h <= GOAL,
    }


# -- setup of a big ignored folder -------------------------------------------------------------


@contextlib.contextmanager
def _xfs(root: Path) -> Iterator[Path | None]:
    """A reflink-capable XFS mounted on a loop device, when root and mkfs.xfs allow; else None."""
    if os.geteuid() != 0 or shutil.which("mkfs.xfs") is None:
        yield None
        return
    image, mount = root / "xfs.img", root / "xfs"
    mount.mkdir()
    try:
        subprocess.run(["truncate", "-s", "2G", str(image)], check=True)
        subprocess.run(
            ["mkfs.xfs", "-q", "-m", "reflink=1", str(image)], check=True, capture_output=True
        )
        subprocess.run(
            ["mount", "-o", "loop", str(image), str(mount)], check=True, capture_output=True
        )
    except (OSError, subprocess.CalledProcessError):
        yield None
        return
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False, capture_output=True)


def _timed(args: list[str], cwd: Path, env: dict[str, str]) -> float | None:
    started = time.perf_counter()
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    took = time.perf_counter() - started
    return took if proc.returncode == 0 else None


def setup_copy(where: Path, runs: int, megabytes: int = 200) -> dict[str, Any]:
    from lanes import scaffold

    env = _env(where)
    fs = _fs_type(where)
    repos = {}
    for name, setup in (("plain", ""), ("setup", '\n[tool.lanes.setup]\ncopy = ["data"]\n')):
        repo = scaffold.make_seed_repo(where / name, where / f"wt-{name}")
        with open(repo / ".gitignore", "a", encoding="utf-8") as fh:
            fh.write("/data/\n")
        data = repo / "data"
        data.mkdir()
        chunk = os.urandom(1 << 20)
        for i in range(megabytes):
            (data / f"blob{i:03d}.bin").write_bytes(chunk[i:] + chunk[:i])
        if setup:
            with open(repo / "pyproject.toml", "a", encoding="utf-8") as fh:
                fh.write(setup)
        _run(["git", "commit", "-qam", "ignore data"], repo, env)
        repos[name] = repo
    series: dict[str, list[float]] = {}
    for n in range(runs):
        subprocess.run(["sync"], check=False)
        for name, repo in repos.items():
            t = _timed([LANES, "claim", "w", f"c{n}", "--agent", "bench", "--json"], repo, env)
            if t is not None:
                series.setdefault(
                    f"lanes claim ({'with' if name == 'setup' else 'no'} setup)", []
                ).append(t)
        src = repos["setup"] / "data"
        for label, flags in (
            ("cp -a", ["-a"]),
            ("cp -a --reflink=always", ["-a", "--reflink=always"]),
            ("cp -al (hard links)", ["-al"]),
        ):
            dest = where / f"copy-{n}-{len(series)}-{label.split()[-1]}"
            t = _timed(["cp", *flags, str(src), str(dest)], where, env)
            if t is not None:
                series.setdefault(label, []).append(t)
            shutil.rmtree(dest, ignore_errors=True)
        for name in repos:  # the claimed worktrees go, untimed (release would save the data)
            shutil.rmtree(where / f"wt-{name}" / f"jpcite-w-c{n}", ignore_errors=True)
    method = ""
    for log in (repos["setup"] / "tools/offline/_inbox/w").glob("c*/setup.log"):
        found = re.search(
            r"\((\d+) cloned by reflink\)", log.read_text(encoding="utf-8", errors="replace")
        )
        if found:
            method = "reflink" if int(found.group(1)) > 0 else "copy (copy_file_range)"
    medians = {k: statistics.median(v) for k, v in series.items()}
    return {
        "filesystem": fs,
        "megabytes": megabytes,
        "runs": runs,
        "medians": medians,
        "lanes_copied_by": method,
    }


def _fs_type(path: Path) -> str:
    out = subprocess.run(
        ["stat", "-f", "-c", "%T", str(path)], capture_output=True, text=True, check=False
    )
    return out.stdout.strip() or "unknown"


def main(quick: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="lanes-bench-runner-") as tmp:
        root = Path(tmp)
        (root / "runner").mkdir()
        res: dict[str, Any] = {"runner": runner_overhead(root / "runner", quick)}
        runs = 2 if quick else 5
        (root / "tmpfs-or-disk").mkdir()
        res["setup"] = [setup_copy(root / "tmpfs-or-disk", runs)]
        with _xfs(root) as xfs:
            if xfs is not None:
                res["setup"].append(setup_copy(xfs, runs))
        return res


def section(res: dict[str, Any]) -> list[str]:
    run = res["runner"]
    out = [
        "## The wave runner and setup\n",
        f"A wave of {run['agents']} trivial agents (each commits one file), "
        f"{run['parallel']} at a time: `lanes run --json` against the same claims, agents and "
        f"submits done by hand (each `lanes claim`, the agent and `lanes submit` a process, "
        f"{run['parallel']} lanes at once). Median of {run['rounds']} round(s), each on a fresh "
        "repository, the order alternating.\n",
        "| way | median wall time | runs |",
        "| --- | --- | --- |",
        f"| by hand | {run['hand_median']:.2f} s | {', '.join(f'{x:.2f}' for x in run['hand'])} |",
        f"| `lanes run` | {run['runner_median']:.2f} s | {', '.join(f'{x:.2f}' for x in run['runner'])} |",
        "",
        f"The runner takes {run['ratio']:.2f}x the work by hand (goal: at most {run['goal']}x: "
        + ("**met**" if run["met"] else "**not met**")
        + "). What it adds: a brief per agent, the keeper process, a heartbeat, the live "
        "view's look at each worktree every half second; what it saves: one Python start-up "
        "per claim and per submit (it claims and submits in its own process).\n",
        'Setup of a 200 MB git-ignored folder (`[setup] copy = ["data"]`, 200 files of '
        "1 MiB) during `lanes claim`, beside the same claim without setup and the raw copies "
        "it stands on. Lanes never hard-links (docs/setup.md: an edit in the lane would change "
        "the main checkout's file); `cp -al` is shown for what it would cost.\n",
        "| filesystem | way | median |",
        "| --- | --- | --- |",
    ]
    for block in res["setup"]:
        for way, secs in block["medians"].items():
            out.append(f"| {block['filesystem']} | `{way}` | {secs:.3f} s |")
        out.append(
            f"| {block['filesystem']} | lanes copied by | {block['lanes_copied_by'] or 'unknown'} |"
        )
    out.append("")
    return out


if __name__ == "__main__":
    print(json.dumps(main(quick="--quick" in sys.argv), indent=2))
