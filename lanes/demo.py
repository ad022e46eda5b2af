"""`lanes demo`: the whole story on a scratch repository, offline, in seconds.

A repository shaped like the seed's in a temporary directory; five agents in parallel
processes (lanes/demo_agents.py); two race for one lane, one edits the boot manifest itself
and is refused; a hotfix lands on main under one lane, which the integrator bounces. Then
integrate, verify, the ledger and what landed on main. Then the same on many machines
(lanes/demo_machines.py): two clones of one server share a wave, a third integrates it.
And the wave runner (lanes/demo_run.py): `lanes run` launches five scripted agents from a
plan, submits the finished ones, integrates and gates.

Every `lanes` call is a real process run with --json, as an agent or a CI job runs it.
This module never prints: it reports `Step`s through a callback (lanes/cli/demo_cmd.py
renders them) and returns a `DemoResult`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lanes import demo_machines, demo_run, git, scaffold
from lanes.demo_agents import AGENTS, MANIFEST, WAVE, Call, lanes

HOTFIX = "HEALTHZ_TIMEOUT_S = 5  # hotfix: stay inside Fly's 60 s health grace\n"


@dataclass(frozen=True)
class Step:
    """One thing to show. kind: section, note, run (a command and its outcome), table, lines."""

    kind: str
    title: str = ""
    text: str = ""
    actor: str = ""
    where: str = ""  # the directory the command ran in, by name
    command: str = ""
    rc: int | None = None
    expected: bool = True  # the exit code is the one the story expects
    columns: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)


Report = Callable[[Step], None]


@dataclass
class DemoResult:
    directory: str
    kept: bool = False
    removed: bool = False
    seconds: float = 0.0
    integrated: list[str] = field(default_factory=list)
    bounced: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)
    verify_ok: bool | None = None
    checks: list[dict[str, Any]] = field(default_factory=list)
    next: list[str] = field(default_factory=list)
    ledger_ok: bool | None = None
    ledger_events: int = 0
    head: str = ""
    version: str = ""
    manifest_added: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)
    machines: demo_machines.MachinesResult = field(default_factory=demo_machines.MachinesResult)
    runner: demo_run.RunActResult = field(default_factory=demo_run.RunActResult)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def expect(self, cond: bool, problem: str) -> None:
        if not cond:
            self.problems.append(problem)


def run(report: Report, keep: bool = False) -> DemoResult:
    """Tell the whole story in a fresh temporary directory; remove it unless `keep`."""
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="lanes-demo-"))
    res = DemoResult(directory=str(tmp), kept=keep)
    try:
        repo = scaffold.make_seed_repo(tmp / "jpcite", tmp / "wt")
        seed = git.out(["rev-parse", "HEAD"], repo)
        _intro(repo, report)
        _agents(tmp, repo, report, res)
        _hotfix(repo, report)
        _status(repo, report)
        _integrate(repo, report, res)
        _verify(repo, report, res)
        _ledger(repo, report, res)
        _landed(repo, seed, report, res)
        demo_machines.act(tmp, report, res)
        demo_run.act(tmp, report, res)
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)  # the worktrees live inside it too
        res.removed = not tmp.exists()
        res.seconds = round(time.monotonic() - started, 2)
    return res


def _intro(repo: Path, report: Report) -> None:
    from lanes import config

    surfaces = config.load(repo).contended_surfaces()
    report(
        Step(
            "section",
            "1. A repository shaped like the seed's",
            f"{repo}\nA boot manifest listing the 5 migrations schema_guard requires, version "
            f"{scaffold.VERSION} in pyproject.toml and server.json, a deploy workflow with a "
            "verify workflow chained off it. The contended surfaces, which no lane may edit in "
            "its branch: " + ", ".join(surfaces) + ".",
        )
    )


def _agents(tmp: Path, repo: Path, report: Report, res: DemoResult) -> None:
    report(
        Step(
            "section",
            f"2. {len(AGENTS)} agents work in wave {WAVE}, each in its own process, in parallel",
            "Each runs lanes commands (shown without the --json they all carry): claim a lane, "
            "commit in its worktree, drop fragments for the contended files, submit. ams-1 and "
            "ams-2 race for lane personalization; cron-x edits the boot manifest itself.",
        )
    )
    go = tmp / "agents" / "go"
    go.parent.mkdir()
    procs = []
    for agent, wanted in AGENTS:
        scratch = tmp / "agents" / agent
        scratch.mkdir()
        spec = {"agent": agent, "lanes": wanted, "repo": str(repo), "scratch": str(scratch)}
        spec |= {"go": str(go), "transcript": str(scratch / "transcript.json")}
        (scratch / "spec.json").write_text(json.dumps(spec), encoding="utf-8")
        code = "import sys, lanes.demo_agents as a; a.agent_process(sys.argv[1])"
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", code, str(scratch / "spec.json")],
                cwd=repo,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    started = time.monotonic()
    go.touch()  # every agent waits for this file: the race for personalization is real
    ended = [
        (agent, *p.communicate(), p.returncode) for (agent, _), p in zip(AGENTS, procs, strict=True)
    ]
    report(
        Step(
            "note", text=f"all {len(AGENTS)} agents finished in {time.monotonic() - started:.1f} s"
        )
    )
    for agent, _, stderr, rc in ended:
        res.expect(rc == 0, f"agent {agent} crashed (exit {rc}): {stderr.strip()[-300:]}")
        path = tmp / "agents" / agent / "transcript.json"
        for entry in json.loads(path.read_text(encoding="utf-8")) if path.exists() else []:
            report(_agent_step(agent, entry, res))
    res.expect(any(r["exit_code"] == 3 for r in res.refused), "no claim was refused")
    res.expect(
        any(r["error"] == "touches-contended-surface" for r in res.refused),
        "the manifest edit was not refused at submit",
    )


def _agent_step(agent: str, entry: dict[str, Any], res: DemoResult) -> Step:
    if "git" in entry:
        return Step("run", "", entry["text"], agent, entry["where"], entry["git"], 0)
    argv, rc, doc = entry["argv"], entry["rc"], entry["doc"]
    expected = rc == 0 or (argv[0], rc) in (("claim", 3), ("submit", 4))
    command = "lanes " + " ".join("patch.yml" if a.endswith("patch.yml") else a for a in argv)
    if rc != 0:
        lane = doc.get("lane") or (argv[2] if argv[0] == "claim" else "")
        res.refused.append(
            {"agent": agent, "lane": lane, "command": command, "exit_code": rc}
            | {"error": doc.get("error", ""), "message": doc.get("message", "")}
        )
        res.expect(expected, f"{agent}: {command} exited {rc}: {doc.get('message', doc)}")
    return Step("run", "", _outcome(argv[0], rc, doc), agent, entry["where"], command, rc, expected)


def _outcome(cmd: str, rc: int, doc: dict[str, Any]) -> str:
    if rc != 0:
        hint = f"\nhint: {doc['hint']}" if doc.get("hint") else ""
        return f"{doc.get('error', 'error')}: {doc.get('message', '')}{hint}"
    if cmd == "claim":
        return f"holds {doc['wave']}/{doc['lane']}, worktree {doc['worktree']}"
    if cmd == "fragment":
        asked = doc.get("entries") or ([doc["bump"]] if "bump" in doc else [])
        asked += [f"{op['op']} {op['path']}" for op in doc.get("patch", [])]
        return f"{doc['kind']} fragment dropped: {', '.join(map(str, asked))}"
    if cmd == "submit":
        return f"submitted: {doc['commits']} commit(s), {doc['fragments']} fragment(s)"
    return "done"


def _hotfix(repo: Path, report: Report) -> None:
    report(
        Step(
            "section",
            "3. Meanwhile, a hotfix lands on main",
            "Someone commits to src/app.py on main; lane realtime-signal changed the same "
            "lines, from the older main it branched from.",
        )
    )
    with open(repo / "src" / "app.py", "a", encoding="utf-8") as fh:
        fh.write(HOTFIX)
    env = {"GIT_AUTHOR_NAME": "on-call", "GIT_AUTHOR_EMAIL": "on-call@ops.invalid"}
    git.run(["commit", "--quiet", "-am", "hotfix: healthz timeout"], repo, env=env)
    report(
        Step(
            "run",
            "",
            "+ " + HOTFIX.strip(),
            "on-call",
            repo.name,
            'git commit -am "hotfix: healthz timeout"',
            0,
        )
    )


def _status(repo: Path, report: Report) -> None:
    report(
        Step(
            "section",
            "4. Where the lanes stand",
            "Derived from the ledger and the claim directories.",
        )
    )
    rows = [
        [r["lane"], r["agent"], r["state"], str(r["commits_ahead"]), str(r["fragments"])]
        for r in lanes(["status", WAVE], repo).doc.get("lanes", [])
    ]
    report(
        Step(
            "table",
            f"$ lanes status {WAVE}",
            columns=["lane", "agent", "state", "commits", "fragments"],
            rows=rows,
        )
    )


def _operator(repo: Path, argv: list[str], report: Report, res: DemoResult) -> Call | None:
    """Run an operator command; None (reported) when this build does not have it yet."""
    call = lanes(argv, repo)
    if call.missing:
        name = f"lanes {argv[0]}"
        res.unavailable.append(name)
        res.problems.append(f"{name} is not available in this build")
        report(
            Step("note", text=f"`{name}` is not available in this build of lanes: step skipped.")
        )
        return None
    return call


def _integrate(repo: Path, report: Report, res: DemoResult) -> None:
    report(
        Step(
            "section",
            "5. The integrator: one serial pass",
            "The submitted lanes in submit order: each is replayed onto main and its fragments "
            "applied; then the version is bumped once and main moves by compare-and-swap.",
        )
    )
    call = _operator(repo, ["integrate", WAVE], report, res)
    if call is None:
        return
    doc = call.doc
    res.integrated = [str(x) for x in doc.get("integrated", [])]
    res.bounced = [dict(b) for b in doc.get("bounced", [])]
    res.head, res.version = str(doc.get("head", "")), str(doc.get("version", ""))
    lines = [f"integrated: {lane}" for lane in res.integrated]
    for b in res.bounced:
        files = f" [{', '.join(map(str, b['files']))}]" if b.get("files") else ""
        why = b.get("message") or f"{b.get('reason', '')}{files}"
        lines.append(f"bounced:    {b.get('lane')}: {why}")
    lines.append(f"main is at {res.head[:12]}, version {res.version}")
    expected = call.rc == (4 if res.bounced else 0)
    text = "\n".join(lines) if "integrated" in doc else _outcome("integrate", call.rc, doc)
    report(
        Step("run", "", text, "operator", repo.name, f"lanes integrate {WAVE}", call.rc, expected)
    )
    res.expect(expected, f"lanes integrate exited {call.rc}: {doc.get('message', doc)}")
    res.expect(bool(res.integrated), "no lane was integrated")
    res.expect(
        any(b.get("lane") == "realtime-signal" for b in res.bounced),
        "realtime-signal was not bounced",
    )


def _verify(repo: Path, report: Report, res: DemoResult) -> None:
    report(
        Step(
            "section",
            "6. The pre-deploy gate",
            "The invariants whose absence caused RC3 and RC4 of the post-mortem, and more.",
        )
    )
    call = _operator(repo, ["verify", WAVE], report, res)
    if call is None:
        return
    doc = call.doc
    res.verify_ok = call.rc == 0 and doc.get("ok") is True
    res.checks = [dict(c) for c in doc.get("checks", [])]
    res.next = [str(c) for c in doc.get("next", [])]
    failed = [str(c.get("name")) for c in res.checks if not c.get("ok")]
    text = (
        "gate passed"
        if res.verify_ok
        else f"gate failed: {', '.join(failed)}"
        if "checks" in doc
        else _outcome("verify", call.rc, doc)
    )
    report(
        Step("run", "", text, "operator", repo.name, f"lanes verify {WAVE}", call.rc, call.rc == 0)
    )
    rows = [[_mark(c), str(c.get("name", "")), str(c.get("detail", ""))] for c in res.checks]
    report(Step("table", "checks", columns=["", "check", "detail"], rows=rows))
    if res.next:
        report(Step("lines", "next: deploy by direct dispatch (Strategy F)", "\n".join(res.next)))
    res.expect(bool(res.verify_ok), f"lanes verify did not pass (exit {call.rc})")


def _mark(check: dict[str, Any]) -> str:
    return {"pass": "ok", "fail": "FAILED"}.get(str(check.get("status")), str(check.get("status")))


_KEYS = (
    "holder",
    "entries",
    "bump",
    "paths",
    "commits",
    "fragments",
    "files",
    "reason",
    "version",
    "ok",
)


def _details(details: dict[str, Any]) -> str:
    parts = []
    for key in _KEYS:
        value = details.get(key)
        if value is None or value in ("", []):
            continue
        if isinstance(value, list):  # shas and fragment file names: their count says enough
            value = len(value) if key in ("commits", "fragments") else ",".join(map(str, value))
        parts.append(f"{key}={value}")
    return " ".join(parts)


def _ledger(repo: Path, report: Report, res: DemoResult) -> None:
    where = f"{repo.name}/tools/offline/_inbox/{WAVE}/AGENT_LEDGER.md"
    report(
        Step(
            "section",
            "7. The ledger",
            f"Every event in the order it happened (the agents' steps interleave), one "
            f"hash-chained Markdown row each: {where}",
        )
    )
    doc = lanes(["ledger", WAVE], repo).doc
    events = doc.get("lines", [doc] if "event" in doc else [])
    rows = [
        [
            str(e["seq"]),
            e["event"],
            e.get("lane") or "-",
            e.get("agent") or "-",
            _details(e.get("details", {})),
        ]
        for e in events
    ]
    report(
        Step(
            "table",
            f"$ lanes ledger {WAVE}",
            columns=["#", "event", "lane", "agent", "details"],
            rows=rows,
        )
    )
    check = lanes(["ledger", "verify", WAVE], repo)
    res.ledger_ok = check.rc == 0 and check.doc.get("ok") is True
    res.ledger_events = int(check.doc.get("events", 0))
    text = (
        f"chain intact: {res.ledger_events} events"
        if res.ledger_ok
        else _outcome("ledger", check.rc, check.doc)
    )
    report(
        Step(
            "run",
            "",
            text,
            "operator",
            repo.name,
            f"lanes ledger verify {WAVE}",
            check.rc,
            check.rc == 0,
        )
    )
    res.expect(res.ledger_ok, "lanes ledger verify failed")


def _landed(repo: Path, seed: str, report: Report, res: DemoResult) -> None:
    report(Step("section", "8. What landed on main"))
    res.log = git.out(["log", "--oneline", f"{seed}..main"], repo).splitlines()
    report(Step("lines", f"$ git log --oneline {seed[:7]}..main", "\n".join(res.log)))
    res.head = git.out(["rev-parse", "main"], repo)
    res.version = str(
        tomllib.loads(git.out(["show", "main:pyproject.toml"], repo))["project"]["version"]
    )
    server = json.loads(git.out(["show", "main:server.json"], repo))
    before = git.out(["show", f"{seed}:{MANIFEST}"], repo).splitlines()
    res.manifest_added = [
        ln for ln in git.out(["show", f"main:{MANIFEST}"], repo).splitlines() if ln not in before
    ]
    deploy = git.out(["show", "main:.github/workflows/deploy.yml"], repo)
    env_lines = [ln.strip() for ln in deploy.splitlines() if "LEGAL_CHAIN_V2" in ln]
    report(
        Step(
            "lines",
            "the contended files, each changed by the integrator alone",
            f"version {scaffold.VERSION} -> {res.version} in pyproject.toml, "
            f"{server.get('version')} in server.json\n"
            f"manifest entries added: {', '.join(res.manifest_added) or 'none'}\n"
            f"deploy.yml, job deploy, env: {', '.join(env_lines) or 'unchanged'}",
        )
    )
