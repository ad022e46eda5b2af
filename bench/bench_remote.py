"""What coordinating through a git remote costs (issue 9, docs/remote.md).

On a loopback `git daemon` and on file://, each clone standing for a machine:
- one `lanes claim` with `remote = "origin"` beside one with the local version, and beside
  the raw git it stands on (one `git push` creating a ref, one `git fetch` of it): the goal
  is a remote claim within 1.25x of a local claim + one push + one fetch;
- claims per second with 48 racers (16 on each of 3 clones) over 8 lanes, exactly 8
  holders expected;
- ledger appends per second with 3 writers (one per clone), the chain checked after.
Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from bench_claims import LANES, git_env  # noqa: E402

GOAL = 1.25  # remote claim / (local claim + push + fetch)
APPEND = """
import sys, time
from pathlib import Path
from lanes import config, coord
log = coord.for_config(config.load(Path.cwd())).ledger("bench")
while not Path(sys.argv[2]).exists():
    time.sleep(0.001)
for i in range(int(sys.argv[1])):
    log.append("verify", "", "writer", n=i)
"""


def _run(args: list[str], cwd: Path, env: dict[str, str], ok: tuple[int, ...] = (0,)) -> str:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode not in ok:
        raise RuntimeError(f"{args} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return proc.stdout


def _clone(url: str, dest: Path, env: dict[str, str], remote: bool = True) -> Path:
    _run(["git", "clone", "-q", url, str(dest)], dest.parent, env)
    root = dest.parent / f"wt-{dest.name}"
    root.mkdir()
    py = dest / "pyproject.toml"
    text = re.sub(r'worktree_root = ".*"', f'worktree_root = "{root}"', py.read_text())
    if remote:
        text = text.replace('stale_after = "30m"', 'stale_after = "30m"\nremote = "origin"')
    py.write_text(text)
    return dest


def _timed(args: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    _run(args, cwd, env)
    return time.perf_counter() - start


def _single(url: str, root: Path, env: dict[str, str], runs: int) -> dict[str, float]:
    local, remote = _clone(url, root / "local", env, False), _clone(url, root / "one", env)
    raw = _clone(url, root / "raw", env, False)
    rows: dict[str, list[float]] = {"local": [], "remote": [], "push": [], "fetch": []}
    for i in range(runs):
        rows["local"].append(_timed([LANES, "claim", "b", f"l{i}", "--agent", "x"], local, env))
        rows["remote"].append(_timed([LANES, "claim", "b", f"l{i}", "--agent", "x"], remote, env))
        rows["push"].append(
            _timed(["git", "push", "-q", "origin", f"HEAD:refs/raw/r{i}"], raw, env)
        )
        rows["fetch"].append(_timed(["git", "fetch", "-q", "origin", f"refs/raw/r{i}"], raw, env))
    med = {k: statistics.median(v) for k, v in rows.items()}
    med["ratio"] = med["remote"] / (med["local"] + med["push"] + med["fetch"])
    return med


def _race(url: str, root: Path, env: dict[str, str]) -> dict[str, Any]:
    clones = [_clone(url, root / f"race{i}", env) for i in range(3)]
    gun = root / "gun"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import os,sys,time\n"
                "while not os.path.exists(sys.argv[1]): time.sleep(0.001)\n"
                "os.execv(sys.argv[2], sys.argv[2:])",
                str(gun),
                LANES,
                "claim",
                "race",
                f"l{n % 8}",
                "--agent",
                f"r{i}-{n}",
            ],
            cwd=clone,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i, clone in enumerate(clones)
        for n in range(16)
    ]
    time.sleep(1.0)
    start = time.perf_counter()
    gun.touch()
    codes = [p.wait(timeout=600) for p in procs]
    wall = time.perf_counter() - start
    held = _run(["git", "ls-remote", "origin", "refs/lanes/race/claims/*"], clones[0], env)
    return {
        "racers": len(procs),
        "seconds": wall,
        "claims_per_second": len(procs) / wall,
        "winners": codes.count(0),
        "told_who_holds": codes.count(3),
        "failed": len(procs) - codes.count(0) - codes.count(3),
        "holders": len(held.splitlines()),
    }


def _appends(url: str, root: Path, env: dict[str, str], each: int) -> dict[str, Any]:
    clones = [_clone(url, root / f"log{i}", env) for i in range(3)]
    gun = root / "gun-log"
    procs = [
        subprocess.Popen([sys.executable, "-c", APPEND, str(each), str(gun)], cwd=c, env=env)
        for c in clones
    ]
    time.sleep(1.0)
    start = time.perf_counter()
    gun.touch()
    codes = [p.wait(timeout=600) for p in procs]
    wall = time.perf_counter() - start
    out = subprocess.run(
        [LANES, "ledger", "verify", "bench", "--json"],
        cwd=clones[0],
        env=env,
        capture_output=True,
        text=True,
    )
    return {
        "writers": 3,
        "events": 3 * each,
        "seconds": wall,
        "appends_per_second": 3 * each / wall,
        "all_written": codes == [0, 0, 0],
        "chain_ok": out.returncode == 0 and '"ok": true' in out.stdout,
    }


def main(quick: bool = False) -> dict[str, Any]:
    sys.path.insert(0, str(HERE.parent))
    from lanes import scaffold
    from tests.servers import GitDaemon, make_bare

    runs, each = (3, 10) if quick else (9, 30)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="lanes-bench-remote-") as tmp:
        base = Path(tmp)
        env = git_env(base / "home")
        (base / "home").mkdir()
        seed = scaffold.make_seed_repo(base / "seed", base)
        daemon = GitDaemon(base / "srv-daemon", base / "state-daemon")
        (base / "srv-daemon").mkdir()
        (base / "srv-file").mkdir()
        daemon.start()
        try:
            servers = [
                ("git daemon (loopback)", daemon.add(seed).url),
                ("file://", make_bare(seed, base / "srv-file" / "origin.git").as_uri()),
            ]
            for name, url in servers:
                print(f"  remote: {name} ...", file=sys.stderr, flush=True)
                root = base / re.sub(r"\W+", "-", name)
                root.mkdir()
                results.append(
                    {
                        "server": name,
                        "single": _single(url, root, env, runs),
                        "race": _race(url, root, env),
                        "ledger": _appends(url, root, env, each),
                    }
                )
        finally:
            daemon.stop()
    return {"runs": runs, "goal": GOAL, "servers": results}


def section(rem: dict[str, Any]) -> list[str]:
    """The rendered section of docs/benchmarks.md."""
    out = [
        "## Coordinating through a git remote\n",
        'With `remote = "origin"` a claim is a push creating `refs/lanes/<wave>/claims/'
        "<lane>` only if absent, read back with `ls-remote` and a fetch by id, and a ledger "
        "append by compare-and-swap (docs/remote.md). Each clone stands for a machine; "
        f"median of {rem['runs']} runs. Goal: a remote claim within {rem['goal']}x of a local "
        "claim + one `git push` + one `git fetch`.\n",
        "| server | local claim | remote claim | `git push` | `git fetch` | remote / (local + push + fetch) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rem["servers"]:
        s = r["single"]
        met = "met" if s["ratio"] <= rem["goal"] else "not met"
        out.append(
            f"| {r['server']} | {s['local'] * 1000:.0f} ms | {s['remote'] * 1000:.0f} ms | "
            f"{s['push'] * 1000:.0f} ms | {s['fetch'] * 1000:.0f} ms | "
            f"{s['ratio']:.2f}x (**{met}**) |"
        )
    out += [
        "",
        "Races: 48 `lanes claim` (16 on each of 3 clones) over 8 lanes, started together; "
        "ledger appends: 3 writers (one per clone) appending at once, the chain verified "
        "after.\n",
        "| server | claims/s | holders | winners / told who holds / failed | appends/s | chain |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rem["servers"]:
        race, log = r["race"], r["ledger"]
        out.append(
            f"| {r['server']} | {race['claims_per_second']:.1f} | {race['holders']} | "
            f"{race['winners']} / {race['told_who_holds']} / {race['failed']} | "
            f"{log['appends_per_second']:.1f} ({log['events']} events) | "
            f"{'intact' if log['chain_ok'] and log['all_written'] else 'BROKEN'} |"
        )
    out.append("")
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(main(quick="--quick" in sys.argv), indent=2))
