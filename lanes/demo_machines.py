"""`lanes demo`, the many-machines act: one wave shared through a git remote, no shared disk.

A bare repository stands for the git server; two clones are two machines (a laptop and a
cloud agent), each with an agent; a third clone, made after their work, is the CI job
that integrates and gates. Every machine runs the same `lanes` commands as before; with
`remote = "origin"` committed in the configuration, claims, fragments and the ledger live
on the remote under `refs/lanes/<wave>/` (docs/remote.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lanes import git, scaffold
from lanes.demo_agents import lanes

if TYPE_CHECKING:
    from lanes.demo import DemoResult, Step

WAVE = "45"


@dataclass
class MachinesResult:
    refused_holder: str = ""  # who the cloud agent was told holds the lane it raced for
    remote_refs: list[str] = field(default_factory=list)
    integrated: list[str] = field(default_factory=list)
    verify_ok: bool | None = None
    ledger_ok: bool | None = None


def act(tmp: Path, report: Callable[[Step], None], res: DemoResult) -> None:
    from lanes.demo import Step

    out = res.machines
    report(
        Step(
            "section",
            "9. Many machines: the wave on the git remote",
            '`remote = "origin"` in the configuration: a laptop and a cloud agent, two clones '
            "of one server, share wave 45 through refs on it; the CI job, a fresh clone made "
            "afterwards, integrates and gates it, with no shared disk.",
        )
    )
    root = tmp / "machines"
    seed = scaffold.make_seed_repo(root / "seed", root / "wt")
    py = seed / "pyproject.toml"
    py.write_text(
        py.read_text().replace('stale_after = "30m"', 'stale_after = "30m"\nremote = "origin"')
    )
    git.run(["commit", "--quiet", "-am", "lanes: coordinate through origin"], seed)
    server = root / "server.git"
    git.run(["clone", "--quiet", "--bare", str(seed), str(server)], root)
    laptop, cloud = (_clone(server, root / name) for name in ("laptop", "cloud"))

    def run(machine: Path, argv: list[str], actor: str, expect: int = 0) -> dict[str, Any]:
        call = lanes(argv, machine)
        shown = " ".join(a if " " not in a else repr(a) for a in argv)
        report(
            Step(
                "run",
                "",
                _said(call.doc),
                actor,
                machine.name,
                f"lanes {shown}",
                call.rc,
                call.rc == expect,
            )
        )
        res.expect(
            call.rc == expect, f"lanes {shown} on {machine.name} exited {call.rc}: {call.doc}"
        )
        return call.doc

    for machine, agent, lane, migration, bump in (
        (laptop, "laptop-agent", "audit-log", "270_audit_log.sql", "patch"),
        (cloud, "cloud-agent", "search-v2", "271_search_v2.sql", "minor"),
    ):
        doc = run(machine, ["claim", WAVE, lane, "--agent", agent], agent)
        wt = Path(str(doc.get("worktree", machine)))
        for rel, text in (
            (f"scripts/migrations/{migration}", f"-- {migration}\n"),
            (f"src/{lane}.py", ""),
        ):
            (wt / rel).parent.mkdir(parents=True, exist_ok=True)
            (wt / rel).write_text(text or f'"""{lane}."""\n', encoding="utf-8")
        git.run(["add", "--all"], wt)
        git.run(["commit", "--quiet", "-m", f"{lane}: migration {migration}"], wt)
        run(wt, ["fragment", "manifest", migration], agent)
        run(wt, ["fragment", "version", bump], agent)
        if lane == "search-v2":  # the race across machines: the laptop's lane is taken
            lost = run(cloud, ["claim", WAVE, "audit-log", "--agent", agent], agent, expect=3)
            out.refused_holder = str(lost.get("holder", ""))
        run(wt, ["submit"], agent)
    out.remote_refs = sorted(
        line.split("\t", 1)[1]
        for line in git.out(["ls-remote", str(server), "refs/lanes/*"], root).splitlines()
    )
    report(Step("lines", "$ git ls-remote origin 'refs/lanes/*'", "\n".join(out.remote_refs)))
    ci = _clone(server, root / "ci")  # made now: it has never seen either machine's disk
    doc = run(ci, ["integrate", WAVE], "ci")
    out.integrated = [str(x) for x in doc.get("integrated", [])]
    gate = run(ci, ["verify", WAVE], "ci")
    out.verify_ok = gate.get("ok") is True
    out.ledger_ok = run(laptop, ["ledger", "verify", WAVE], "laptop-agent").get("ok") is True
    res.expect(out.refused_holder == "laptop-agent", "the cross-machine race was not refused")
    res.expect(out.integrated == ["audit-log", "search-v2"], "the remote wave did not land")


def _clone(server: Path, dest: Path) -> Path:
    git.run(["clone", "--quiet", str(server), str(dest)], dest.parent)
    git.run(["config", "user.name", f"lanes demo ({dest.name})"], dest)
    git.run(["config", "user.email", "demo@lanes.invalid"], dest)
    return dest


def _said(doc: dict[str, Any]) -> str:
    if "error" in doc:
        holder = f", held by {doc['holder']}" if doc.get("holder") else ""
        return f"{doc['error']}{holder}"
    if "integrated" in doc:
        return f"integrated: {', '.join(map(str, doc['integrated'])) or 'none'}; main at {str(doc.get('head', ''))[:12]}"
    if "checks" in doc:
        return "gate passed" if doc.get("ok") else "gate failed"
    if "worktree" in doc:
        return f"holds the lane; worktree {doc['worktree']}"
    if "ok" in doc:
        return f"chain intact: {doc.get('events', '?')} events" if doc["ok"] else "chain broken"
    return "done"
