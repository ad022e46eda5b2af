"""The guard judges every commit the pass would land, not the branch's net change."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lanes import claims, config, git, guard
from lanes.config import Config
from lanes.surfaces import protected
from tests.conftest import commit_file
from tests.conftest import git as run_git

WAVE = "44"


def _lane(cfg: Config, lane: str) -> Path:
    return Path(claims.claim(cfg, WAVE, lane, f"agent-{lane}").worktree)


def _files_of(repo: Path, sha: str) -> list[str]:
    """A commit's paths against its parent, asked of git one commit at a time."""
    out = run_git(
        repo, "diff-tree", "-z", "--no-commit-id", "--name-only", "-r", "--no-renames", sha
    )
    return [p for p in out.split("\0") if p]


def test_replayed_changes_are_exactly_the_commits_the_pass_replays(cfg: Config) -> None:
    repo = cfg.main_checkout
    wt = _lane(cfg, "a")
    commit_file(wt, "src/with space.py", "s = 1\n", "a: a path with a space")
    commit_file(wt, "src/caf\u00e9.py", "c = 1\n", "a: a path that is not ASCII")
    run_git(wt, "mv", "src/app.py", "src/api.py")
    run_git(wt, "commit", "-q", "-m", "a: rename")
    run_git(wt, "commit", "-q", "--allow-empty", "-m", "a: nothing")
    # a side branch merged into the lane: its commit is replayed, the merge is not
    run_git(wt, "checkout", "-q", "-b", "side", "HEAD~2")
    commit_file(wt, "src/side.py", "x = 1\n", "side: work")
    run_git(wt, "checkout", "-q", "lanes/44/a")
    run_git(wt, "merge", "-q", "--no-edit", "side")
    # main moves and the lane merges it: main's commit is not the lane's
    commit_file(repo, "src/main_moved.py", "m = 1\n", "main: moved")
    run_git(wt, "merge", "-q", "--no-edit", "main")
    commit_file(wt, "src/last.py", "z = 1\n", "a: after the merges")

    found = git.replayed_changes(repo, "main", "lanes/44/a")

    assert [c.sha for c in found] == git.commits_to_replay(repo, "main", "lanes/44/a")
    assert sorted(c.subject for c in found) == sorted(
        [
            "a: a path with a space",
            "a: a path that is not ASCII",
            "a: rename",
            "a: nothing",
            "side: work",
            "a: after the merges",
        ]
    )
    for c in found:
        assert sorted(c.paths) == sorted(_files_of(repo, c.sha)), c.subject
    by_subject = {c.subject: c for c in found}
    assert by_subject["a: rename"].paths == ["src/api.py", "src/app.py"]  # both sides
    assert by_subject["a: nothing"].paths == []
    assert by_subject["a: a path that is not ASCII"].paths == ["src/caf\u00e9.py"]
    assert by_subject["a: a path with a space"].author_email == "agent@lanes.invalid"


def test_an_edit_put_back_by_a_later_commit_is_named_with_both_commits(cfg: Config) -> None:
    repo = cfg.main_checkout
    wt = _lane(cfg, "a")
    text = (wt / "server.json").read_text()
    commit_file(wt, "src/a.py", "a = 1\n", "a: work")
    edit = commit_file(wt, "server.json", text.replace('"0.3.5"', '"0.4.0"'), "a: bump")
    back = commit_file(wt, "server.json", text, "a: put it back")
    assert git.changed_paths(repo, "main", "lanes/44/a") == ["src/a.py"]  # net: nothing

    assert guard.touching_commits(cfg, "main", "lanes/44/a") == [
        guard.Touch(edit, "a: bump", ["server.json"]),
        guard.Touch(back, "a: put it back", ["server.json"]),
    ]
    [found] = guard.branch_violations(cfg, "lanes/44/a")
    assert (found.path, found.surface) == ("server.json", "version")
    assert found.commits == ((edit, "a: bump"), (back, "a: put it back"))
    assert edit[:12] in guard.describe(found) and back[:12] in guard.describe(found)


def test_a_merge_of_main_is_not_blamed_for_what_main_changed(cfg: Config) -> None:
    repo = cfg.main_checkout
    wt = _lane(cfg, "a")
    commit_file(wt, "src/a.py", "a = 1\n", "a: work")
    text = (repo / "server.json").read_text()
    commit_file(repo, "server.json", text.replace("MCP server", "The MCP server"), "main: edit")
    run_git(wt, "merge", "-q", "--no-edit", "main")  # its diff to the first parent: server.json
    commit_file(wt, "src/b.py", "b = 1\n", "a: more")
    assert "server.json" in run_git(wt, "diff", "--name-only", "HEAD~1^1", "HEAD~1")
    assert guard.branch_violations(cfg, "lanes/44/a") == []


def test_what_a_merge_brings_is_judged_by_the_commit_that_brought_it(cfg: Config) -> None:
    repo = cfg.main_checkout
    wt = _lane(cfg, "a")
    commit_file(wt, "src/a.py", "a = 1\n", "a: work")
    # a side branch's commit touching pyproject.toml is replayed: it is named
    run_git(wt, "checkout", "-q", "-b", "side", "HEAD")
    side = commit_file(
        wt, "pyproject.toml", (wt / "pyproject.toml").read_text() + "# side\n", "side: edit"
    )
    run_git(wt, "checkout", "-q", "lanes/44/a")
    run_git(wt, "merge", "-q", "--no-ff", "--no-edit", "side")
    # a merge that edits server.json itself (an "evil" merge): the replay skips the merge,
    # the net change still shows the edit, and the merge is named
    run_git(wt, "checkout", "-q", "-b", "side2", "HEAD~1")
    commit_file(wt, "src/side2.py", "s = 2\n", "side2: work")
    run_git(wt, "checkout", "-q", "lanes/44/a")
    run_git(wt, "merge", "-q", "--no-ff", "--no-commit", "side2")
    (wt / "server.json").write_text((wt / "server.json").read_text().replace("MCP", "mcp"))
    run_git(wt, "add", "server.json")
    run_git(wt, "commit", "-q", "--no-edit")
    evil = run_git(wt, "rev-parse", "HEAD")

    found = {v.path: v for v in guard.branch_violations(cfg, "lanes/44/a")}
    assert set(found) == {"pyproject.toml", "server.json"}
    assert [sha for sha, _ in found["pyproject.toml"].commits] == [side]
    assert evil in [sha for sha, _ in found["server.json"].commits]
    assert evil not in git.commits_to_replay(repo, "main", "lanes/44/a")


# -- what is protected, and its look-alikes (lanes/surfaces/protected.py) -----------------

_FILES = {
    "server.json": protected.Rule("version", "v"),
    ".github/workflows/deploy.yml": protected.Rule("deploy", "d"),
    "lanes.toml": protected.Rule("config", "c"),
    "donn\u00e9es/caf\u00e9.json": protected.Rule("protected", "p"),  # NFD on macOS
}
_INBOX = "tools/offline/_inbox"


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("server.json", "version"),
        ("Server.JSON", "version"),
        ("server.json  ", "version"),
        ("server.json..", "version"),
        ("ser\u200dver.json", "version"),
        (".github", "deploy"),  # a file or link where the folder holding it is
        (".GitHub/workflows", "deploy"),
        (".github/workflows/deploy.yml/x", None),  # cannot exist beside the file itself
        ("tools/offline/_inbox/44/AGENT_LEDGER.md", "inbox"),
        ("tools/offline/_inbox", "inbox"),
        ("tools", "inbox"),
        ("Tools/Offline/_Inbox/44/a/claim.json", "inbox"),
        ("tools/offline/_inbox.md", None),
        ("tools/offline/other.txt", None),
        (".gitattributes", "attributes"),
        ("a/b/c/.gitattributes", "attributes"),
        ("a/.GITATTRIBUTES.", "attributes"),
        ("a/.gitattributes.bak", None),
        ("src/app.py", None),
        ("PyProject.toml", "config"),  # a look-alike of the file [tool.lanes] lives in
        ("pyproject.toml", None),  # its own changes are judged by content
        ("ops/x.sh", "protected"),
        ("OPS/x.sh", "protected"),
        ("secrets", "protected"),  # where a folder holding a protected file is
    ],
)
def test_what_match_refuses(path: str, kind: str | None) -> None:
    lookalikes = {"pyproject.toml": protected.Rule("config", "t")}
    rule = protected.match(path, _FILES, _INBOX, ["ops/*", "secrets/key.pem"], lookalikes)
    assert (rule.kind if rule else None) == kind


@given(
    st.sampled_from(sorted(_FILES)),
    st.lists(st.booleans(), min_size=40, max_size=40),
    st.text(alphabet=" .\u200c\u200d\ufeff", max_size=3),
    st.sampled_from(["NFC", "NFD"]),
)
def test_no_spelling_of_a_protected_file_gets_past(
    target: str, upper: list[bool], tail: str, form: str
) -> None:
    """Case, trailing spaces and dots, ignorable code points, Unicode form: one file on the
    filesystems that would check the look-alike out over the real one."""
    spelled = "".join(c.upper() if up else c for c, up in zip(target, upper, strict=False))
    spelled = unicodedata.normalize(form, spelled + tail)
    rule = protected.match(spelled, _FILES, _INBOX, [])
    assert rule is not None and rule == _FILES[target]


def test_a_commit_that_changes_tool_lanes_is_named_with_it(cfg: Config) -> None:
    repo = cfg.main_checkout
    text = (repo / "pyproject.toml").read_text()
    commit_file(repo, "pyproject.toml", text.replace('"pyproject.toml", ', ""), "ops: version")
    cfg = config.load(repo)
    wt = _lane(cfg, "a")
    mine = (wt / "pyproject.toml").read_text()
    doc = commit_file(wt, "pyproject.toml", mine.replace("jpcite API", "The API"), "a: doc")
    rules = commit_file(
        wt, "pyproject.toml", (wt / "pyproject.toml").read_text() + "\n[tool.lanes.x]\n", "a: x"
    )
    assert guard.touching_commits(cfg, "main", "lanes/44/a") == [
        guard.Touch(rules, "a: x", ["pyproject.toml"])
    ]
    [found] = guard.branch_violations(cfg, "lanes/44/a")
    assert (found.surface, found.commits) == ("config", ((rules, "a: x"),))
    assert doc not in guard.describe(found)


def test_unlandable_names_merges_and_orphans(cfg: Config) -> None:
    repo = cfg.main_checkout
    wt = _lane(cfg, "a")
    commit_file(wt, "src/a.py", "a = 1\n", "a: work")
    assert guard.unlandable(cfg, "main", "lanes/44/a", "lanes/44/a") is None
    commit_file(repo, "src/m.py", "m = 1\n", "main: moved")
    run_git(wt, "merge", "-q", "--no-edit", "main")
    merge = run_git(wt, "rev-parse", "HEAD")
    found = guard.unlandable(cfg, "main", "lanes/44/a", "lanes/44/a")
    assert found is not None and found.code == "lane-has-merge"
    assert [sha for sha, _ in found.commits] == [merge]
    run_git(wt, "checkout", "-q", "--orphan", "o")
    run_git(wt, "commit", "-q", "-m", "o: everything again")
    found = guard.unlandable(cfg, "main", "o", "o")
    assert found is not None and found.code == "orphan-branch"
    assert guard.unlandable(cfg, "main", "no-such-branch", "x") is None
