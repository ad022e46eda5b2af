"""The agents of `lanes demo`: what each one does, and the script it runs in its own process.

Each agent is a short script of `lanes` calls, run as real processes with --json, exactly as
an AI agent would run them: claim a lane, commit in its worktree, drop fragments for the
contended files, submit. Its transcript goes to a JSON file the story reads afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lanes import git, scaffold

WAVE = "44"
MANIFEST = scaffold.MANIFEST


@dataclass(frozen=True)
class Work:
    """What an agent does once it holds a lane."""

    message: str
    files: dict[str, str]  # new files, committed in the lane's branch
    fragments: list[list[str]] = field(default_factory=list)  # args after `lanes fragment`
    appends: dict[str, str] = field(default_factory=dict)  # text appended to existing files
    edits_manifest: list[str] = field(default_factory=list)  # breaks the rule with these


def _migration(name: str, sql: str) -> dict[str, str]:
    return {f"scripts/migrations/{name}": f"-- {name}\n{sql}\n"}


DEPLOY_PATCH = """\
# Ask the integrator to add one environment variable to the deploy job.
- op: add
  path: /jobs/deploy/env/LEGAL_CHAIN_V2
  value: enabled
"""

WORK = {
    "legal-chain": Work(
        "legal chain v2: migration 261 and its loader",
        {
            **_migration("261_legal_chain_v2.sql", "CREATE TABLE IF NOT EXISTS legal_chain (id);"),
            "src/legal_chain.py": '"""Legal chain v2 loader."""\n',
        },
        [["manifest", "261_legal_chain_v2.sql"], ["version", "minor"], ["deploy", DEPLOY_PATCH]],
    ),
    "realtime-signal": Work(
        "realtime signal: migration 263 and its router",
        _migration("263_realtime_signal.sql", "CREATE TABLE IF NOT EXISTS realtime_signal (id);"),
        [["manifest", "263_realtime_signal.sql"]],
        appends={"src/app.py": 'ROUTERS = ["realtime_signal"]\n'},
    ),
    "personalization": Work(
        "personalization: migration 264",
        _migration("264_personalization.sql", "ALTER TABLE programs ADD COLUMN audience TEXT;"),
        [["manifest", "264_personalization.sql"], ["version", "patch"]],
    ),
    "fdi-80country": Work(
        "FDI for 80 countries: migration 266",
        _migration("266_fdi_80country.sql", "CREATE VIEW IF NOT EXISTS fdi_80 AS SELECT 1;"),
        [["manifest", "266_fdi_80country.sql"]],
    ),
    "cross-source": Work(
        "cross-source agreement: migration 265",
        _migration("265_cross_source_agreement.sql", "CREATE TABLE IF NOT EXISTS agreement (id);"),
        edits_manifest=["265_cross_source_agreement.sql"],
    ),
}

# Each agent with the lanes it tries, in order. ams-1 and ams-2 race for personalization: the
# loser is refused (exit 3) and takes the next lane. cron-x edits the manifest in its branch.
AGENTS = [
    ("dim-a", ["legal-chain"]),
    ("dim-b", ["realtime-signal"]),
    ("ams-1", ["personalization", "fdi-80country"]),
    ("ams-2", ["personalization", "fdi-80country"]),
    ("cron-x", ["cross-source"]),
]


@dataclass(frozen=True)
class Call:
    argv: list[str]
    rc: int
    doc: dict[str, Any]

    @property
    def missing(self) -> bool:
        """The command does not exist in this build of lanes."""
        return self.rc == 2 and "No such command" in str(self.doc.get("message", ""))


def lanes(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> Call:
    """Run `lanes ARGV --json` as a real process and read its JSON (one object per line)."""
    proc = subprocess.run(
        [sys.executable, "-m", "lanes", *argv, "--json"],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    try:
        docs = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    except ValueError:
        docs = []
    if len(docs) == 1:
        return Call(argv, proc.returncode, docs[0])
    if not docs and proc.returncode != 0:
        docs = [{"error": "no-json", "message": proc.stderr.strip()[-500:]}]
        return Call(argv, proc.returncode, docs[0])
    return Call(argv, proc.returncode, {"lines": docs})


def agent_process(spec_path: str) -> None:
    """Entry point of one agent's process: wait for the start signal, run, save the transcript."""
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    go = Path(spec["go"])
    deadline = time.monotonic() + 60
    while not go.exists() and time.monotonic() < deadline:  # start together: a real race
        time.sleep(0.002)
    log: list[dict[str, Any]] = []
    try:
        _script(spec, log)
    finally:
        Path(spec["transcript"]).write_text(json.dumps(log), encoding="utf-8")


def _script(spec: dict[str, Any], log: list[dict[str, Any]]) -> None:
    agent, repo, scratch = spec["agent"], Path(spec["repo"]), Path(spec["scratch"])
    env = {"GIT_AUTHOR_NAME": agent, "GIT_AUTHOR_EMAIL": f"{agent}@agents.invalid"}

    def run(argv: list[str], cwd: Path) -> Call:
        call = lanes(argv, cwd, env)
        log.append({"argv": argv, "where": cwd.name, "rc": call.rc, "doc": call.doc})
        return call

    def commit(wt: Path, args: list[str], shown: str, text: str) -> None:
        git.run(["add", "--all"], wt, env=env)
        git.run(["commit", "--quiet", *args], wt, env=env)
        log.append({"git": shown, "where": wt.name, "text": text})

    for lane in spec["lanes"]:
        claim = run(["claim", WAVE, lane, "--agent", agent], repo)
        if claim.rc != 3:  # exit 3: someone holds it, try the next lane
            break
    if claim.rc != 0:
        return
    wt, work = Path(claim.doc["worktree"]), WORK[lane]
    for rel, text in work.files.items():
        (wt / rel).write_text(text, encoding="utf-8")
    for rel, text in [*work.appends.items(), (MANIFEST, "\n".join(work.edits_manifest))]:
        if text:
            with open(wt / rel, "a", encoding="utf-8") as fh:
                fh.write(text if text.endswith("\n") else text + "\n")
    changed = sorted([*work.files, *work.appends] + ([MANIFEST] if work.edits_manifest else []))
    commit(
        wt,
        ["-m", work.message],
        f'git add --all && git commit -m "{work.message}"',
        "committed " + ", ".join(changed),
    )
    for frag in work.fragments:
        if frag[0] == "deploy":
            (scratch / "patch.yml").write_text(frag[1], encoding="utf-8")
            frag = ["deploy", str(scratch / "patch.yml")]
        run(["fragment", *frag], wt)
    if run(["submit"], wt).rc == 4 and work.edits_manifest:
        # Do what the refusal says: take the edit out of the branch, drop a fragment instead.
        base = claim.doc["base"]
        git.run(["checkout", base, "--", MANIFEST], wt)
        commit(
            wt,
            ["--amend", "--no-edit"],
            f"git checkout {base[:7]} -- {MANIFEST} && git commit --amend --no-edit",
            "the branch no longer touches the manifest",
        )
        run(["fragment", "manifest", *work.edits_manifest], wt)
        run(["submit"], wt)
