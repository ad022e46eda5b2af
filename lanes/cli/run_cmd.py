"""`lanes run WAVE --plan FILE`: the wave runner (lanes/runner.py), watched.

On a terminal (standard error), a live table of every lane, refreshed in place; elsewhere,
one plain line per step on standard error. With --json, standard output holds one JSON
object per event (JSON Lines, each with "schema_version": 1) and, as its last line, the
summary document (`"event": "summary"`): the one exception to "one JSON document", because
a run lasts minutes and a watcher must see it as it goes (docs/runner.md).
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from lanes.runner import RunResult


def register(app: typer.Typer) -> None:
    app.command("run")(run)


def run(
    wave: Annotated[str, typer.Argument(help="The wave to run, e.g. 44.")],
    plan: Annotated[Path, typer.Option("--plan", help="The plan: a TOML file of [[lane]] tables.")],
    parallel: Annotated[
        int, typer.Option("--parallel", min=1, help="At most this many agents at once.")
    ] = 4,
    integrate: Annotated[
        bool, typer.Option("--integrate", help="Then run the integration pass.")
    ] = False,
    verify: Annotated[bool, typer.Option("--verify", help="Then run the pre-deploy gate.")] = False,
    json_: Annotated[
        bool,
        typer.Option(
            "--json", help="Print one JSON object per event, then a summary (JSON Lines)."
        ),
    ] = False,
) -> None:
    """Run a wave: claim each lane of the plan, start its agent in its worktree, watch it,
    submit it when it exits 0 with its work committed; then integrate and gate if asked.

    Exit 0 when every lane was submitted (and integrated, and the gate passed, when asked);
    4 when a lane did not finish (each lane's reason says where it is and what to do),
    bounced, or the gate failed; 3 when another runner runs this wave here; 2 for a bad
    plan (nothing is claimed); 130 on Ctrl-C (every agent stopped; run again to resume).
    """
    from lanes import runner, wave_plan
    from lanes.cli.context import config
    from lanes.names import check_wave

    check_wave(wave)
    cfg = config()
    the_plan = wave_plan.load(plan)
    view = _view(json_)
    with view:
        result = runner.run(cfg, wave, the_plan, parallel, view.event)
        doc = result.to_json()
        integrated: dict[str, Any] | None = None
        verified: dict[str, Any] | None = None
        if not result.interrupted and integrate:
            integrated = _integrate(cfg, wave, view)
            view.event({"event": "integrate", "wave": wave, **integrated})
            _apply_integration(doc, integrated)
        if not result.interrupted and verify:
            verified = _verify(cfg, wave)
            view.event({"event": "verify", "wave": wave, **verified})
    code = _outcome(result, doc, integrated, verified)
    from lanes.errors import exit_code

    summary = {
        "event": "summary",
        **doc,
        "finished": all(lane["outcome"] in ("submitted", "integrated") for lane in doc["lanes"])
        and not result.interrupted,
        "integrate": integrated,
        "verify": verified,
        "outcome": code,
        "exit_code": exit_code(code),
    }
    if json_:
        from lanes.cli.output import print_json

        print_json(summary)
    else:
        _show_summary(summary, result)
    raise typer.Exit(exit_code(code))


def _integrate(cfg: Any, wave: str, view: _View) -> dict[str, Any]:
    from integrator.integrate import integrate as run_pass
    from lanes.errors import LanesError

    def progress(kind: str, text: str) -> None:
        view.event({"event": "integrate-progress", "wave": wave, "kind": kind, "text": text})

    try:
        return dict(run_pass(cfg, wave, progress).to_json())
    except LanesError as exc:
        return exc.to_json()


def _verify(cfg: Any, wave: str) -> dict[str, Any]:
    from integrator import gate
    from lanes.cli.output import plain
    from lanes.errors import LanesError

    try:
        report = gate.verify(cfg, wave)
    except LanesError as exc:
        return exc.to_json()
    doc: dict[str, Any] = plain(report)
    doc["failed"] = report.failed
    return doc


def _apply_integration(doc: dict[str, Any], integrated: dict[str, Any]) -> None:
    """The lanes the pass landed are integrated; those it bounced, bounced."""
    landed = set(integrated.get("integrated", [])) | set(integrated.get("reconciled", []))
    bounced = {b["lane"]: b for b in integrated.get("bounced", [])}
    for lane in doc["lanes"]:
        if lane["lane"] in landed:
            lane["outcome"], lane["reason"] = "integrated", "integrated by this run's pass"
        elif lane["lane"] in bounced:
            b = bounced[lane["lane"]]
            lane["outcome"] = "bounced"
            lane["reason"] = f"bounced by the pass: {b['reason']}: {b.get('message', '')}".strip()
        lane["finished"] = lane["outcome"] in ("submitted", "integrated")


def _outcome(
    result: RunResult,
    doc: dict[str, Any],
    integrated: dict[str, Any] | None,
    verified: dict[str, Any] | None,
) -> str:
    """The registry code the run ends with (docs/runner.md, "Exit codes")."""
    if result.interrupted:
        return "interrupted"
    outcomes = {lane["outcome"] for lane in doc["lanes"]}
    if outcomes - {"submitted", "integrated", "bounced"}:
        return "lanes-unfinished"
    if integrated is not None and "error" in integrated:
        return str(integrated["error"])
    if "bounced" in outcomes:
        return "lane-bounced"
    if verified is not None and "error" in verified:
        return str(verified["error"])
    if verified is not None and not verified.get("ok"):
        return "gate-failed"
    return "done"


# -- watching ----------------------------------------------------------------------------------

_STYLE = {
    "submitted": "green",
    "integrated": "green",
    "running": "cyan",
    "failed": "red",
    "timeout": "red",
    "uncommitted": "yellow",
    "off-branch": "yellow",
    "no-work": "yellow",
    "cannot-start": "red",
    "keeper-lost": "red",
    "submit-refused": "red",
    "released": "yellow",
    "reaped": "yellow",
    "held-elsewhere": "yellow",
    "claim-failed": "red",
    "interrupted": "yellow",
    "bounced": "red",
}
# Outcomes of a lane this runner's agent still holds, its work in its worktree.
_KEPT = (
    "failed",
    "timeout",
    "uncommitted",
    "off-branch",
    "no-work",
    "cannot-start",
    "keeper-lost",
    "submit-refused",
    "interrupted",
    "bounced",
)


class _View:
    """What the user sees while the runner works; `event` is called from its threads."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.lock = threading.Lock()
        self.rows: dict[str, dict[str, Any]] = {}
        self.live: Any = None
        self.wave = ""

    def __enter__(self) -> _View:
        if sys.stderr.isatty():
            from rich.live import Live

            from lanes.cli.output import err_console

            self.live = Live(
                get_renderable=self.render,
                console=err_console(),
                refresh_per_second=4,
                transient=False,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.refresh()
            self.live.stop()

    # -- events --

    def event(self, doc: dict[str, Any]) -> None:
        with self.lock:
            self._update(doc)
        if self.as_json:
            from lanes.cli.output import print_json

            print_json(doc)
        self._say(doc)

    def _update(self, doc: dict[str, Any]) -> None:
        kind, lane = doc["event"], doc.get("lane", "")
        if kind == "run-start":
            self.wave = doc["wave"]
            for name in doc["lanes"]:
                self.rows[name] = {"lane": name, "agent": "", "state": "waiting", "line": ""}
            return
        row = self.rows.get(lane)
        if row is None:
            return
        if kind == "claim":
            row.update(agent=doc["agent"], state="resumed" if doc.get("kept") else "claimed")
        elif kind == "agent-start":
            row.update(state="running", started=time.monotonic(), agent=doc["agent"])
        elif kind == "progress":
            row.update(line=doc["last_line"], commits=doc["commits"], fragments=doc["fragments"])
        elif kind == "agent-exit":
            row.update(state="exited" if doc["code"] != "timeout" else "timeout")
            row["seconds"] = doc["seconds"]
        elif kind == "lane-result":
            row.update(
                state=doc["outcome"],
                agent=doc["agent"],
                commits=doc.get("commits"),
                fragments=doc.get("fragments"),
                reason=doc.get("reason", ""),
            )
            if doc.get("seconds") is not None:
                row["seconds"] = doc["seconds"]
        elif kind == "integrate" and "integrated" in doc:
            for name in doc["integrated"]:
                if name in self.rows:
                    self.rows[name]["state"] = "integrated"
            for b in doc.get("bounced", []):
                if b["lane"] in self.rows:
                    self.rows[b["lane"]]["state"] = "bounced"

    def render(self) -> Any:
        from rich.markup import escape
        from rich.table import Table

        tbl = Table(title=f"lanes run {self.wave}", title_justify="left", expand=False)
        for col in ("lane", "agent", "state", "elapsed", "last line", "commits", "fragments"):
            tbl.add_column(
                col,
                no_wrap=True,
                overflow="ellipsis",
                max_width=60 if col == "last line" else None,
            )
        now = time.monotonic()
        with self.lock:
            rows = [dict(r) for r in self.rows.values()]
        for r in rows:
            if "seconds" in r and r["seconds"] is not None:
                elapsed = f"{float(r['seconds']):.0f}s"
            elif "started" in r:
                elapsed = f"{now - r['started']:.0f}s"
            else:
                elapsed = "-"
            style = _STYLE.get(r["state"], "")
            state_text = f"[{style}]{escape(r['state'])}[/]" if style else escape(r["state"])
            tbl.add_row(
                escape(r["lane"]),
                escape(r.get("agent") or ""),
                state_text,
                elapsed,
                escape(r.get("line") or ""),
                "" if r.get("commits") is None else str(r["commits"]),
                "" if r.get("fragments") is None else str(r["fragments"]),
            )
        return tbl

    def _say(self, doc: dict[str, Any]) -> None:
        """Plain lines for people (stderr): all of them off a terminal, only those a live
        table cannot show on one; none with --json off a terminal (the JSON says it all)."""
        if self.as_json and self.live is None:
            return
        line = _line(doc, live=self.live is not None)
        if not line:
            return
        from lanes.cli.output import err_console

        console = self.live.console if self.live is not None else err_console()
        console.print(line, highlight=False)


def _line(doc: dict[str, Any], live: bool) -> str:
    from rich.markup import escape

    kind, lane = doc["event"], escape(doc.get("lane", ""))
    if kind == "submit-refused":
        text = f"[red]{lane}: submit refused[/] ({escape(doc.get('error', ''))}): "
        text += escape(doc.get("message", ""))
        if doc.get("hint"):
            text += f"\n  [dim]hint:[/] {escape(doc['hint'])}"
        return text
    if kind == "stopping":
        return (
            f"[yellow]{escape(doc['signal'])}: stopping every agent[/] (TERM to its process "
            "group, KILL after its grace period); nothing new starts"
        )
    if kind == "heartbeat-failed":
        return f"[yellow]{lane}: heartbeat failed:[/] {escape(doc.get('message', ''))}"
    if kind == "integrate-progress":
        return f"[dim]{escape(doc['text'])}[/]"
    if live:
        return ""  # the table shows the rest
    if kind == "run-start":
        return (
            f"lanes run {escape(doc['wave'])}: {len(doc['lanes'])} lane(s), at most "
            f"{doc['parallel']} at a time"
        )
    if kind == "claim":
        how = "resumed (held by this runner's agent)" if doc.get("kept") else "claimed"
        return f"{lane}: {how} by {escape(doc['agent'])}, worktree {escape(doc['worktree'])}"
    if kind == "agent-start":
        command = " ".join(doc["command"])
        return f"{lane}: agent started (pid {doc['pid']}): {escape(command)}"
    if kind == "agent-exit":
        code = doc["code"]
        how = (
            "timed out"
            if code == "timeout"
            else f"exited {code}"
            if code is not None
            else "was killed, its keeper lost"
            if doc.get("outcome") == "keeper-lost"
            else f"ended by {doc.get('signal')}"
        )
        return f"{lane}: agent {how} after {doc['seconds']:.1f}s"
    if kind == "submit":
        return f"{lane}: [green]submitted[/]: {doc['commits']} commit(s), {doc['fragments']} fragment(s)"
    if kind == "lane-result" and doc["outcome"] not in ("submitted",):
        style = _STYLE.get(doc["outcome"], "")
        return f"{lane}: [{style}]{escape(doc['outcome'])}[/]: {escape(doc.get('reason', ''))}"
    if kind == "integrate":
        if "error" in doc:
            return f"[red]integrate failed[/] ({escape(doc['error'])}): {escape(doc.get('message', ''))}"
        return (
            f"integrate: {len(doc.get('integrated', []))} lane(s) landed, "
            f"{len(doc.get('bounced', []))} bounced; main at {escape(str(doc.get('head', ''))[:12])}"
        )
    if kind == "verify":
        if "error" in doc:
            return f"[red]verify failed to run[/] ({escape(doc['error'])}): {escape(doc.get('message', ''))}"
        return "gate: " + (
            "[green]passed[/]"
            if doc.get("ok")
            else "[red]failed[/]: " + escape(", ".join(doc.get("failed", [])))
        )
    return ""


def _view(as_json: bool) -> _View:
    return _View(as_json)


def _show_summary(summary: dict[str, Any], result: RunResult) -> None:
    """The end of the run, on standard output: one line per lane (its outcome and why),
    then its worktree and, for a lane not finished, its log, each on a line of its own and
    never cut or folded, whatever the terminal's width (a path is what the user copies);
    then, on standard error, what to do next, lane by lane."""
    from rich.markup import escape

    from lanes.cli.output import console, err_console, say

    out = console()
    stopped = " (stopped)" if result.interrupted else ""
    out.print(
        f"[bold]lanes run {escape(summary['wave'])}{stopped}[/]: {len(summary['lanes'])} lane(s)",
        soft_wrap=True,
    )
    for lane in summary["lanes"]:
        style = _STYLE.get(lane["outcome"], "")
        text = f"[{style}]{escape(lane['outcome'])}[/]" if style else escape(lane["outcome"])
        head = f"{escape(lane['lane'])}: {text}"
        if lane.get("commits") is not None:
            head += f" ({lane['commits']} commit(s)"
            head += (
                f", {lane['fragments']} fragment(s))" if lane.get("fragments") is not None else ")"
            )
        if lane.get("reason"):
            head += f": {escape(lane['reason'])}"
        out.print(head, soft_wrap=True)
        if lane.get("worktree"):
            out.print(f"  worktree: {escape(lane['worktree'])}", soft_wrap=True)
        if lane.get("log") and not lane["finished"]:
            out.print(f"  log: {escape(lane['log'])}", soft_wrap=True)
    steps = next_steps(summary["wave"], summary["lanes"])
    if result.interrupted:
        say("[yellow]stopped:[/] every agent was stopped; nothing new was started.")
    elif summary["outcome"] == "lanes-unfinished":
        say("[yellow]some lanes did not finish:[/]")
    elif summary["outcome"] == "done":
        say("[green]every lane finished[/]")
    else:
        say(f"[red]{escape(summary['outcome'])}[/]")
    for step in steps:
        err_console().print(step, soft_wrap=True)  # paths in them: never folded


def next_steps(wave: str, lanes: list[dict[str, Any]]) -> list[str]:
    """What to do about the lanes that did not finish, true of each: those still held by
    this runner's agent resume on a rerun; the others say where they are."""
    from rich.markup import escape

    kept: list[str] = []
    lines: list[str] = []
    for lane in lanes:
        name, outcome = lane["lane"], lane["outcome"]
        error = lane.get("error") or {}
        if lane["finished"]:
            continue
        if error.get("error") == "worktree-gone":
            lines.append(
                f"  {escape(name)}: claimed by this runner's agent, but its worktree is gone: "
                f"{escape(str(error.get('hint', '')))}"
            )
        elif outcome in _KEPT and lane.get("worktree"):
            kept.append(name)
        elif outcome == "interrupted":
            lines.append(
                f"  {escape(name)}: not started in this run (it was stopped first): a rerun starts it"
            )
        elif outcome == "held-elsewhere":
            holder = (lane.get("error") or {}).get("holder") or "someone else"
            lines.append(
                f"  {escape(name)}: held by {escape(str(holder))}, not by this runner: left alone, "
                "and not run until it is released"
            )
        elif outcome in ("released", "reaped"):
            where = f" (its claim directory: {lane['claim_dir']})" if lane.get("claim_dir") else ""
            lines.append(
                f"  {escape(name)}: {outcome} while its agent ran, no longer claimed{escape(where)}: "
                "a rerun claims it anew, its branch's commits kept"
            )
        elif outcome == "claim-failed":
            hint = f"; {error['hint']}" if error.get("hint") else ""
            lines.append(
                f"  {escape(name)}: not claimed ({escape(str(error.get('error', 'error')))}): "
                f"{escape(lane.get('reason', ''))}{escape(hint)}; then run the same command again"
            )
        else:
            lines.append(
                f"  {escape(name)}: {escape(lane.get('reason', ''))} (lanes status {escape(wave)} "
                "shows where it is)"
            )
    if kept:
        lines.insert(
            0,
            f"  {escape(', '.join(kept))}: still claimed by this runner's agent, the work kept "
            "in the worktree: run the same command again to resume (the agent restarts on "
            "its branch), once what the reason names is fixed",
        )
    return lines
