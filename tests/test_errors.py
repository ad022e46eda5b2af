"""The error-code registry (lanes/errors.py): every code raised is declared once, with the
exit code of the class that raises it; docs/exit-codes.md is the registry; no command holds
a literal exit code; and the CLI behaviour that rests on it."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from importlib.metadata import version as dist_version
from pathlib import Path

import pytest

from lanes import claims, errors
from lanes.config import Config
from lanes.errors import (
    REGISTRY,
    BadInput,
    Contention,
    LanesError,
    OperationalError,
    Refused,
    RegistryError,
)
from tests.conftest import commit_file, git, lanes_json, publish, run_lanes

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "exit-codes.md"
CLASSES: dict[str, int | None] = {
    "LanesError": None,  # any exit code the registry gives
    "OperationalError": 1,
    "BadInput": 2,
    "Contention": 3,
    "Refused": 4,
}


# -- scanning the sources ------------------------------------------------------------------


def _sources(*dirs: str) -> list[Path]:
    return sorted(p for d in dirs for p in (ROOT / d).rglob("*.py"))


def _error_class_names(tree: ast.Module) -> dict[str, str]:
    """Local name -> class name, for the error classes (and their aliases) in scope."""
    names = {name: name for name in CLASSES}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "lanes.errors":
            for alias in node.names:
                if alias.name in CLASSES:
                    names[alias.asname or alias.name] = alias.name
    return names


def raise_sites(source: str, where: str) -> list[tuple[str, str, ast.expr | None]]:
    """(where, class name, code expression) of every call of an error class in `source`."""
    tree = ast.parse(source)
    names = _error_class_names(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = (
            func.id
            if isinstance(func, ast.Name)
            else func.attr
            if isinstance(func, ast.Attribute)
            else None
        )
        if name not in names:
            continue
        code = node.args[0] if node.args else None
        code = code or next((kw.value for kw in node.keywords if kw.arg == "code"), None)
        found.append((f"{where}:{node.lineno}", names[name], code))
    return found


def problems_of(sites: list[tuple[str, str, ast.expr | None]]) -> list[str]:
    """What is wrong with each raise site, checked against the registry."""
    problems = []
    for where, cls, code in sites:
        wanted = CLASSES[cls]
        if isinstance(code, ast.Constant) and isinstance(code.value, str):
            entry = REGISTRY.get(code.value)
            if entry is None:
                problems.append(f"{where}: {cls}({code.value!r}) is not in the registry")
            elif entry.kind != "error":
                problems.append(f"{where}: {code.value!r} is an outcome, not an error")
            elif wanted is not None and entry.exit_code != wanted:
                problems.append(
                    f"{where}: {cls}({code.value!r}) means exit {wanted}, "
                    f"the registry says {entry.exit_code}"
                )
        elif isinstance(code, ast.JoinedStr):  # f"bad-{kind}": some declared code must fit
            pattern = "".join(
                re.escape(part.value) if isinstance(part, ast.Constant) else "[a-z0-9-]+"
                for part in code.values
            )
            fits = [
                e
                for e in REGISTRY.values()
                if re.fullmatch(pattern, e.name) and e.kind == "error"
                if wanted is None or e.exit_code == wanted
            ]
            if not fits:
                problems.append(f"{where}: no code of exit {wanted} fits {ast.unparse(code)}")
        else:
            shown = ast.unparse(code) if code is not None else "nothing"
            problems.append(f"{where}: {cls} called with {shown}: give the code as a string")
    return problems


def test_every_code_raised_is_declared_with_the_exit_code_of_its_class() -> None:
    sites = [
        site
        for path in _sources("lanes", "integrator")
        for site in raise_sites(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    ]
    assert len(sites) > 50  # the scan sees the raise sites (there are about 60)
    assert problems_of(sites) == []


def test_the_scan_catches_what_it_must() -> None:
    source = """
from lanes.errors import BadInput as BI, Refused
from lanes import errors
raise BI("claimed", "m")
raise Refused("no-such-code", "m")
raise errors.Contention("no-main", "m")
raise BadInput(f"bad-{kind}", "m")
raise Refused(f"zz-{kind}", "m")
raise Refused(code, "m")
raise Refused("gate-failed", "m")
raise errors.LanesError("claimed", "m")
"""
    problems = problems_of(raise_sites(source, "x.py"))
    assert [p.split(":")[1] for p in problems] == ["4", "5", "6", "8", "9", "10"], problems


def test_the_registry_declares_the_codes_the_cli_uses_and_the_outcomes() -> None:
    for code, exit_code in {
        "bad-usage": 2,
        "internal-error": 1,
        "unknown-wave": 2,
        "main-versions-disagree": 2,
        "no-main": 2,
        "lane-bounced": 4,
        "gate-failed": 4,
        "demo-failed": 1,
        "done": 0,
    }.items():
        assert errors.exit_code(code) == exit_code, code
    for entry in REGISTRY.values():
        assert entry.hint and "\n" not in entry.hint, entry.name
        assert entry.exit_code in (0, 1, 2, 3, 4, 130), entry.name
        assert re.fullmatch(r"[a-z]+(-[a-z]+)*", entry.name), entry.name


# -- the classes follow the registry -------------------------------------------------------


def test_the_exit_code_and_default_hint_come_from_the_registry() -> None:
    err = LanesError("claimed", "taken")
    assert (err.exit_code, err.hint) == (3, REGISTRY["claimed"].hint)
    assert BadInput("no-main", "m").exit_code == 2
    assert OperationalError("git-failed", "m").exit_code == 1
    assert Contention("main-moved", "m").exit_code == 3
    given = Refused("not-held", "m", hint="claim it", wave="44")
    assert given.hint == "claim it"
    assert given.to_json() == {
        "error": "not-held",
        "message": "m",
        "hint": "claim it",
        "wave": "44",
    }
    assert BadInput("no-main", "m").to_json()["hint"] == errors.default_hint("no-main")


@pytest.mark.parametrize(
    ("cls", "code"),
    [
        (BadInput, "claimed"),  # declared with exit 3
        (Refused, "bad-config"),  # declared with exit 2
        (OperationalError, "ledger-broken"),
        (Contention, "not-held"),
        (BadInput, "no-such-code"),  # not declared at all
        (LanesError, "no-such-code"),
        (Refused, "gate-failed"),  # an outcome is not raised
    ],
)
def test_a_code_the_registry_does_not_give_that_class_fails_loudly(
    cls: type[LanesError], code: str
) -> None:
    with pytest.raises(RegistryError):
        cls(code, "message")
    with pytest.raises(RegistryError):
        errors.exit_code("no-such-code")


# -- the docs ------------------------------------------------------------------------------


def test_docs_exit_codes_holds_the_registry_table() -> None:
    text = DOC.read_text(encoding="utf-8")
    block = text.split("<!-- registry:start -->\n", 1)[1].split("<!-- registry:end -->", 1)[0]
    assert block == errors.markdown_table(), (
        "docs/exit-codes.md is stale: paste `python -m lanes.errors` between its markers"
    )
    for entry in REGISTRY.values():
        assert re.search(
            rf"^\| `{re.escape(entry.name)}`[^|]* \| {entry.exit_code} \|", block, re.M
        )


def test_every_code_the_docs_name_by_command_is_declared_with_that_exit_code() -> None:
    text = DOC.read_text(encoding="utf-8")
    table = text.split("## By command", 1)[1].split("\n\n", 2)[1]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert len(rows) > 10
    for row in rows:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]]
        for exit_code, cell in enumerate(cells[1:]):
            for name in re.findall(r"`([a-z]+(?:-[a-z]+)+)`", cell):
                assert name in REGISTRY, f"{cells[0]}: {name} is not a code"
                assert REGISTRY[name].exit_code == exit_code, f"{cells[0]}: {name}"


# -- no literal exit codes in the CLI --------------------------------------------------------


def literal_exits(source: str, where: str) -> list[str]:
    """typer.Exit / sys.exit / SystemExit / exit calls given an int literal, or a module
    name bound to one (`GATE_FAILED = 4` is a literal with a name)."""
    tree = ast.parse(source)
    int_names = {
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign | ast.AnnAssign)
        and isinstance(node.value, ast.Constant)
        and type(node.value.value) is int
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name)
    }
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = ast.unparse(node.func)
        if func not in ("typer.Exit", "Exit", "sys.exit", "SystemExit", "exit", "raise_exit"):
            continue
        args = [*node.args, *(kw.value for kw in node.keywords if kw.arg in ("code", "exit_code"))]
        for arg in args:
            if (isinstance(arg, ast.Constant) and type(arg.value) is int) or (
                isinstance(arg, ast.Name) and arg.id in int_names
            ):
                found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_command_holds_a_literal_exit_code() -> None:
    paths = _sources("lanes/cli")
    assert len(paths) > 5
    found = [
        hit
        for path in paths
        for hit in literal_exits(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    ]
    assert found == [], "use lanes.errors.exit_code(NAME) instead"


def test_the_literal_scan_catches_what_it_must() -> None:
    source = """
import sys, typer
FAILED = 4
raise typer.Exit(4)
raise typer.Exit(code=1)
sys.exit(2)
raise typer.Exit(FAILED)
raise typer.Exit(exit_code("gate-failed"))
sys.exit(main())
"""
    assert [hit.split(":")[1] for hit in literal_exits(source, "x.py")] == ["4", "5", "6", "7"]


# -- lanes --version -----------------------------------------------------------------------


def test_version_and_its_json_need_no_repository(tmp_path: Path) -> None:
    want = dist_version("lanes")
    proc = run_lanes(tmp_path, "--version")
    assert (proc.returncode, proc.stdout) == (0, f"lanes {want}\n"), proc.stderr
    code, doc = lanes_json(tmp_path, "--version")
    assert (code, doc) == (0, {"schema_version": 1, "version": want})


def test_version_imports_nothing_heavy(tmp_path: Path) -> None:
    heavy = ["pydantic", "rich", "git", "integrator", "filelock", "ruamel", "tomlkit"]
    probe = (
        "import sys; sys.argv = ['lanes', '--version', '--json']\n"
        "from lanes.cli import main\n"
        "assert main() == 0\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r})))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert proc.stdout.splitlines()[-1] == "[]"


def test_json_before_a_command_is_bad_usage(seed_repo: Path) -> None:
    code, doc = lanes_json(seed_repo)  # `lanes --json` alone
    assert (code, doc["error"]) == (2, "bad-usage")
    proc = run_lanes(seed_repo, "--json", "status")
    assert proc.returncode == 2 and json.loads(proc.stdout)["error"] == "bad-usage"


# -- status and ledger of an unknown or empty wave -----------------------------------------


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("status", "99"), "unknown-wave"),
        (("status", ""), "bad-wave"),
        (("ledger", "99"), "unknown-wave"),
        (("ledger", ""), "bad-wave"),
        (("ledger", "verify", ""), "bad-wave"),
    ],
)
def test_an_unknown_or_empty_wave_is_exit_2(
    seed_repo: Path, cfg: Config, args: tuple[str, ...], error: str
) -> None:
    claims.claim(cfg, "44", "a", "bot")  # one wave exists: "" must not fall back to it
    code, doc = lanes_json(seed_repo, *args)
    assert (code, doc["error"]) == (2, error), doc
    assert doc["hint"]


def test_status_of_a_known_wave_and_of_every_wave(seed_repo: Path, cfg: Config) -> None:
    claims.claim(cfg, "44", "a", "bot")
    claims.claim(cfg, "45", "b", "bot")
    code, doc = lanes_json(seed_repo, "status", "44")
    assert code == 0 and [(r["wave"], r["lane"]) for r in doc["lanes"]] == [("44", "a")]
    code, doc = lanes_json(seed_repo, "status")
    assert code == 0 and [r["wave"] for r in doc["lanes"]] == ["44", "45"]


# -- integrate on a main whose version files disagree --------------------------------------


def test_integrate_on_main_with_disagreeing_versions_is_exit_2_and_changes_nothing(
    seed_repo: Path, cfg: Config
) -> None:
    text = (seed_repo / "server.json").read_text().replace("0.3.5", "0.3.9")
    commit_file(seed_repo, "server.json", text, "hand edit")
    publish(seed_repo)  # on a remote, pushed: the pass reads the remote's main
    claims.claim(cfg, "44", "a", "bot")
    before = (git(seed_repo, "rev-parse", "main"), len(claims.ledger(cfg, "44").events()))
    for args in (("integrate", "44"), ("integrate", "44", "--dry-run")):
        code, doc = lanes_json(seed_repo, *args)
        assert (code, doc["error"]) == (2, "main-versions-disagree"), doc
        assert doc["versions"] == {"pyproject.toml": "0.3.5", "server.json": "0.3.9"}
        assert "server.json has 0.3.9" in doc["message"]
    assert (git(seed_repo, "rev-parse", "main"), len(claims.ledger(cfg, "44").events())) == before
    # the gate still reports it as a failed check, not as an error
    code, doc = lanes_json(seed_repo, "verify")
    assert code == errors.exit_code("gate-failed") and "error" not in doc
    assert "versions-agree" in doc["failed"]
