"""Reading GitHub Actions workflows as GitHub does, and the deploy chain they form.

YAML 1.2, so `on:` is a key and not the boolean a YAML 1.1 loader makes of it (a `True`
key is still accepted, in case a file asks for YAML 1.1). Triggers come as a string
(`on: push`), a list (`on: [push, workflow_dispatch]`) or a mapping whose values may be
null (`workflow_dispatch:`). A workflow is known by its top-level `name:`, or by its path
when it has none, which is what `workflow_run.workflows` is matched against.

A file that is not valid YAML is kept, with its error, rather than raised: the gate
reports it by file.
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from lanes.surfaces import expressions

WORKFLOW_DIR = ".github/workflows"
SUFFIXES = (".yml", ".yaml")


@dataclass(frozen=True)
class Guard:
    """An `if:` on a job or a step."""

    job: str
    step: str | None  # None: the job's own `if:`
    condition: str

    def where(self) -> str:
        return f"job {self.job}" + (f", step {self.step}" if self.step else "")


@dataclass
class Workflow:
    path: str  # relative to the repository root, as GitHub names a workflow without name:
    name: str | None = None
    triggers: dict[str, Any] = field(default_factory=dict)
    guards: list[Guard] = field(default_factory=list)
    deploy_steps: list[str] = field(default_factory=list)  # labels of steps that deploy
    jobs: int = 0  # how many jobs it defines
    error: str | None = None  # why GitHub would not run this file as a workflow
    guessed_name: str | None = None  # a `name:` line seen in a file that is not valid YAML

    @property
    def display_name(self) -> str:
        return self.name if self.name is not None else self.path

    @property
    def file_name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def is_child(self) -> bool:
        """Triggered by `workflow_run`."""
        return "workflow_run" in self.triggers

    @property
    def has_dispatch(self) -> bool:
        return "workflow_dispatch" in self.triggers

    @property
    def required_inputs(self) -> dict[str, str | None]:
        """`workflow_dispatch` inputs marked required: name -> default (None: none)."""
        config = self.triggers.get("workflow_dispatch")
        inputs = config.get("inputs") if isinstance(config, dict) else None
        found: dict[str, str | None] = {}
        for name, spec in (inputs or {}).items() if isinstance(inputs, dict) else []:
            if isinstance(spec, dict) and spec.get("required") is True:
                default = spec.get("default")
                found[str(name)] = None if default is None else _text(default)
        return found

    @property
    def parents(self) -> list[str]:
        """The workflow names listed in `on.workflow_run.workflows`."""
        config = self.triggers.get("workflow_run")
        named = config.get("workflows") if isinstance(config, dict) else None
        if isinstance(named, str):
            return [named]
        if isinstance(named, list):
            return [str(n) for n in named if n is not None]
        return []


def _loader() -> Any:
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    yaml.version = (1, 2)  # `on`, `yes`, `off` are strings, as GitHub reads them
    return yaml


def _triggers(raw: Any) -> dict[str, Any]:
    if isinstance(raw, str):
        return {raw: None}
    if isinstance(raw, list):
        return {str(t): None for t in raw if isinstance(t, str)}
    if isinstance(raw, dict):
        return {str(k): v for k, v in raw.items()}
    return {}


def _step_label(step: dict[str, Any], number: int) -> str:
    for key in ("name", "id", "uses"):
        value = step.get(key)
        if isinstance(value, str | int | float) and str(value).strip():
            return repr(str(value).strip())
    return f"#{number}"


def _guards(jobs: Any) -> list[Guard]:
    found: list[Guard] = []
    if not isinstance(jobs, dict):
        return found
    for job_id, job in jobs.items():
        if not isinstance(job, dict):
            continue
        if "if" in job:
            found.append(Guard(str(job_id), None, _text(job["if"])))
        steps = job.get("steps")
        for number, step in enumerate(steps if isinstance(steps, list) else [], start=1):
            if isinstance(step, dict) and "if" in step:
                found.append(Guard(str(job_id), _step_label(step, number), _text(step["if"])))
    return found


# A step that ships: a deploy command, or an action made for deploying.
_DEPLOYS = re.compile(
    r"\bdeploy\b|kubectl\s+(?:apply|rollout|set\s+image)|helm\s+(?:upgrade|install)|"
    r"update-service|terraform\s+apply|\brelease\b.*--prod|vercel\b.*--prod",
    re.IGNORECASE,
)


def _deploy_steps(jobs: Any) -> list[str]:
    found: list[str] = []
    for job in jobs.values() if isinstance(jobs, dict) else []:
        steps = job.get("steps") if isinstance(job, dict) else None
        for number, step in enumerate(steps if isinstance(steps, list) else [], start=1):
            if not isinstance(step, dict):
                continue
            said = " ".join(str(step.get(k, "")) for k in ("run", "uses"))
            if _DEPLOYS.search(said):
                found.append(_step_label(step, number))
    return found


def _text(raw: Any) -> str:
    if isinstance(raw, bool):
        return "true" if raw else "false"
    return "null" if raw is None else str(raw).strip()


def parse(path: str, text: str) -> Workflow:
    """One workflow file; never raises on bad content (the error is kept instead)."""
    flow = Workflow(path)
    try:
        doc = _loader().load(text)
    except Exception as exc:  # ruamel raises many kinds; all mean "not a workflow GitHub runs"
        flow.error = _yaml_error(exc)
        flow.guessed_name = _guess_name(text)
        return flow
    if not isinstance(doc, dict):
        flow.error = "is not a YAML mapping (name:, on:, jobs:)"
        return flow
    name = doc.get("name")
    if isinstance(name, str | int | float) and not isinstance(name, bool) and str(name).strip():
        flow.name = str(name)
    raw_on = doc["on"] if "on" in doc else doc.get(True)
    flow.triggers = _triggers(raw_on)
    if raw_on is None:
        flow.error = "has no `on:` triggers"
    flow.guards = _guards(doc.get("jobs"))
    flow.deploy_steps = _deploy_steps(doc.get("jobs"))
    jobs = doc.get("jobs")
    flow.jobs = len(jobs) if isinstance(jobs, dict) else 0
    return flow


def _guess_name(text: str) -> str | None:
    for line in text.splitlines():
        if line.startswith("name:"):
            return line[5:].strip().strip("'\"").strip() or None
    return None


def _yaml_error(exc: Exception) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return f"is not valid YAML{where}: {problem}"


def parse_all(files: dict[str, str]) -> list[Workflow]:
    return [parse(path, text) for path, text in sorted(files.items())]


def is_workflow_path(path: str) -> bool:
    return path.startswith(WORKFLOW_DIR + "/") and path.endswith(SUFFIXES) and path.count("/") == 2


# -- the chain -----------------------------------------------------------------------------


def by_name(workflows: Iterable[Workflow]) -> dict[str, list[Workflow]]:
    index: dict[str, list[Workflow]] = {}
    for flow in workflows:
        if flow.error is None:
            index.setdefault(flow.display_name, []).append(flow)
    return index


def missing_parents(flow: Workflow, workflows: list[Workflow]) -> list[str]:
    known = by_name(workflows)
    return [parent for parent in flow.parents if parent not in known]


def children_of(parent: Workflow, workflows: list[Workflow]) -> list[Workflow]:
    return [w for w in workflows if w.is_child and parent.display_name in w.parents]


def chain(root: Workflow, workflows: list[Workflow]) -> list[Workflow]:
    """Every workflow chained off `root` through workflow_run, nearest first (no repeats)."""
    seen = {root.path}
    order: list[Workflow] = []
    frontier = [root]
    while frontier:
        nxt: list[Workflow] = []
        for parent in frontier:
            for child in sorted(children_of(parent, workflows), key=lambda w: w.path):
                if child.path not in seen:
                    seen.add(child.path)
                    order.append(child)
                    nxt.append(child)
        frontier = nxt
    return order


def dispatch_false_guards(
    flow: Workflow, reference: dict[str, Any], under: dict[str, Any] | None = None
) -> list[Guard]:
    """Guards certainly false under a hand dispatch, but not in the `reference` context.

    The reference is what the workflow is compared with: for a workflow_run child, the
    neutral context (so a guard that holds only when a parent fired it is caught, while
    `if: false` or `if: failure()` is not: they do not depend on the trigger); for the
    deploy workflow, a push.
    """
    dispatch = expressions.dispatch_context() if under is None else under
    return [
        g
        for g in flow.guards
        if expressions.falsy_under(g.condition, dispatch)
        and not expressions.falsy_under(g.condition, reference)
    ]


def chain_problems(workflows: list[Workflow], deploy_path: str | None) -> list[str]:
    """Everything that keeps the deploy chain from firing under a hand dispatch.

    Each problem is one sentence naming the file and what to change.
    """
    problems: list[str] = []
    known = by_name(workflows)
    for flow in workflows:
        if flow.error is not None:
            problems.append(f"{flow.path} {flow.error}")
    deploy = next((w for w in workflows if w.path == deploy_path), None)
    if deploy_path is not None:
        problems += deploy_problems(deploy_path, deploy)
    for flow in workflows:
        if not flow.is_child:
            continue
        if not flow.parents:
            problems.append(
                f"{flow.path} is triggered by workflow_run but names no workflows in "
                "`workflows:`; list the workflows it follows by their name:"
            )
        for parent in flow.parents:
            if parent not in known:
                problems.append(
                    f"{flow.path} follows {parent!r} (workflow_run.workflows), but no workflow "
                    f"is named so{_did_you_mean(parent, known, workflows)}"
                )
        if not flow.has_dispatch:
            problems.append(
                f"{flow.path} is triggered by workflow_run and has no workflow_dispatch "
                "trigger: add `workflow_dispatch:` under `on:` so it can be run by hand"
            )
        problems += _undispatchable(flow)
        direct = dispatch_false_guards(flow, expressions.neutral_context())
        problems += [_guard_problem(flow, guard) for guard in direct]
        # Run through the chain instead: the deploy dispatched by hand starts this child by
        # workflow_run, with the parent's event, 'workflow_dispatch', in the payload (RC4).
        chained = dispatch_false_guards(
            flow,
            expressions.chained_context("push"),
            under=expressions.chained_context("workflow_dispatch"),
        )
        problems += [
            _guard_problem(flow, guard, PARENT_DISPATCHED)
            for guard in chained
            if guard not in direct
        ]
    return problems


def deploy_problems(deploy_path: str, deploy: Workflow | None) -> list[str]:
    """What keeps the deploy workflow itself from running under a hand dispatch (the
    integrator checks a lane's deploy patch with this too, before it lands)."""
    if not is_workflow_path(deploy_path):
        return [
            f"the deploy workflow {deploy_path} is not a file directly in {WORKFLOW_DIR}/: "
            "GitHub never runs it"
        ]
    if deploy is None:
        return [f"the deploy workflow {deploy_path} is not in main's tree"]
    if deploy.error is not None:
        return []  # reported with the other unreadable files
    found = []
    if deploy.jobs == 0:
        found.append(
            f"the deploy workflow {deploy_path} defines no jobs: a dispatch would run nothing"
        )
    if not deploy.has_dispatch:
        found.append(
            f"the deploy workflow {deploy_path} has no workflow_dispatch trigger, so "
            "`gh workflow run` cannot start it: add `workflow_dispatch:` under `on:`"
        )
    if not deploy.is_child:  # a child is checked with the children
        found += _undispatchable(deploy)
        for guard in dispatch_false_guards(deploy, expressions.push_context()):
            found.append(_guard_problem(deploy, guard, "though it holds on a push"))
    return found


PARENT_DISPATCHED = "the run its parent starts when the parent is dispatched by hand"


def _guard_problem(flow: Workflow, guard: Guard, why: str = "") -> str:
    if why == PARENT_DISPATCHED:
        return (
            f"{flow.path}: {guard.where()} is guarded by "
            f"`if: {' '.join(guard.condition.split())}`, which is false in {why} "
            "(github.event.workflow_run.event is 'workflow_dispatch'), though it holds after "
            "a push; accept 'workflow_dispatch' as the parent's event too"
        )
    tail = f", {why}" if why else ""
    return (
        f"{flow.path}: {guard.where()} is guarded by `if: {' '.join(guard.condition.split())}`, "
        "which is "
        f"false when the run is dispatched by hand{tail}; make it hold under "
        "workflow_dispatch (e.g. `github.event_name == 'workflow_dispatch' || ...`)"
    )


def _did_you_mean(name: str, known: dict[str, list[Workflow]], workflows: list[Workflow]) -> str:
    broken = [w.path for w in workflows if w.error is not None and w.guessed_name == name]
    if broken:
        return f"; {', '.join(broken)} seems to be it, but GitHub cannot read it"
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    if not close:
        return ""
    paths = ", ".join(w.path for w in known[close[0]])
    return f"; did you mean {close[0]!r} ({paths})?"


def dispatch_commands(deploy: Workflow, workflows: list[Workflow], main: str) -> list[str]:
    """`gh workflow run` for the deploy workflow, then for each chained workflow by name."""
    names = by_name(workflows)
    commands = [_dispatch(deploy, deploy.file_name, main)]
    for child in chain(deploy, workflows):
        unique = child.name is not None and len(names.get(child.name, [])) == 1
        ident = child.name if unique and child.name is not None else child.file_name
        commands.append(_dispatch(child, ident, main))
    return commands


def watch_command(deploy: Workflow, main: str, event: str = "workflow_dispatch") -> str:
    """Wait for the run of the deploy on `main` started by `event` that has not finished
    yet (the one just started: it appears a few seconds after `gh workflow run` or the
    push), failing if it fails, or if none appears. One shell line, runnable as it is, and
    safe to paste into an interactive shell (it never `exit`s)."""
    listing = (
        f"gh run list --workflow {shlex.quote(deploy.file_name)} --branch {shlex.quote(main)} "
        f"--event {event} --limit 5 --json databaseId,status "
        """--jq '[.[] | select(.status != "completed")][0].databaseId // empty'"""
    )
    missing = shlex.quote(f"no {event} run of {deploy.file_name} on {main} appeared")
    return (
        f'id=""; for _ in $(seq 60); do id=$({listing}); [ -n "$id" ] && break; sleep 5; done; '
        f'if [ -n "$id" ]; then gh run watch "$id" --exit-status; '
        f"else echo {missing} >&2; false; fi"
    )


def runs_on_push_to(flow: Workflow, branch: str) -> bool:
    """Whether a push to `branch` starts this workflow (its `on.push` branch filters, as
    GitHub reads them: `branches`, `branches-ignore`, globs, `!` negations)."""
    from fnmatch import fnmatchcase

    if "push" not in flow.triggers:
        return False
    config = flow.triggers["push"]
    if not isinstance(config, dict):
        return True  # `on: push` or `push:` with no filter: every branch
    if "branches" not in config and "branches-ignore" not in config and "tags" in config:
        return False  # only tags
    ignored = config.get("branches-ignore")
    if isinstance(ignored, list | str):
        patterns = [ignored] if isinstance(ignored, str) else ignored
        return not any(fnmatchcase(branch, str(p)) for p in patterns)
    wanted = config.get("branches")
    if wanted is None:
        return True
    patterns = [wanted] if isinstance(wanted, str) else [str(p) for p in wanted or []]
    matched = False
    for pattern in patterns:  # later patterns win, as GitHub applies them in order
        if pattern.startswith("!"):
            if fnmatchcase(branch, pattern[1:]):
                matched = False
        elif fnmatchcase(branch, pattern):
            matched = True
    return matched


def _dispatch(flow: Workflow, ident: str, main: str) -> str:
    """One `gh workflow run`, with each required input at its default (`-f name=value`)."""
    fields = "".join(
        f" -f {shlex.quote(f'{name}={default}')}"
        for name, default in flow.required_inputs.items()
        if default is not None
    )
    return f"gh workflow run {shlex.quote(ident)} --ref {shlex.quote(main)}{fields}"


def _undispatchable(flow: Workflow) -> list[str]:
    """A required input without a default: no command can dispatch it unattended."""
    return [
        f"{flow.path} needs the input {name!r} to be dispatched by hand and has no default "
        f"for it: give it one (`default:`) so the deploy chain can be dispatched as is"
        for name, default in flow.required_inputs.items()
        if default is None
    ]
