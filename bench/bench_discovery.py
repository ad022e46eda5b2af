"""What discovery of the contended surfaces costs, and that the hot commands never pay it.

Discovery (lanes/discover.py) lists `main`'s tree once and reads a few files; it runs the
first time a command asks for `Config.surfaces`. Measured here, side by side with the raw
git it stands on (`git ls-tree -r` of main), on the seed's repository and on a
20,000-file one; and, for `lanes heartbeat` and `lanes --help`, whether discovery ran at
all: the git processes they start (GIT_TRACE) and the modules they import.
"""

from __future__ import annotations

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

from bench_claims import LANES, Bench, git_env, make_repo  # noqa: E402


def _median_ms(fn: Any, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _discovery_row(bench: Bench, name: str, repo: Path, runs: int) -> dict[str, Any]:
    from lanes import config, discover

    def resolve() -> None:
        surfaces = discover.resolve(config.load(repo))
        assert surfaces.source

    def raw() -> None:
        bench.run(["git", "ls-tree", "-r", "-z", "--name-only", "main"], repo)

    resolve()  # warm: imports and the page cache
    ours, git = _median_ms(resolve, runs), _median_ms(raw, runs)
    files = len(bench.run(["git", "ls-files"], repo).stdout.splitlines())
    return {"name": name, "files": files, "discovery_ms": ours, "ls_tree_ms": git}


def _hot_command(bench: Bench, repo: Path, args: list[str], cwd: Path) -> dict[str, Any]:
    """Git processes a command runs that discovery would add, and whether it imports it."""
    with tempfile.NamedTemporaryFile("r", suffix=".trace") as trace:
        env = {**bench.env, "GIT_TRACE": trace.name}
        subprocess.run([LANES, *args], cwd=cwd, env=env, capture_output=True, check=False)
        lines = Path(trace.name).read_text(encoding="utf-8", errors="replace").splitlines()
    listing = sum(1 for line in lines if "built-in: git ls-tree -r" in line)
    code = (
        "import sys, runpy; sys.argv = ['lanes', *sys.argv[1:]]\n"
        "try:\n    runpy.run_module('lanes', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "print('lanes.discover' in sys.modules, file=sys.stderr)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, env=bench.env, capture_output=True, text=True
    )
    imported = proc.stderr.strip().splitlines()[-1:] == ["True"]
    times = []
    for _ in range(5):
        start = time.perf_counter()
        subprocess.run([LANES, *args], cwd=cwd, env=bench.env, capture_output=True, check=False)
        times.append(time.perf_counter() - start)
    return {
        "command": "lanes " + " ".join(args),
        "tree_listings": listing,
        "imports_discover": imported,
        "median_s": statistics.median(times),
    }


def main(quick: bool = False) -> dict[str, Any]:
    from lanes import scaffold

    runs = 5 if quick else 15
    with tempfile.TemporaryDirectory(prefix="lanes-bench-discovery-") as tmp:
        root = Path(tmp)
        (root / "home").mkdir()
        bench = Bench(root, git_env(root / "home"))
        os.environ.update(bench.env)  # the in-process discovery runs git too
        seed = scaffold.make_seed_repo(root / "jpcite", root / "wt")
        big = make_repo(bench, "big", 100 if quick else 200, 100)
        rows = [
            _discovery_row(bench, "seed repository", seed, runs),
            _discovery_row(
                bench, "20,000-file repository" if not quick else "10,000-file", big, runs
            ),
        ]
        wt = Path(bench.run([LANES, "claim", "b1", "l1", "--agent", "bench"], big).stdout.strip())
        hot = [
            _hot_command(bench, big, ["--help"], big),
            _hot_command(bench, big, ["heartbeat"], wt),
            _hot_command(bench, big, ["status", "--json"], big),
        ]
    return {"runs": runs, "discovery": rows, "commands": hot}


if __name__ == "__main__":
    import json

    print(json.dumps(main(quick="--quick" in sys.argv), indent=2))
