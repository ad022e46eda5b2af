"""Reading workflows as GitHub does, on 96 real files (tests/data/workflows, see SOURCES.md)."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

import pytest

from lanes.surfaces import workflows as wf

CORPUS = Path(__file__).parent / "data" / "workflows"


@cache
def folder(repo: str) -> tuple[wf.Workflow, ...]:
    files = {
        f"{wf.WORKFLOW_DIR}/{p.name}": p.read_text(encoding="utf-8")
        for p in sorted((CORPUS / repo).iterdir())
    }
    return tuple(wf.parse_all(files))


def flow(repo: str, name: str) -> wf.Workflow:
    return next(w for w in folder(repo) if w.file_name == name)


def sources() -> list[tuple[str, str, str]]:
    """(folder, file, role) for each row of SOURCES.md."""
    rows = []
    for line in (CORPUS / "SOURCES.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and "/" in cells[0] and cells[0] != "file":
            repo, file = cells[0].split("/")
            rows.append((repo, file, cells[4]))
    return rows


ROWS = sources()
CHILDREN = [r for r in ROWS if r[2].startswith("child")]


def test_the_corpus_is_all_there() -> None:
    on_disk = {f"{p.parent.name}/{p.name}" for p in CORPUS.glob("*/*.y*ml")}
    assert on_disk == {f"{r}/{f}" for r, f, _ in ROWS}
    assert len(ROWS) == 96 and len(CHILDREN) >= 30


@pytest.mark.parametrize("repo", sorted({r for r, _, _ in ROWS}))
def test_every_file_parses_without_raising_and_the_chain_is_analysed(repo: str) -> None:
    flows = folder(repo)
    problems = wf.chain_problems(list(flows), None)
    assert all(isinstance(p, str) and p for p in problems)
    for w in flows:
        assert (w.error is None) == bool(w.triggers) or w.error == "has no `on:` triggers"


def _expected_parents(role: str) -> list[tuple[str, str]]:
    """'child (workflow_run: "A" -> a.yml; "B" -> NOT FOUND)' -> [("A", "a.yml"), ...]."""
    return re.findall(r'"([^"]+)" -> ([\w.-]+(?: [A-Z]+)?)', role)


@pytest.mark.parametrize(
    ("repo", "file", "role"), CHILDREN, ids=[f"{r}/{f}" for r, f, _ in CHILDREN]
)
def test_every_child_is_found_with_its_parents(repo: str, file: str, role: str) -> None:
    child = flow(repo, file)
    expected = _expected_parents(role)
    assert expected, role
    if "not valid YAML" in role:
        # GitHub does not run a file it cannot read: reported by file, not guessed at.
        assert child.error is not None and "not valid YAML" in child.error
        problems = wf.chain_problems(list(folder(repo)), None)
        assert any(p.startswith(f"{child.path} is not valid YAML") for p in problems)
        return
    assert child.is_child
    assert child.parents == [name for name, _ in expected]
    flows = list(folder(repo))
    names = wf.by_name(flows)
    missing = wf.missing_parents(child, flows)
    for name, target in expected:
        if target == "NOT FOUND":
            assert name in missing
        else:
            assert name not in missing
            assert [w.file_name for w in names[name]] == [target]


@pytest.mark.parametrize(
    ("repo", "file"), [(r, f) for r, f, role in ROWS if role.startswith("negative")]
)
def test_negatives_are_not_children(repo: str, file: str) -> None:
    assert not flow(repo, file).is_child


def test_not_found_parents_are_reported_by_the_chain_check() -> None:
    problems = wf.chain_problems(list(folder("microsoft__playwright")), None)
    assert any("follows 'tests others'" in p and "no workflow is named so" in p for p in problems)
    assert not any("follows 'tests 1'" in p for p in problems)


def test_a_near_miss_name_is_suggested() -> None:
    problems = wf.chain_problems(list(folder("dsp-dr__guile-changeflow")), None)
    [miss] = [p for p in problems if "follows" in p]
    assert "'Deploy to Cloudflare'" in miss
    assert (
        "did you mean 'Deploy to Cloudflare Workers' (.github/workflows/deploy-cloudflare.yml)"
        in miss
    )


def test_invalid_yaml_is_reported_with_its_line() -> None:
    broken = flow("TurkishKEBAB__Site", "deploy-production.yml")
    assert broken.error is not None and re.search(r"line \d+, column \d+", broken.error)


@pytest.mark.parametrize(
    ("text", "triggers"),
    [
        ("on: push\n", {"push": None}),
        ("on: [push, workflow_dispatch]\n", {"push": None, "workflow_dispatch": None}),
        (
            "on:\n  workflow_dispatch:\n  push: {branches: [main]}\n",
            {"workflow_dispatch": None, "push": {"branches": ["main"]}},
        ),
        ('"on": pull_request\n', {"pull_request": None}),
        # A file asking for YAML 1.1 makes `on` a boolean key: still read as the triggers.
        ("%YAML 1.1\n---\non: [workflow_dispatch]\n", {"workflow_dispatch": None}),
    ],
)
def test_trigger_forms(text: str, triggers: dict[str, object]) -> None:
    assert wf.parse("w.yml", text).triggers == triggers


def test_workflows_as_a_string_and_a_list() -> None:
    one = wf.parse("a.yml", "on:\n  workflow_run:\n    workflows: deploy\n")
    two = wf.parse("b.yml", "on:\n  workflow_run:\n    workflows: [deploy, 'build it']\n")
    assert one.parents == ["deploy"] and two.parents == ["deploy", "build it"]


def test_a_workflow_without_name_is_known_by_its_path() -> None:
    parent = wf.parse(".github/workflows/build.yml", "on: push\njobs: {}\n")
    child = wf.parse(
        ".github/workflows/after.yml",
        "on:\n  workflow_run:\n    workflows: [.github/workflows/build.yml]\n  workflow_dispatch:\n",
    )
    assert parent.display_name == ".github/workflows/build.yml"
    assert wf.chain_problems([parent, child], None) == []
    assert wf.chain(parent, [parent, child]) == [child]


def test_yes_and_off_stay_strings_in_yaml_1_2() -> None:
    w = wf.parse("w.yml", "name: off\non: [push]\njobs:\n  a:\n    if: yes\n")
    assert w.name == "off" and w.guards[0].condition == "yes"


CHILD = """\
name: verify
on:
  workflow_run:
    workflows: [deploy]
    types: [completed]
  workflow_dispatch:
jobs:
  smoke:
    runs-on: ubuntu-latest
    if: {job_if}
    steps:
      - name: healthz
        if: {step_if}
        run: curl -fsS https://example.invalid/healthz
"""
DEPLOY = (
    "name: deploy\non:\n  push:\n  workflow_dispatch:\njobs:\n  d:\n    steps:\n      - run: echo\n"
)


def chain_of(job_if: str = "always()", step_if: str = "always()", raw: bool = False) -> list[str]:
    """The chain's problems with these guards (JSON-quoted, so YAML keeps them verbatim)."""
    quote = (lambda c: c) if raw else json.dumps
    text = CHILD.format(job_if=quote(job_if), step_if=quote(step_if))
    flows = [
        wf.parse(".github/workflows/deploy.yml", DEPLOY),
        wf.parse(".github/workflows/verify.yml", text),
    ]
    return wf.chain_problems(flows, ".github/workflows/deploy.yml")


@pytest.mark.parametrize(
    "condition",
    [
        "github.event.workflow_run.event == 'push'",
        "${{ github.event.workflow_run.conclusion == 'success' }}",
        "github.event_name == 'push'",
        "github.event_name == 'workflow_run'",
        "${{ github.event.workflow_run.head_branch == 'main' }}",
        "contains(github.event.head_commit.message, '[deploy]')",
        "github.event.workflow_run.conclusion == 'success' && github.ref == 'refs/heads/main'",
        "GitHub.Event['workflow_run'].Event == 'PUSH'",
        "github.event.workflow_run",
    ],
)
def test_guards_false_under_a_dispatch_are_named(condition: str) -> None:
    problems = chain_of(step_if=condition)
    assert len(problems) == 1
    assert problems[0].startswith(".github/workflows/verify.yml: job smoke, step 'healthz'")
    assert "false when the run is dispatched by hand" in problems[0]


@pytest.mark.parametrize(
    "condition",
    [
        "github.event_name == 'workflow_dispatch' || github.event.workflow_run.conclusion == 'success'",
        "${{ github.event_name != 'workflow_run' || github.event.workflow_run.conclusion == 'success' }}",
        "github.ref == 'refs/heads/main'",
        "always()",
        "failure()",  # false on success, whatever the trigger: not a dispatch problem
        "false",  # switched off on purpose, under every trigger
        "github.event.workflow_run.conclusion != 'failure'",
        "!contains(github.event.head_commit.message, '[skip deploy]')",
        "${{ needs.build.outputs.ok }} == 'true'",  # a template string: always true
        "github.event_name == (",  # unparsable: not guessed at
    ],
)
def test_guards_that_can_hold_under_a_dispatch_pass(condition: str) -> None:
    assert chain_of(job_if=condition, step_if=condition) == []


@pytest.mark.parametrize(
    "condition",
    [
        "github.event.workflow_run.event != 'workflow_dispatch'",
        "github.event_name == 'workflow_dispatch' || github.event.workflow_run.event == 'push'",
        "${{ github.event.workflow_run.event == 'push' || github.event_name != 'workflow_run' }}",
    ],
)
def test_guards_false_when_the_parent_was_dispatched_by_hand_are_named(condition: str) -> None:
    # The post-mortem's RC4: the deploy dispatched by hand starts this child through
    # workflow_run, whose payload says the parent's event was 'workflow_dispatch'.
    [problem] = chain_of(step_if=condition)
    assert problem.startswith(".github/workflows/verify.yml: job smoke, step 'healthz'")
    assert "when the parent is dispatched by hand" in problem
    assert "github.event.workflow_run.event is 'workflow_dispatch'" in problem


def test_a_folded_multi_line_guard_is_read_whole() -> None:
    folded = (
        ">-\n          github.event.workflow_run.conclusion == 'success' &&\n"
        "          github.event.workflow_run.event == 'push'"
    )
    [problem] = chain_of(step_if=folded, raw=True)
    assert "`if: github.event.workflow_run.conclusion == 'success' && github.event" in problem


def test_unquoted_yaml_conditions_read_as_github_reads_them() -> None:
    assert chain_of(step_if="github.event.workflow_run.conclusion == 'success'", raw=True)
    assert chain_of(step_if="${{ github.event_name != 'workflow_run' }}", raw=True) == []
    assert chain_of(step_if="false", raw=True) == []


def test_a_job_guard_is_named_as_a_job() -> None:
    [problem] = chain_of(job_if="github.event.workflow_run.conclusion == 'success'")
    assert problem.startswith(".github/workflows/verify.yml: job smoke is guarded by ")
    assert "`if: github.event.workflow_run.conclusion == 'success'`" in problem


def test_a_chained_workflow_without_dispatch_fails() -> None:
    flows = [
        wf.parse(".github/workflows/deploy.yml", DEPLOY),
        wf.parse(
            ".github/workflows/verify.yml",
            "name: verify\non:\n  workflow_run:\n    workflows: [deploy]\njobs: {}\n",
        ),
    ]
    [problem] = wf.chain_problems(flows, ".github/workflows/deploy.yml")
    assert "verify.yml is triggered by workflow_run and has no workflow_dispatch" in problem


def test_the_deploy_workflow_needs_dispatch_and_no_push_only_guard() -> None:
    deploy = wf.parse(
        ".github/workflows/deploy.yml",
        "name: deploy\non: push\njobs:\n  d:\n    if: github.event_name == 'push'\n"
        "    steps:\n      - if: github.event_name == 'pull_request'\n        run: echo preview\n",
    )
    problems = wf.chain_problems([deploy], ".github/workflows/deploy.yml")
    assert len(problems) == 2
    assert "has no workflow_dispatch trigger" in problems[0]
    assert "job d is guarded by `if: github.event_name == 'push'`" in problems[1]
    # The pull_request-only step does not run on a push either: not the dispatch's fault.


def test_dispatch_commands_follow_the_chain_transitively() -> None:
    flows = [
        wf.parse(".github/workflows/deploy.yml", DEPLOY),
        wf.parse(".github/workflows/verify.yml", CHILD.format(job_if="true", step_if="true")),
        wf.parse(
            ".github/workflows/acceptance.yml",
            "name: acceptance criteria\non:\n  workflow_run:\n    workflows: [verify]\n"
            "  workflow_dispatch:\n",
        ),
        wf.parse(".github/workflows/other.yml", "name: other\non: [push, workflow_dispatch]\n"),
    ]
    deploy = flows[0]
    assert wf.dispatch_commands(deploy, flows, "main") == [
        "gh workflow run deploy.yml --ref main",
        "gh workflow run verify --ref main",
        "gh workflow run 'acceptance criteria' --ref main",
    ]


def test_required_dispatch_inputs_get_their_defaults_or_are_a_problem() -> None:
    deploy = wf.parse(
        ".github/workflows/deploy.yml",
        "name: deploy\non:\n  push:\n  workflow_dispatch:\n    inputs:\n"
        "      env: {required: true, default: prod world}\n"
        "      dry: {required: true, type: boolean, default: false}\n"
        "      note: {required: false}\n"
        "jobs:\n  deploy:\n    runs-on: ubuntu-latest\n    steps:\n      - run: ./deploy\n",
    )
    child = wf.parse(
        ".github/workflows/verify.yml",
        "name: verify\non:\n  workflow_run:\n    workflows: [deploy]\n"
        "  workflow_dispatch:\n    inputs:\n      run_id: {required: true}\n",
    )
    assert wf.dispatch_commands(deploy, [deploy, child], "main") == [
        "gh workflow run deploy.yml --ref main -f 'env=prod world' -f dry=false",
        "gh workflow run verify --ref main",
    ]
    [problem] = wf.chain_problems([deploy, child], ".github/workflows/deploy.yml")
    assert problem.startswith(".github/workflows/verify.yml needs the input 'run_id'")


def test_a_deploy_that_is_itself_chained_is_reported_once() -> None:
    ci = wf.parse(".github/workflows/ci.yml", "name: CI\non: [push, workflow_dispatch]\n")
    deploy = wf.parse(
        ".github/workflows/deploy.yml",
        "name: deploy\non:\n  workflow_run:\n    workflows: [CI]\n  workflow_dispatch:\n"
        "    inputs:\n      env: {required: true}\n",
    )
    problems = wf.chain_problems([ci, deploy], ".github/workflows/deploy.yml")
    assert len([p for p in problems if "needs the input 'env'" in p]) == 1
