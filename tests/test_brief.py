"""lanes brief and lanes env (lanes/brief.py): the instructions of a held lane's agent, filled
in from its claim, the configuration and git; the lane's environment as shell exports; and
the block of docs/subagents.md, generated from the same template."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from lanes import brief, config, guard, scaffold
from lanes import brief_template as template
from tests.conftest import LANES, commit_file, git, lanes_json, run_lanes, settle, snapshot

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "subagents.md"
RULES = [
    "1. CLAIM.",
    "2. WORK ONLY IN YOUR WORKTREE.",
    "3. NEVER EDIT THESE FILES",
    "4. COMMIT your work",
    "5. HEARTBEAT.",
    "6. SUBMIT when done",
    "7. If you must stop without finishing, run `lanes release --json`",
    "Exit codes of every lanes command:",
]
SEED_SURFACES = {  # the seed's contended files, and the fragment that changes each
    scaffold.MANIFEST: "lanes fragment manifest",
    "pyproject.toml": "lanes fragment version",
    "server.json": "lanes fragment version",
    ".github/workflows/deploy.yml": "lanes fragment deploy",
}


def _claim(repo: Path, wave: str = "45", lane: str = "api", agent: str = "bot-1") -> dict:  # type: ignore[type-arg]
    rc, doc = lanes_json(repo, "claim", wave, lane, "--agent", agent)
    assert rc == 0, doc
    return doc


def _in_order(text: str, parts: list[str]) -> None:
    at = [text.find(part) for part in parts]
    assert -1 not in at, [p for p, i in zip(parts, at, strict=True) if i < 0]
    assert at == sorted(at)


# -- the brief of a claimed lane ----------------------------------------------------------


def test_the_brief_of_a_claimed_lane_names_its_facts(seed_repo: Path) -> None:
    claimed = _claim(seed_repo)
    rc, doc = lanes_json(seed_repo, "brief", "45", "api")
    assert rc == 0, doc
    assert doc["schema_version"] == 1
    for key in ("wave", "lane", "agent", "worktree", "branch", "base"):
        assert doc[key] == {**claimed, "agent": "bot-1"}[key]
    assert doc["main_checkout"] == str(seed_repo) and doc["state"] == "claimed"
    assert doc["stale_after_seconds"] == 1800 and doc["heartbeat_every_seconds"] == 600
    by_path = {c["path"]: c for c in doc["contended"]}
    for path, fragment in SEED_SURFACES.items():
        assert by_path[path]["fragment"].startswith(fragment + " "), path
    assert by_path["scripts/schema_guard.py"]["surface"] == "required"
    assert by_path["lanes.toml"]["fragment"] is None
    assert by_path["tools/offline/_inbox/"]["surface"] == "inbox"
    assert doc["fragments"] == ["manifest", "version", "deploy"]
    assert doc["env"]["LANES_WORKTREE"] == claimed["worktree"]
    refusals = {r["error"]: r["exit_code"] for r in doc["refusals"]}
    assert refusals.items() >= {"not-held": 4, "touches-contended-surface": 4, "claimed": 3}.items()

    text = doc["text"]
    assert run_lanes(seed_repo, "brief", "45", "api").stdout == text
    _in_order(text, RULES)
    for fact in (claimed["worktree"], claimed["branch"], claimed["base"], str(seed_repo)):
        assert fact in text
    rule3 = text.split("3. NEVER EDIT THESE FILES", 1)[1].split("\n4. ", 1)[0]
    for path, fragment in SEED_SURFACES.items():
        line = re.search(rf"^\s+- {re.escape(path)}: (.*(?:\n {{7}}.*)*)", rule3, re.M)
        assert line is not None and fragment in line.group(1), path
    for command in ("fragment manifest", "fragment version", "fragment deploy"):
        assert f"lanes {command} " in rule3
    assert "about every 10 minutes" in text and "no heartbeat for 30 minutes" in text
    assert "lanes submit --json" in text and '"restore"' in text and "not-held" in text
    assert "{" + "LANE}" not in text and "{CONTENDED}" not in text
    assert "no uncommitted changes" in text


def test_the_brief_follows_the_configuration_and_names_uncommitted_work(
    seed_repo: Path, worktree_root: Path
) -> None:
    claimed = _claim(seed_repo)
    # Uncommitted changes in the main checkout: the configuration (read from disk) is one.
    pyproject = seed_repo / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace(
            'stale_after = "30m"', 'stale_after = "90m"\nprotected = ["infra/**"]'
        )
    )
    (seed_repo / "src" / "app.py").write_text("changed = True\n")
    (seed_repo / "notes.txt").write_text("scratch\n")
    (seed_repo / ".env").write_text("SECRET=1\n")
    with open(seed_repo / ".git" / "info" / "exclude", "a") as fh:
        fh.write(".env\n")
    rc, doc = lanes_json(seed_repo, "brief", "45", "api")
    assert rc == 0, doc
    assert doc["heartbeat_every_seconds"] == 1800
    assert "about every 30 minutes" in doc["text"] and "for 90 minutes" in doc["text"]
    assert {(c["status"], c["path"]) for c in doc["main_uncommitted"]} == {
        (" M", "pyproject.toml"),
        (" M", "src/app.py"),
        ("??", "notes.txt"),
    }
    assert doc["main_uncommitted_count"] == 3
    lacks = doc["text"].split("YOUR WORKTREE HOLDS ONLY WHAT IS COMMITTED", 1)[1]
    for line in (" M src/app.py", "?? notes.txt", " M pyproject.toml"):
        assert line in lacks
    assert "no uncommitted changes" not in doc["text"]
    assert doc["ignored_missing"] == [".env"] and ".env" in lacks
    assert "_inbox" not in " ".join(doc["ignored_missing"])  # lanes' own state, not a lack
    by_path = {c["path"]: c for c in doc["contended"]}
    assert by_path["infra/**"]["surface"] == "protected"

    # Once the file is in the worktree (as [setup] copy would put it), it is no lack.
    (Path(claimed["worktree"]) / ".env").write_text("SECRET=1\n")
    rc, doc = lanes_json(seed_repo, "brief", "45", "api")
    assert doc["ignored_missing"] == []


def test_the_brief_lists_exactly_what_the_guard_refuses(tmp_path: Path) -> None:
    """With every surface left to discovery: each concrete file of the brief is refused by
    the guard, and each file of main the guard refuses is in the brief."""
    repo = scaffold.make_seed_repo(tmp_path / "repo", tmp_path / "wt")
    text = (repo / "pyproject.toml").read_text()
    (repo / "pyproject.toml").write_text(text.split("[tool.lanes]")[0])
    (repo / "lanes.toml").write_text(
        f'worktree_root = "{(tmp_path / "wt").as_posix()}"\nprotected = ["src/vendored/*"]\n'
    )
    commit_file(repo, "src/vendored/lib.py", "x = 1\n")
    commit_file(repo, "docs/.gitattributes", "*.md text\n")
    cfg = config.load(repo)
    _claim(repo)
    found = brief.brief(cfg, "45", "api")
    statuses = {row["surface"]: row["status"] for row in cfg.surfaces.describe()}
    assert statuses == {
        "manifest": "discovered",
        "required": "discovered",
        "version": "discovered",
        "deploy": "discovered",
    }
    listed = {c.path: c for c in found.contended}
    for path, fragment in SEED_SURFACES.items():
        assert listed[path].fragment is not None and listed[path].fragment.startswith(fragment)
    tree = git(repo, "ls-tree", "-r", "--name-only", "main").splitlines()
    refused = {p for p in tree if guard.violations(cfg, [p])}
    assert refused >= {*SEED_SURFACES, "src/vendored/lib.py", "docs/.gitattributes"}
    for path in refused:
        assert path in listed or any(
            c.surface in ("protected", "attributes") and _glob(c.path, path)
            for c in found.contended
        ), path
    for path, c in listed.items():
        if c.surface not in ("protected", "attributes", "inbox", "required"):
            assert guard.violations(cfg, [path]), path
    assert "scripts/schema_guard.py" in listed  # judged by content: its list only


def _glob(pattern: str, path: str) -> bool:
    from fnmatch import fnmatchcase

    return fnmatchcase(path, pattern) or fnmatchcase(path, pattern.removeprefix("**/"))


def test_a_submitted_lane_says_so_a_sparse_one_names_its_folders_an_integrated_one_fails(
    seed_repo: Path,
) -> None:
    rc, claimed = lanes_json(seed_repo, "claim", "45", "sp", "--agent", "b", "--sparse", "src")
    assert rc == 0, claimed
    commit_file(Path(claimed["worktree"]), "src/x.py", "x = 1\n")
    assert lanes_json(seed_repo, "submit", "45", "sp")[0] == 0
    rc, doc = lanes_json(seed_repo, "brief", "45", "sp")
    assert rc == 0 and doc["state"] == "submitted" and doc["sparse"] == ["src"]
    assert "submitted: the integrator has it" in doc["text"]
    assert "only these folders are checked out (sparse, cone mode): src" in doc["text"]
    assert lanes_json(seed_repo, "integrate", "45")[0] == 0
    for command in ("brief", "env"):  # held still, but finished: no agent works on it
        rc, doc = lanes_json(seed_repo, command, "45", "sp")
        assert (rc, doc["error"]) == (4, "lane-integrated")


def test_the_core_and_the_cli_agree(seed_repo: Path, cfg: config.Config) -> None:
    _claim(seed_repo)
    text = brief.brief_text(cfg, "45", "api")
    assert run_lanes(seed_repo, "brief", "45", "api").stdout == text
    rc, doc = lanes_json(seed_repo, "env", "45", "api")
    assert rc == 0 and doc["env"] == brief.lane_env(cfg, "45", "api")
    assert doc["wave"] == "45" and doc["lane"] == "api"


# -- inside the worktree ------------------------------------------------------------------


def test_inside_the_worktree_wave_and_lane_may_be_left_out(seed_repo: Path) -> None:
    claimed = _claim(seed_repo)
    wt = Path(claimed["worktree"])
    (wt / "src" / "deep").mkdir()
    for cwd in (wt, wt / "src" / "deep"):
        assert run_lanes(cwd, "brief").stdout == run_lanes(seed_repo, "brief", "45", "api").stdout
        assert run_lanes(cwd, "env").stdout == run_lanes(seed_repo, "env", "45", "api").stdout
    rc, doc = lanes_json(seed_repo, "brief")  # the main checkout is no lane
    assert rc == 2 and doc["error"] == "no-lane-here"


# -- lanes env ----------------------------------------------------------------------------


def _sh_values(exports: str, names: list[str]) -> dict[str, str]:
    """What a real sh sees after eval of `exports`, read back from a child process."""
    script = 'eval "$1"; shift; exec "$@"'
    show = [sys.executable, "-c", "import os, json, sys; print(json.dumps(dict(os.environ)))"]
    out = subprocess.run(
        ["sh", "-c", script, "sh", exports, *show], capture_output=True, text=True, check=True
    ).stdout
    seen = json.loads(out)
    return {name: seen[name] for name in names if name in seen}


def test_lanes_env_evals_in_sh_with_a_worktree_path_that_needs_quoting(tmp_path: Path) -> None:
    root = tmp_path / "wt with space 'quote' $HOME `x`"
    repo = scaffold.make_seed_repo(tmp_path / "jpcite", root)
    claimed = _claim(repo, "w1", "a.b-c")
    assert claimed["worktree"] == str(root / "jpcite-w1-a.b-c")
    proc = run_lanes(repo, "env", "w1", "a.b-c")
    assert proc.returncode == 0, proc.stderr
    assert all(line.startswith("export LANES_") for line in proc.stdout.splitlines())
    rc, doc = lanes_json(repo, "env", "w1", "a.b-c")
    assert rc == 0
    env = doc["env"]
    assert env == {
        "LANES_WAVE": "w1",
        "LANES_LANE": "a.b-c",
        "LANES_AGENT": "bot-1",
        "LANES_WORKTREE": claimed["worktree"],
        "LANES_BRANCH": "lanes/w1/a.b-c",
        "LANES_BASE": claimed["base"],
        "LANES_MAIN_CHECKOUT": str(repo),
    }
    assert _sh_values(proc.stdout, list(env)) == env
    # In the worktree, with no arguments, through the shell's own command substitution.
    wt = Path(claimed["worktree"])
    seen = subprocess.run(
        ["sh", "-c", f'eval "$({" ".join(LANES)} env)" && printf %s "$LANES_WORKTREE"'],
        cwd=wt,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert seen == claimed["worktree"]
    assert "LANES_PORT" not in env  # no port reserved: none exported


def test_a_lane_with_ports_exports_them_and_its_brief_names_them(seed_repo: Path) -> None:
    pyproject = seed_repo / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text() + '\n[tool.lanes.setup]\nports = 3\nport_range = "21000-21099"\n'
    )
    claimed = _claim(seed_repo)
    first = claimed["port"]
    assert isinstance(first, int) and 21000 <= first <= 21097
    proc = run_lanes(Path(claimed["worktree"]), "env")
    assert proc.returncode == 0, proc.stderr
    seen = _sh_values(proc.stdout, ["LANES_PORT", "LANES_PORTS"])
    assert seen == {"LANES_PORT": str(first), "LANES_PORTS": f"{first} {first + 1} {first + 2}"}
    rc, doc = lanes_json(seed_repo, "brief", "45", "api")
    assert rc == 0 and doc["port"] == first and doc["ports"] == [first, first + 1, first + 2]
    assert f"{first} (LANES_PORT; yours: {first}-{first + 2}, LANES_PORTS)" in doc["text"]


def test_a_resumed_lane_gets_the_base_its_branch_leaves_main_at(seed_repo: Path) -> None:
    first = _claim(seed_repo)
    commit_file(Path(first["worktree"]), "src/a.py", "a = 1\n")
    assert lanes_json(seed_repo, "release", "45", "api")[0] == 0
    commit_file(seed_repo, "src/later.py", "later = 1\n")  # main moves on
    again = _claim(seed_repo)
    assert again["base"] == first["base"]
    rc, doc = lanes_json(seed_repo, "env", "45", "api")
    assert rc == 0 and doc["env"]["LANES_BASE"] == first["base"]
    assert doc["env"]["LANES_BASE"] != git(seed_repo, "rev-parse", "main")


def test_a_lane_claimed_again_is_told_where_its_saved_work_is(seed_repo: Path) -> None:
    first = _claim(seed_repo)
    wt = Path(first["worktree"])
    (wt / "src" / "wip.py").write_text("unfinished = True\n")
    assert lanes_json(seed_repo, "release", "45", "api")[0] == 0
    rc, other = lanes_json(seed_repo, "claim", "45", "api-other", "--agent", "x")
    assert rc == 0, other
    assert lanes_json(seed_repo, "release", "45", "api-other")[0] == 0
    _claim(seed_repo)
    rc, doc = lanes_json(seed_repo, "brief", "45", "api")
    assert rc == 0, doc
    [patch] = [p for p in doc["saved"] if p.endswith(".patch")]
    assert "/api-released-" in patch and "unfinished = True" in Path(patch).read_text()
    assert f"git apply {patch}" in " ".join(doc["text"].split())  # wrapped at spaces
    assert all("api-other" not in p for p in doc["saved"])  # another lane's saves are not its


# -- refusals -----------------------------------------------------------------------------


REFUSED = [  # WAVE LANE as typed, the exit code, the error
    (["45", "nobody"], 4, "not-held"),
    (["46", "api"], 4, "not-held"),
    (["Bad", "api"], 2, "bad-wave"),
    (["45", "a/../b"], 2, "bad-lane"),
    (["45"], 2, "bad-arguments"),
]


def test_an_unheld_lane_or_a_bad_name_fails_and_changes_nothing(
    seed_repo: Path, worktree_root: Path
) -> None:
    _claim(seed_repo)
    before = snapshot(seed_repo, worktree_root, skip=())
    for command in ("brief", "env"):
        for args, exit_code, error in REFUSED:
            proc = run_lanes(seed_repo, command, *args, "--json")
            assert proc.returncode == exit_code, (command, args, proc.stdout)
            doc = json.loads(proc.stdout)
            assert doc["error"] == error and doc["message"], (command, args)
            human = run_lanes(seed_repo, command, *args)
            assert (human.returncode, human.stdout) == (exit_code, ""), (command, args)
            assert error in human.stderr
    assert snapshot(seed_repo, worktree_root, skip=()) == before


def test_a_released_lane_is_not_held(seed_repo: Path) -> None:
    _claim(seed_repo)
    assert lanes_json(seed_repo, "release", "45", "api")[0] == 0
    for command in ("brief", "env"):
        rc, doc = lanes_json(seed_repo, command, "45", "api")
        assert (rc, doc["error"]) == (4, "not-held")
        assert "lanes claim 45 api" in doc["hint"]


def test_a_brief_reads_and_never_writes(seed_repo: Path, worktree_root: Path) -> None:
    claimed = _claim(seed_repo)
    (seed_repo / "src" / "app.py").write_text("dirty = 1\n")
    same = seed_repo / "server.json"  # same content, new time: a git status would refresh
    os.utime(same, (same.stat().st_atime, same.stat().st_mtime + 100))  # the index for it
    settle(seed_repo, "45")  # on a remote, the caches any read refreshes
    before = snapshot(seed_repo, worktree_root, skip=())
    for cwd in (seed_repo, Path(claimed["worktree"])):
        assert run_lanes(cwd, "brief", "45", "api").returncode == 0
        assert run_lanes(cwd, "env", "45", "api").returncode == 0
    after = snapshot(seed_repo, worktree_root, skip=())
    assert after == before


# -- the block of docs/subagents.md -------------------------------------------------------


def test_docs_subagents_holds_the_generated_block() -> None:
    text = DOC.read_text(encoding="utf-8")
    block = text.split("<!-- brief:start -->\n", 1)[1].split("<!-- brief:end -->", 1)[0]
    assert block == template.doc_block(), (
        "docs/subagents.md is stale: paste `python -m lanes.brief --doc` between its markers"
    )
    printed = subprocess.run(
        [sys.executable, "-m", "lanes.brief", "--doc"], capture_output=True, text=True, cwd=ROOT
    )
    assert printed.returncode == 0 and printed.stdout == block
    assert (
        subprocess.run([sys.executable, "-m", "lanes.brief"], capture_output=True).returncode == 2
    )


def test_the_block_keeps_the_operators_placeholders_and_the_rules_in_order() -> None:
    doc = template.doc_text()
    assert set(re.findall(r"\{[A-Z_]+\}", doc)) == {
        "{WAVE}",
        "{LANE}",
        "{AGENT}",
        "{REPO}",
        "{CONTENDED}",
    }
    _in_order(doc, RULES)
    assert "lanes claim {WAVE} {LANE} --agent {AGENT} --json" in doc
    for command in FRAGMENTS_IN_DOC:
        assert command in doc
    assert "about every 10 minutes" in doc and "no heartbeat for 30 minutes" in doc


FRAGMENTS_IN_DOC = (
    "lanes fragment manifest <MIGRATION_FILE_NAME> --json",
    "lanes fragment version patch|minor|major --json",
    "lanes fragment deploy /tmp/{AGENT}-deploy.yml --json",
)


def test_the_brief_and_the_block_are_one_template(seed_repo: Path, cfg: config.Config) -> None:
    """Every line of the block that names no placeholder is, word for word, in the brief."""
    _claim(seed_repo)
    text = brief.brief_text(cfg, "45", "api")
    own = ("1. CLAIM.", "   Exit 0: the", "   this lane", "   Any other", "   Then run", "   (its")
    general = template.doc_text().split("YOUR WORKTREE HOLDS ONLY WHAT IS COMMITTED")
    for line in general[0].splitlines() + general[1].split("\n\n", 1)[1].splitlines():
        if "{" in line or line.startswith(own) or "cd into the worktree" in line:
            continue
        assert line in text.splitlines(), line


def test_placeholders_in_facts_are_never_filled_again(tmp_path: Path) -> None:
    repo = scaffold.make_seed_repo(tmp_path / "jpcite", tmp_path / "wt")
    (repo / "{LANE}.txt").write_text("a file named like a placeholder\n")
    _claim(repo)
    rc, doc = lanes_json(repo, "brief", "45", "api")
    assert rc == 0 and "?? {LANE}.txt" in doc["text"]
