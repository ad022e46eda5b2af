"""`lanes demo`, the wave-runner act: `lanes run` launches, watches and lands five agents.

The agents are one small script (AGENT below) with a behaviour each, given by the plan's
`env`: three do their work and drop fragments, one edits the boot manifest itself (its
submit is refused, and the lane waits with its work), one hangs past its timeout (stopped,
its lane kept claimed). The runner claims each lane, gives each agent its brief on
standard input, submits the finished ones, integrates and gates, all in one command.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lanes import scaffold
from lanes.demo_agents import lanes

if TYPE_CHECKING:
    from lanes.demo import DemoResult, Step

WAVE = "46"

AGENT = '''\
"""A scripted agent: reads its brief on stdin, works in its worktree (the cwd)."""
import os, subprocess, sys, time

brief = sys.stdin.read()
assert "lanes fragment manifest" in brief, "the brief names the fragment commands"
lane, behaviour = os.environ["LANES_LANE"], os.environ["DEMO_BEHAVIOUR"]
if behaviour == "hangs":
    print("thinking...", flush=True)
    time.sleep(600)
migration = os.environ["DEMO_MIGRATION"]
with open(f"scripts/migrations/{migration}", "w") as fh:
    fh.write(f"-- {migration}\\nSELECT 1;\\n")
with open(f"src/{lane.replace('-', '_')}.py", "w") as fh:
    fh.write(f'"""{lane}."""\\n')
if behaviour == "edits-manifest":  # breaks the rule: the runner's submit is refused
    with open(os.environ["DEMO_MANIFEST"], "a") as fh:
        fh.write(migration + "\\n")
subprocess.run(["git", "add", "--all"], check=True)
subprocess.run(["git", "commit", "--quiet", "-m", f"{lane}: {migration}"], check=True)
lanes = [sys.executable, "-m", "lanes", "fragment"]
if behaviour != "edits-manifest":
    subprocess.run([*lanes, "manifest", migration, "--json"], check=True, stdout=subprocess.DEVNULL)
if os.environ.get("DEMO_BUMP"):
    subprocess.run([*lanes, "version", os.environ["DEMO_BUMP"], "--json"], check=True, stdout=subprocess.DEVNULL)
print(f"{lane}: committed {migration}", flush=True)
'''

LANES = [  # name, behaviour, migration, bump
    ("billing-export", "works", "280_billing_export.sql", "minor"),
    ("search-index", "works", "281_search_index.sql", ""),
    ("audit-trail", "works", "282_audit_trail.sql", "patch"),
    ("notify-digest", "edits-manifest", "283_notify_digest.sql", ""),
    ("slow-report", "hangs", "284_slow_report.sql", ""),
]


@dataclass
class RunActResult:
    exit_code: int | None = None
    outcomes: dict[str, str] = field(default_factory=dict)
    integrated: list[str] = field(default_factory=list)
    verify_ok: bool | None = None  # False: two lanes are unfinished, and the gate says so
    events: int = 0  # JSON Lines the runner printed before its summary


def act(tmp: Path, report: Callable[[Step], None], res: DemoResult) -> None:
    from lanes.demo import Step

    out = res.runner
    report(
        Step(
            "section",
            f"10. The wave runner: lanes run {WAVE} --plan wave.toml",
            "One command does the operator's whole job: five agents from a plan, each claimed, "
            "given its brief on standard input, watched and, once it exits 0 with its work "
            "committed, submitted; then the pass and the gate. notify-digest edits the boot "
            "manifest itself; slow-report hangs past its 3 s timeout.",
        )
    )
    root = tmp / "runner"
    repo = scaffold.make_seed_repo(root / "jpcite", root / "wt")
    agent = root / "agent.py"
    agent.write_text(AGENT, encoding="utf-8")
    plan = root / "wave.toml"
    plan.write_text(_plan(agent), encoding="utf-8")
    argv = ["run", WAVE, "--plan", str(plan), "--parallel", "5", "--integrate", "--verify"]
    call = lanes(argv, repo)
    lines: list[dict[str, Any]] = call.doc.get("lines", [call.doc])
    summary: dict[str, Any] = next((d for d in reversed(lines) if d.get("event") == "summary"), {})
    out.exit_code, out.events = call.rc, len(lines) - 1
    out.outcomes = {str(ln["lane"]): str(ln["outcome"]) for ln in summary.get("lanes", [])}
    out.integrated = [str(x) for x in (summary.get("integrate") or {}).get("integrated", [])]
    out.verify_ok = (summary.get("verify") or {}).get("ok") is True
    report(
        Step(
            "run",
            "",
            f"{out.events} events (JSON Lines), then the summary: {summary.get('outcome', call.doc)}",
            "operator",
            repo.name,
            f"lanes run {WAVE} --plan wave.toml --parallel 5 --integrate --verify",
            call.rc,
            call.rc == 4,
        )
    )
    rows = [
        [str(ln["lane"]), str(ln["outcome"]), str(ln.get("reason", ""))[:110]]
        for ln in summary.get("lanes", [])
    ]
    report(Step("table", "where each lane is", columns=["lane", "outcome", "why"], rows=rows))
    report(
        Step(
            "note",
            text=f"integrated: {', '.join(out.integrated) or 'none'}. The gate "
            + ("passed: it should not have" if out.verify_ok else "fails (wave-integrated)")
            + ": two lanes of the wave are unfinished, and a deploy now would leave their work "
            "out. They stay claimed with their work; fixed, the same command resumes them on "
            "their branches.",
        )
    )
    res.expect(call.rc == 4, f"lanes run exited {call.rc}, not 4 (lanes-unfinished)")
    res.expect(
        out.outcomes
        == {
            "billing-export": "integrated",
            "search-index": "integrated",
            "audit-trail": "integrated",
            "notify-digest": "submit-refused",
            "slow-report": "timeout",
        },
        f"the runner's outcomes were {out.outcomes}",
    )
    res.expect(out.verify_ok is False, "the gate passed a wave with unfinished lanes")


def _plan(agent: Path) -> str:
    lines = [
        "[defaults]",
        f"command = {json.dumps([sys.executable, str(agent)])}",
        'timeout = "60s"',
        'grace = "1s"',
        "",
    ]
    for name, behaviour, migration, bump in LANES:
        env = {"DEMO_BEHAVIOUR": behaviour, "DEMO_MIGRATION": migration}
        env |= {"DEMO_MANIFEST": scaffold.MANIFEST} | ({"DEMO_BUMP": bump} if bump else {})
        lines += [
            "[[lane]]",
            f'name = "{name}"',
            f'task = "Add {migration} and its module; ask for its manifest entry."',
            f'owns = ["src/{name.replace("-", "_")}.py"]',
            "env = { " + ", ".join(f'{k} = "{v}"' for k, v in env.items()) + " }",
        ]
        if behaviour == "hangs":
            lines.append('timeout = "3s"')
        lines.append("")
    return "\n".join(lines)
