"""docs/examples/predeploy.yml: its steps run as GitHub runs them (bash -e) and keep the
exit codes of lanes that they mean to handle."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "predeploy.yml"


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


FAKE_GH = """#!/bin/sh
echo "gh $*" >> "$GH_LOG"
case "$1 $2" in
  "run list") [ -z "$GH_LIST_EMPTY" ] && echo 4242 ;;
  "run watch") exit "${GH_WATCH_EXIT:-0}" ;;
esac
"""


def _fake_tools(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in (("gh", FAKE_GH), ("sleep", "#!/bin/sh\nexit 0\n")):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return {"GH_LOG": str(tmp_path / "gh.log")}


def _deploy(tmp_path: Path, next_: list[str], **env: str) -> tuple[int, list[str]]:
    import json

    (tmp_path / "verify.json").write_text(json.dumps({"ok": True, "next": next_, "warnings": []}))
    step_env = {**_fake_tools(tmp_path), **env}
    (tmp_path / "gh.log").unlink(missing_ok=True)
    rc, _ = run_step(
        tmp_path, "Deploy by direct dispatch, then each chained workflow", 0, "", **step_env
    )
    log = tmp_path / "gh.log"
    return rc, log.read_text().splitlines() if log.exists() else []


def test_the_deploy_step_runs_next_in_order_and_waits_for_each_run(tmp_path: Path) -> None:
    from tests.test_gate import WATCH  # the gate's own line, as test_gate checks it

    next_ = ["gh workflow run deploy.yml --ref main", WATCH, "gh workflow run verify --ref main"]
    rc, calls = _deploy(tmp_path, next_)
    assert rc == 0
    runs = [c for c in calls if c.startswith(("gh workflow run", "gh run watch"))]
    assert runs == [
        "gh workflow run deploy.yml --ref main",
        "gh run watch 4242 --exit-status",
        "gh workflow run verify --ref main",
        "gh run watch 4242 --exit-status",
    ]
    rc, calls = _deploy(tmp_path, next_, GH_WATCH_EXIT="1")
    assert rc == 1  # a failed deploy run stops the chain
    assert "gh workflow run verify --ref main" not in calls


def test_the_deploy_step_refuses_a_push_it_did_not_make(tmp_path: Path) -> None:
    rc, calls = _deploy(
        tmp_path, ["git push origin main:main", "gh workflow run deploy.yml --ref main"]
    )
    assert rc == 1 and calls == []


def test_the_gate_s_watch_line_runs_as_it_is(tmp_path: Path) -> None:
    from tests.test_gate import WATCH

    env = {
        **os.environ,
        **_fake_tools(tmp_path),
        "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}",
    }
    for code in (0, 1):
        proc = subprocess.run(["bash", "-c", WATCH], env={**env, "GH_WATCH_EXIT": str(code)})
        assert proc.returncode == code
    assert (tmp_path / "gh.log").read_text().splitlines()[-1] == "gh run watch 4242 --exit-status"


def test_the_watch_line_fails_when_no_run_appears(tmp_path: Path) -> None:
    from tests.test_gate import WATCH

    env = {
        **os.environ,
        **_fake_tools(tmp_path),
        "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}",
    }
    proc = subprocess.run(
        ["bash", "-c", WATCH], env={**env, "GH_LIST_EMPTY": "1"}, capture_output=True, text=True
    )
    assert proc.returncode == 1 and "appeared" in proc.stderr
    assert "gh run watch" not in (tmp_path / "gh.log").read_text()
