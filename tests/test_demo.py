"""`lanes demo` as a user runs it: a real process, offline, on a scratch repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from lanes.scaffold import MANIFEST


def _demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # TMPDIR: the demo's scratch directory lands in tmp_path, where we can check it is gone.
    return subprocess.run(
        [sys.executable, "-m", "lanes", "demo", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        timeout=300,
    )


def _scratch_dirs(tmp_path: Path) -> list[Path]:
    return sorted(tmp_path.glob("lanes-demo-*"))


def test_demo_json_tells_the_whole_story(tmp_path: Path) -> None:
    proc = _demo(tmp_path, "--json")
    doc = json.loads(proc.stdout)  # exactly one JSON document, nothing else
    assert proc.returncode == 0, (doc.get("problems"), proc.stderr)
    assert doc["schema_version"] == 1
    assert doc["ok"] is True and doc["problems"] == [] and doc["unavailable"] == []

    # The race: two agents for lane personalization, one holder, the other refused with 3.
    claims = [r for r in doc["refused"] if r["command"].startswith("lanes claim")]
    assert [(r["lane"], r["exit_code"], r["error"]) for r in claims] == [
        ("personalization", 3, "claimed")
    ]
    # The rule-breaker: its submit names the manifest and the fragment to use instead.
    [bad] = [r for r in doc["refused"] if r["command"] == "lanes submit"]
    assert (bad["agent"], bad["exit_code"], bad["error"]) == (
        "cron-x",
        4,
        "touches-contended-surface",
    )
    assert MANIFEST in bad["message"] and "lanes fragment manifest" in bad["message"]

    # It fixed its branch and landed; the lane under the hotfix bounced with a reason.
    assert set(doc["integrated"]) == {
        "legal-chain",
        "personalization",
        "fdi-80country",
        "cross-source",
    }
    [bounced] = doc["bounced"]
    assert bounced["lane"] == "realtime-signal" and bounced["reason"]

    # The gate passed and says how to deploy by hand; the ledger's chain is whole.
    assert doc["verify_ok"] is True and doc["checks"]
    assert all(check["ok"] for check in doc["checks"])
    assert any(cmd.startswith("gh workflow run") for cmd in doc["next"])
    assert doc["ledger_ok"] is True and doc["ledger_events"] > 20

    # main: one bump (the largest asked for, minor), every entry of a landed lane once.
    assert doc["version"] == "0.4.0"
    assert sorted(doc["manifest_added"]) == [
        "261_legal_chain_v2.sql",
        "264_personalization.sql",
        "265_cross_source_agreement.sql",
        "266_fdi_80country.sql",
    ]
    assert len(doc["head"]) == 40 and any("hotfix" in line for line in doc["log"])

    # Many machines: two clones shared wave 45 through the remote's refs, a third landed it.
    machines = doc["machines"]
    assert machines["refused_holder"] == "laptop-agent"
    assert {"refs/lanes/45/claims/audit-log", "refs/lanes/45/ledger"} <= set(
        machines["remote_refs"]
    )
    assert machines["integrated"] == ["audit-log", "search-v2"]
    assert machines["verify_ok"] is True and machines["ledger_ok"] is True

    # The runner: five agents from a plan, three landed, the rule-breaker and the hung one
    # kept claimed with the reason, and the gate refusing a wave with unfinished lanes.
    runner = doc["runner"]
    assert runner["exit_code"] == 4 and runner["events"] > 10
    assert runner["outcomes"] == {
        "billing-export": "integrated",
        "search-index": "integrated",
        "audit-trail": "integrated",
        "notify-digest": "submit-refused",
        "slow-report": "timeout",
    }
    assert sorted(runner["integrated"]) == ["audit-trail", "billing-export", "search-index"]
    assert runner["verify_ok"] is False

    # It cleaned up after itself: the scratch directory (worktrees inside it) is gone.
    assert doc["removed"] is True and not doc["kept"]
    assert not Path(doc["directory"]).exists()
    assert _scratch_dirs(tmp_path) == []


def test_demo_for_people_keeps_the_repository_when_asked(tmp_path: Path) -> None:
    proc = _demo(tmp_path, "--keep")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    out = proc.stdout
    for heading in (
        "1. A repository",
        "2. 5 agents",
        "5. The integrator",
        "6. The pre-deploy gate",
    ):
        assert heading in out
    assert "exit 3" in out and "exit 4" in out and "bounced" in out
    [kept] = _scratch_dirs(tmp_path)
    try:
        assert f"kept the scratch repository: {kept}/jpcite" in " ".join(out.split())
        repo = kept / "jpcite"
        log = subprocess.run(
            ["git", "log", "--format=%s%n%b", "main"], cwd=repo, capture_output=True, text=True
        ).stdout
        assert "Lanes-Lane: legal-chain" in log  # what landed is readable from main itself
        assert (repo / "tools/offline/_inbox/44/AGENT_LEDGER.md").is_file()
    finally:
        shutil.rmtree(kept)
