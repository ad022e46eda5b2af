"""Claim benchmarks: `lanes claim` against the `git worktree add` it stands on, start-up, races.

Everything runs as real processes on real repositories built in one temporary directory
(worktrees included, through `worktree_root` in the bench repositories' lanes.toml), which
is removed at the end. `main()` returns the figures; bench/run.py prints and records them.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent  # the venv's bin: its python runs this file
LANES = str(BIN / "lanes")  # the console script, as agents call it

# A waiting wrapper: it announces itself, waits for the starting gun, then becomes the
# real command (exec), so the measured time holds the command's whole start-up.
WAIT_THEN_EXEC = """
import os, sys, time
open(os.path.join(sys.argv[1], str(os.getpid())), "w").close()
while not os.path.exists(sys.argv[2]):
    time.sleep(0.002)
os.execv(sys.argv[3], sys.argv[3:])
"""


def git_env(home: Path) -> dict[str, str]:
    """No global or system git configuration may tilt the figures (checkout.workers...)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        HOME=str(home),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_AUTHOR_NAME="bench",
        GIT_AUTHOR_EMAIL="bench@lanes.invalid",
        GIT_COMMITTER_NAME="bench",
        GIT_COMMITTER_EMAIL="bench@lanes.invalid",
    )
    return env


@dataclass
class Bench:
    root: Path
    env: dict[str, str]

    def run(
        self, args: Sequence[str], cwd: Path, ok: Sequence[int] = (0,)
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            list(args), cwd=cwd, env=self.env, capture_output=True, text=True, check=False
        )
        if proc.returncode not in ok:
            raise RuntimeError(
                f"{' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}"
            )
        return proc

    def timed(self, args: Sequence[str], cwd: Path) -> float:
        start = time.perf_counter()
        self.run(args, cwd)
        return time.perf_counter() - start


def cpu_of_children() -> float:
    """User + system seconds of every child process waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def make_repo(bench: Bench, name: str, dirs: int, files_per_dir: int) -> Path:
    """A repository of dirs x files_per_dir small text files in one commit, packed."""
    repo = bench.root / name
    for d in range(dirs):
        folder = repo / "src" / f"pkg{d:03d}"
        folder.mkdir(parents=True)
        for f in range(files_per_dir):
            text = "".join(f"# {name} {d}/{f} line {n}\n" for n in range(1 + (d * f) % 12))
            (folder / f"mod{f:03d}.py").write_text(text, encoding="utf-8")
    worktrees = bench.root / "wt"
    worktrees.mkdir(exist_ok=True)
    (repo / "lanes.toml").write_text(
        f'project = "{name}"\nworktree_root = "{worktrees.as_posix()}"\n', encoding="utf-8"
    )
    bench.run(["git", "init", "-q", "--initial-branch=main"], repo)
    bench.run(["git", "add", "--all"], repo)
    bench.run(["git", "commit", "-q", "-m", f"{dirs * files_per_dir} files"], repo)
    # A clone is packed; loose objects would make every checkout slower than in real life.
    bench.run(["git", "repack", "-adq"], repo)
    bench.run(["git", "prune"], repo)
    return repo


@dataclass
class Series:
    name: str
    seconds: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # user + system of the processes run

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "median": self.median,
            "min": min(self.seconds),
            "max": max(self.seconds),
            "cpu_median": statistics.median(self.cpu) if self.cpu else None,
            "runs": self.seconds,
        }


@dataclass
class Way:
    """One way to get a checked-out branch: `make(i)` is timed, `undo(i)` is not."""

    series: Series
    make: Callable[[int], None]
    undo: Callable[[int], None]

    def once(self, i: int) -> None:
        os.sync()  # the previous run's writeback must not land in this one's time
        cpu = cpu_of_children()
        start = time.perf_counter()
        self.make(i)
        self.series.seconds.append(time.perf_counter() - start)
        self.series.cpu.append(cpu_of_children() - cpu)
        self.undo(i)


def claim_vs_worktree(bench: Bench, repo: Path, rounds: int) -> dict[str, Any]:
    """Interleaved runs of each way to get a checked-out branch on `repo`."""
    wt = bench.root / "wt"

    def git_way(name: str, tag: str, pre: Sequence[str], steps: bool = False) -> Way:
        def make(i: int) -> None:
            path, branch = str(wt / f"{tag}-{i}"), f"{tag}-{i}"
            if not steps:
                bench.run(["git", *pre, "worktree", "add", "-q", "-b", branch, path, "main"], repo)
                return
            # What lanes runs, without lanes: register without files, then check out.
            bench.run(
                ["git", "worktree", "add", "--no-checkout", "-q", "-b", branch, path, "main"], repo
            )
            bench.run(
                ["git", "-c", "checkout.workers=4", "reset", "--hard", "--quiet", "HEAD"],
                Path(path),
            )

        def undo(i: int) -> None:
            bench.run(["git", "worktree", "remove", "--force", str(wt / f"{tag}-{i}")], repo)
            bench.run(["git", "branch", "-D", f"{tag}-{i}"], repo)

        return Way(Series(name), make, undo)

    def claim(i: int) -> None:
        bench.run([LANES, "claim", "bench", f"l{i}", "--agent", "a"], repo)

    def release(i: int) -> None:
        if i == 0:  # not timed
            _check_full_checkout(bench, wt / f"{repo.name}-bench-l{i}", repo)
        bench.run([LANES, "release", "bench", f"l{i}"], repo)

    ways = [
        git_way("git worktree add", "plain", []),
        git_way("git -c checkout.workers=4 worktree add", "w4", ["-c", "checkout.workers=4"]),
        git_way("git worktree add --no-checkout, then reset --hard (workers=4)", "steps", [], True),
        Way(Series("lanes claim"), claim, release),
    ]
    for way in ways:  # warm-up (page cache, pack index), not counted
        way.make(1000)
        way.undo(1000)
    for i in range(rounds):
        for way in ways[i % len(ways) :] + ways[: i % len(ways)]:
            way.once(i)
    # Each round holds one run of each way, close in time: their ratio cancels slow drifts.
    lanes_runs = ways[-1].series.seconds
    paired = {
        w.series.name: statistics.median(
            c / g for c, g in zip(lanes_runs, w.series.seconds, strict=False)
        )
        for w in ways[:-1]
    }
    return {
        "rounds": rounds,
        "series": [w.series.to_json() for w in ways],
        "paired_ratio": paired,
        "phases": claim_phases(bench, repo),
    }


# Runs `lanes claim` in its own process with git.run and Ledger.append wrapped in timers;
# the modules themselves are untouched. argv: interpreter start-up seconds, then lanes' args.
PHASES = """
import json, sys, time
t0 = time.perf_counter()
import filelock, lanes.claims, lanes.config, lanes.git, lanes.ledger, lanes.state
from lanes.cli import main
imports = time.perf_counter() - t0
phases = {}
def timed(key, fn):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            name = key(args)
            phases[name] = phases.get(name, 0.0) + time.perf_counter() - start
    return wrapper
def git_key(args):
    words = [w for w in args[0][:4] if "/" not in w and len(w) != 40 and w != "-b"]
    return "git " + " ".join(words)
lanes.git.run = timed(git_key, lanes.git.run)
lanes.ledger.Ledger.append = timed(lambda a: "ledger row (lock, write, fsync, anchor)",
                                   lanes.ledger.Ledger.append)
t1 = time.perf_counter()
code = main(sys.argv[2:])
work = time.perf_counter() - t1
out = {"interpreter start-up": float(sys.argv[1]), "imports (typer, pydantic, lanes...)": imports}
out.update(phases)
out["the rest (argument parsing, config, ledger read, claim directory, locks)"] = work - sum(phases.values())
out["total"] = float(sys.argv[1]) + imports + work
print(json.dumps(out))
sys.exit(code)
"""


def claim_phases(bench: Bench, repo: Path) -> dict[str, float]:
    """Where one `lanes claim` on `repo` spends its time (median of three runs per phase)."""
    interpreter = statistics.median(
        bench.timed([sys.executable, "-c", "pass"], bench.root) for _ in range(5)
    )
    runs: list[dict[str, float]] = []
    for i in range(3):
        os.sync()
        proc = bench.run(
            [
                sys.executable,
                "-c",
                PHASES,
                str(interpreter),
                "claim",
                "bench",
                f"p{i}",
                "--agent",
                "a",
            ],
            repo,
        )
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        bench.run([LANES, "release", "bench", f"p{i}"], repo)
    return {key: statistics.median(r.get(key, 0.0) for r in runs) for key in runs[0]}


def sparse_claim(bench: Bench, repo: Path, runs: int) -> dict[str, Any]:
    """`lanes claim --sparse` of one folder of `repo`: its time and the files it writes."""
    series = Series("lanes claim --sparse src/pkg000")
    wt = bench.root / "wt"
    files = 0
    for i in range(runs):
        os.sync()
        start = time.perf_counter()
        bench.run(
            [LANES, "claim", "bench", f"s{i}", "--agent", "a", "--sparse", "src/pkg000"], repo
        )
        series.seconds.append(time.perf_counter() - start)
        path = wt / f"{repo.name}-bench-s{i}"
        files = sum(len(names) for _, _, names in os.walk(path)) - 1  # minus the .git file
        bench.run([LANES, "release", "bench", f"s{i}"], repo)
    return {**series.to_json(), "files_on_disk": files}


def _check_full_checkout(bench: Bench, path: Path, repo: Path) -> None:
    """The claimed worktree holds every file and nothing differs: a fair comparison."""
    tracked = bench.run(["git", "ls-files"], repo).stdout.count("\n")
    on_disk = sum(len(files) for _, _, files in os.walk(path)) - 1  # minus the .git file
    dirty = bench.run(["git", "status", "--porcelain"], path).stdout
    if on_disk != tracked or dirty:
        raise RuntimeError(f"lanes claim left {on_disk} of {tracked} files; status: {dirty!r}")


def startup(bench: Bench, runs: int) -> dict[str, Any]:
    here = bench.root
    kinds = [
        (Series("lanes --help"), [LANES, "--help"]),
        (Series("python -c pass"), [sys.executable, "-c", "pass"]),
        (Series("python -I -S -c pass"), [sys.executable, "-I", "-S", "-c", "pass"]),
    ]
    for _, args in kinds:
        bench.timed(args, here)
    for _ in range(runs):
        for series, args in kinds:
            series.seconds.append(bench.timed(args, here))
    imports = _import_profile(bench)
    return {"runs": runs, "series": [s.to_json() for s, _ in kinds], "imports": imports}


def _import_profile(bench: Bench) -> list[dict[str, Any]]:
    """The costliest imports of `lanes --help` (python -X importtime, cumulative ms):
    top-level modules, and the modules lanes.cli imports itself."""
    proc = bench.run(
        [sys.executable, "-X", "importtime", "-c", "import sys; from lanes.cli import run; "
         "sys.argv = ['lanes', '--help']; run()"],
        bench.root,
    )  # fmt: skip
    rows: list[dict[str, Any]] = []
    children: list[dict[str, Any]] = []  # importtime prints a module after its imports
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or line.count("|") != 2:
            continue
        _, cumulative, name = line[len("import time:") :].split("|")
        if not cumulative.strip().isdigit():
            continue
        depth = (len(name) - len(name.lstrip()) - 1) // 2
        row = {"module": name.strip(), "ms": int(cumulative) / 1000}
        if depth == 1:
            children.append(row)
        elif depth == 0:
            rows.append(row)
            if row["module"] == "lanes.cli":
                rows.extend({**c, "module": f"lanes.cli > {c['module']}"} for c in children)
            children = []
    rows.sort(key=lambda r: -float(r["ms"]))
    return rows[:10]


def race(bench: Bench, repo: Path, wave: str, procs: int, lanes_n: int) -> dict[str, Any]:
    """`procs` real `lanes claim` processes, started together, for `lanes_n` lanes."""
    ready = bench.root / f"ready-{wave}"
    ready.mkdir()
    go = bench.root / f"go-{wave}"
    assignments = [(f"a{p:02d}", f"l{p % lanes_n:02d}") for p in range(procs)]
    waiter = [sys.executable, "-I", "-S", "-c", WAIT_THEN_EXEC, str(ready), str(go)]
    children = [
        subprocess.Popen(
            [*waiter, LANES, "claim", wave, lane, "--agent", agent, "--json"],
            cwd=repo,
            env=bench.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for agent, lane in assignments
    ]
    deadline = time.monotonic() + 120
    while len(os.listdir(ready)) < procs and time.monotonic() < deadline:
        time.sleep(0.01)
    cpu = cpu_of_children()
    start = time.perf_counter()
    go.touch()
    outcomes = []
    for (agent, lane), child in zip(assignments, children, strict=True):
        out, err = child.communicate(timeout=600)
        outcomes.append((agent, lane, child.returncode, out, err))
    wall = time.perf_counter() - start
    cpu = cpu_of_children() - cpu  # the waiting wrappers' own start-up (~10 ms each) too

    winners: dict[str, list[str]] = {}
    codes: dict[int, int] = {}
    for agent, lane, code, out, err in outcomes:
        codes[code] = codes.get(code, 0) + 1
        if code == 0:
            winners.setdefault(lane, []).append(agent)
        elif code != 3:
            raise RuntimeError(f"lanes claim {wave} {lane} exited {code}: {out or err}")
        elif json.loads(out).get("error") != "claimed":
            raise RuntimeError(f"lanes claim {wave} {lane} exited 3 without 'claimed': {out}")
    one_holder = len(winners) == lanes_n and all(len(w) == 1 for w in winners.values())
    # The claim directory, not the exit code, decides: it must name the one winner.
    records_agree = all(
        json.loads((repo / "tools/offline/_inbox" / wave / lane / "claim.json").read_text("utf-8"))[
            "agent"
        ]
        == agents[0]
        for lane, agents in winners.items()
    )
    ledger = [
        json.loads(line)
        for line in bench.run([LANES, "ledger", wave, "--json"], repo).stdout.splitlines()
    ]
    attempts_logged = sum(ev["event"] in ("claim", "claim-refused") for ev in ledger)
    verified = json.loads(bench.run([LANES, "ledger", "verify", wave, "--json"], repo).stdout)
    return {
        "repository_files": _tracked(bench, repo),
        "processes": procs,
        "lanes": lanes_n,
        "wall_seconds": wall,
        "claims": sum(len(w) for w in winners.values()),
        "claims_per_second": sum(len(w) for w in winners.values()) / wall,
        "attempts_per_second": procs / wall,
        "cpu_seconds": cpu,
        "cpu_per_attempt": cpu / procs,
        "exit_codes": {str(k): v for k, v in sorted(codes.items())},
        "one_holder_per_lane": one_holder,
        "claim_records_agree": records_agree,
        "ledger_attempts": attempts_logged,
        "ledger_ok": bool(verified.get("ok")),
    }


def _tracked(bench: Bench, repo: Path) -> int:
    return bench.run(["git", "ls-files"], repo).stdout.count("\n")


def main(quick: bool = False, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every claim benchmark; `quick` makes fewer runs and skips the 20k-file race."""
    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    # A terminated run still removes its temporary directory (the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    root = Path(tempfile.mkdtemp(prefix="lanes-bench-"))
    home = root / "home"
    home.mkdir()
    bench = Bench(root, git_env(home))
    results: dict[str, Any] = {"tmp": str(root), "load_before": os.getloadavg()}
    try:
        say("building a 20,000-file repository ...")
        start = time.perf_counter()
        big = make_repo(bench, "big", 200, 100)
        results["build_seconds"] = time.perf_counter() - start
        results["big_files"] = _tracked(bench, big)
        say("lanes claim against git worktree add (interleaved) ...")
        results["claim"] = claim_vs_worktree(bench, big, rounds=3 if quick else 9)
        say("lanes claim --sparse ...")
        results["sparse"] = sparse_claim(bench, big, runs=3 if quick else 7)
        say("lanes --help start-up ...")
        results["startup"] = startup(bench, runs=10 if quick else 25)
        small = make_repo(bench, "small", 10, 20)
        races = []
        say("64 processes claiming 64 lanes, then 8 lanes, on a 200-file repository ...")
        races.append({"name": "64 agents, 64 lanes", **race(bench, small, "r64", 64, 64)})
        races.append({"name": "64 agents, 8 lanes", **race(bench, small, "r8", 64, 8)})
        if not quick:
            say("64 processes claiming 64 lanes on the 20,000-file repository ...")
            races.append({"name": "64 agents, 64 lanes", **race(bench, big, "big64", 64, 64)})
        results["races"] = races
        results["load_after"] = os.getloadavg()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return results


if __name__ == "__main__":
    print(json.dumps(main(quick="--quick" in sys.argv), indent=2, default=asdict))
