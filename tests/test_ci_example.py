"""docs/examples/predeploy.yml: its steps run as GitHub runs them (bash -e) and keep the
exit codes of lanes that they mean to handle."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "predeploy.yml"
pytestmark = pytest.mark.skipif(shutil.which("jq") is None, reason="the example uses jq")


def step(name: str) -> str:
    doc: Any = YAML(typ="safe").load(EXAMPLE.read_text(encoding="utf-8"))
    (found,) = [s for s in doc["jobs"]["predeploy"]["steps"] if s["name"] == name]
    return str(found["run"])


def run_step(tmp_path: Path, name: str, code: int, output: str, **env: str) -> tuple[int, str]:
    """Run the step's script with GitHub's bash flags and a `lanes` that exits `code`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "lanes"
    fake.write_text(f"#!/bin/sh\ncat <<'EOF'\n{output}\nEOF\nexit {code}\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    summary = tmp_path / "summary.md"
    proc = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step(name)],
        env={
            **os.environ,
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "WAVE": "45",
            "OUT": str(tmp_path),
            "GITHUB_STEP_SUMMARY": str(summary),
            **env,
        },
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.returncode, summary.read_text() if summary.exists() else ""


BOUNCED = '{"integrated": ["a"], "bounced": [{"lane": "b", "reason": "conflict"}]}'


def test_bounces_stop_the_run_unless_allowed_and_are_summarised(tmp_path: Path) -> None:
    rc, summary = run_step(tmp_path, "Integrate", 4, BOUNCED, ALLOW_BOUNCES="false")
    assert rc == 4 and "**bounced**: b: conflict" in summary
    rc, summary = run_step(tmp_path, "Integrate", 4, BOUNCED, ALLOW_BOUNCES="true")
    assert rc == 0 and "integrated: a" in summary


def test_a_failed_gate_is_summarised_and_fails_the_step(tmp_path: Path) -> None:
    checks = '{"ok": false, "checks": [{"name": "versions-agree", "ok": false, "detail": "x"}]}'
    rc, summary = run_step(tmp_path, "Gate", 4, checks)
    assert rc == 4 and "versions-agree: x" in summary
