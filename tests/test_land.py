"""Landing one lane in the object store: what `git cherry-pick` did, without a working tree."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from integrator import integrate, land, plan
from lanes.config import Config
from tests.conftest import commit_file, git, publish, snapshot, stage
from tests.test_integrate import (
    WAVE,
    make_lane,
    manifest_frag,
    migration,
    set_test_command,
    show,
)


def lanes_of(cfg: Config) -> dict[str, plan.LanePlan]:
    return {lp.lane: lp for lp in plan.read(cfg, WAVE).lanes}


def cherry_picked_tree(repo: Path, onto: str, commits: list[str], where: Path) -> str | None:
    """What a plain `git cherry-pick` of `commits` onto `onto` gives (None: a conflict)."""
    git(repo, "worktree", "add", "-q", "--detach", str(where), onto)
    try:
        picked = subprocess.run(
            ["git", "cherry-pick", "--allow-empty", "--keep-redundant-commits", *commits],
            cwd=where,
            capture_output=True,
        )
        return git(where, "rev-parse", "HEAD^{tree}") if picked.returncode == 0 else None
    finally:
        subprocess.run(["git", "cherry-pick", "--abort"], cwd=where, capture_output=True)
        git(repo, "worktree", "remove", "--force", str(where))


def land_one(cfg: Config, lane: str, onto: str | None = None) -> land.Landed:
    stage(cfg, WAVE)  # as the pass does first (on a remote: the claims' fragments)
    the_plan = plan.read(cfg, WAVE)
    lp = next(lp for lp in the_plan.lanes if lp.lane == lane)
    assert lp.problem is None, lp.problem
    with land.Workspace(cfg, the_plan.head) as ws:
        lander = land.Lander(cfg, WAVE, ws)
        head = lander.head(onto or the_plan.head)
        surfaces = plan.Surfaces(cfg, lambda p: lander.read_text(head.tree, p), [])
        return lander.land(head, lp, surfaces)


def test_each_commit_is_replayed_as_cherry_pick_does_authors_and_messages_kept(
    cfg: Config, seed_repo: Path, tmp_path: Path
) -> None:
    # main and the lane make the same change to one line; the lane then changes it again.
    # A cherry-pick of the second commit merges against its own parent: clean. A merge of
    # the lane as a whole (base: where it forked) would conflict.
    wt = make_lane(cfg, "a", submit=False)
    commit_file(seed_repo, "src/app.py", '"""The API, v2."""\n', "main: v2")
    commit_file(wt, "src/app.py", '"""The API, v2."""\n', "a: v2 as well")
    (wt / "src" / "a.py").write_text("a = 1\n")
    git(wt, "add", "src/a.py")
    message = "a: v3  \n\n# not a comment to git here\nbody with trailing space \n\n\n"
    (wt / "src" / "app.py").write_text('"""The API, v3."""\n')
    git(wt, "add", "src/app.py")
    subprocess.run(
        ["git", "commit", "-q", "--cleanup=verbatim", "--author", "Ann <ann@x.invalid>", "-F", "-"],
        cwd=wt,
        input=message,
        text=True,
        check=True,
    )
    from lanes import submit

    submit.submit(cfg, WAVE, "a")
    own = git(seed_repo, "rev-list", "--reverse", "main..lanes/44/a").split()
    expected = cherry_picked_tree(seed_repo, "main", own, tmp_path / "pick")
    landed = land_one(cfg, "a")
    assert len(landed.commits) == 3  # two replayed, the trailer commit
    assert git(seed_repo, "rev-parse", f"{landed.commits[1]}^{{tree}}") == expected
    for original, replayed in zip(own, landed.commits, strict=False):
        before = git(seed_repo, "cat-file", "commit", original).split("\n\n", 1)
        after = git(seed_repo, "cat-file", "commit", replayed).split("\n\n", 1)
        assert after[1] == before[1]  # the message, byte for byte
        author = [ln for ln in before[0].splitlines() if ln.startswith("author ")]
        assert author == [ln for ln in after[0].splitlines() if ln.startswith("author ")]
    raw = git(seed_repo, "cat-file", "commit", landed.commits[1])
    assert "committer test agent <agent@lanes.invalid>" in raw  # the pass
    assert git(seed_repo, "rev-parse", f"{landed.commits[0]}^") == git(
        seed_repo, "rev-parse", "main"
    )


def test_a_commit_that_conflicts_bounces_even_if_a_later_one_puts_it_back(
    cfg: Config, seed_repo: Path, tmp_path: Path
) -> None:
    wt = make_lane(cfg, "b", submit=False)
    commit_file(seed_repo, "src/app.py", '"""main\'s"""\n', "main: app")
    original = (wt / "src" / "app.py").read_text()
    commit_file(wt, "src/app.py", '"""b\'s"""\n', "b: app")
    commit_file(wt, "src/app.py", original, "b: put it back")
    commit_file(wt, "src/b.py", "b\n", "b: work")
    from lanes import submit

    submit.submit(cfg, WAVE, "b")
    own = git(seed_repo, "rev-list", "--reverse", "main..lanes/44/b").split()
    assert cherry_picked_tree(seed_repo, "main", own, tmp_path / "pick") is None
    with pytest.raises(plan.BounceError) as bounce:
        land_one(cfg, "b")
    assert (bounce.value.reason, bounce.value.files) == ("conflict", ["src/app.py"])


def test_nothing_but_objects_is_written(cfg: Config, seed_repo: Path) -> None:
    files, entry = migration("c", 261)
    make_lane(cfg, "c", files, [manifest_frag(entry)])
    stage(cfg, WAVE)  # on a remote, reading renders AGENT_LEDGER.md (a cache): read once
    plan.read(cfg, WAVE)
    refs = git(seed_repo, "for-each-ref")
    before = snapshot(seed_repo), git(seed_repo, "worktree", "list", "--porcelain")
    landed = land_one(cfg, "c")
    assert (snapshot(seed_repo), git(seed_repo, "worktree", "list", "--porcelain")) == before
    assert git(seed_repo, "for-each-ref") == refs
    assert entry in show(
        seed_repo, "scripts/migrations/autonomath_boot_manifest.txt", landed.head.sha
    )


def test_merges_obey_mains_attributes_not_the_checkouts(seed_repo: Path, tmp_path: Path) -> None:
    """Measured on git 2.39: merge-tree reads .gitattributes only from the working tree it
    runs in, never from the trees it merges. The pass runs it in a folder holding main's, so
    main's `merge=union` holds, and the user's checkout's own attributes do not count."""
    commit_file(seed_repo, ".gitattributes", "notes.txt merge=union\n", "main: union notes")
    commit_file(seed_repo, "notes.txt", "start\n", "main: notes")
    publish(seed_repo)
    from lanes import config

    cfg = config.load(seed_repo)
    make_lane(cfg, "n1", {"notes.txt": "start\nn1\n"})
    make_lane(cfg, "n2", {"notes.txt": "start\nn2\n"})
    make_lane(cfg, "s1", {"src/app.py": '"""s1"""\n'})
    make_lane(cfg, "s2", {"src/app.py": '"""s2"""\n'})
    # the user's checkout says otherwise, uncommitted: it must not count
    (seed_repo / ".gitattributes").write_text("notes.txt -merge\n* merge=union\n")
    (seed_repo / "src" / ".gitattributes").write_text("* merge=union\n")
    result = integrate.integrate(cfg, WAVE)
    assert result.integrated == ["n1", "n2", "s1"]
    assert [(b.lane, b.reason, b.files) for b in result.bounced] == [
        ("s2", "conflict", ["src/app.py"])
    ]
    assert show(seed_repo, "notes.txt") == "start\nn1\nn2\n"


def test_a_contended_file_that_is_a_link_on_main_is_never_written_through(
    seed_repo: Path,
) -> None:
    manifest = seed_repo / "scripts" / "migrations" / "autonomath_boot_manifest.txt"
    real = seed_repo / "scripts" / "manifest-real.txt"
    real.write_text(manifest.read_text())
    manifest.unlink()
    manifest.symlink_to("../manifest-real.txt")
    git(seed_repo, "add", "-A")
    git(seed_repo, "commit", "-q", "-m", "main: the manifest is a link")
    publish(seed_repo)
    from lanes import config

    cfg = config.load(seed_repo)
    files, entry = migration("d", 261)
    make_lane(cfg, "d", files, [manifest_frag(entry)])
    with pytest.raises(plan.BounceError) as bounce:
        land_one(cfg, "d")
    assert bounce.value.reason == "bad-fragment" and "symbolic link" in bounce.value.message


def test_modes_and_bytes_of_the_files_written_are_kept(seed_repo: Path) -> None:
    path = "scripts/migrations/autonomath_boot_manifest.txt"
    text = (seed_repo / path).read_text().replace("\n", "\r\n")
    (seed_repo / path).write_text(text, newline="")
    (seed_repo / path).chmod(0o755)
    git(seed_repo, "add", path)
    git(seed_repo, "commit", "-q", "-m", "main: a CRLF, executable manifest")
    publish(seed_repo)
    from lanes import config

    cfg = config.load(seed_repo)
    files, entry = migration("e", 261)
    make_lane(cfg, "e", files, [manifest_frag(entry)])
    landed = land_one(cfg, "e")
    listing = git(seed_repo, "ls-tree", landed.head.sha, path)
    assert listing.startswith("100755 blob ")
    blob = subprocess.run(
        ["git", "cat-file", "blob", f"{landed.head.sha}:{path}"],
        cwd=seed_repo,
        capture_output=True,
        check=True,
    ).stdout
    assert f"\r\n{entry}\r\n".encode() in blob and b"\n\n" not in blob.replace(b"\r\n", b"")


FAKE_GPG = """#!/bin/sh
cat > /dev/null
echo "[GNUPG:] SIG_CREATED D 1 8 00 1700000000 ABCDEF0123456789" >&2
printf -- "-----BEGIN PGP SIGNATURE-----\\n\\nbGFuZXM=\\n-----END PGP SIGNATURE-----\\n"
"""


def test_with_commit_gpgsign_the_pass_signs_as_git_commit_did(
    seed_repo: Path, tmp_path: Path
) -> None:
    gpg = tmp_path / "fake-gpg"
    gpg.write_text(FAKE_GPG)
    gpg.chmod(0o755)
    from lanes import config

    cfg = config.load(seed_repo)
    make_lane(cfg, "f", {"src/f.py": "f\n"}, message="f: work")
    git(seed_repo, "config", "commit.gpgSign", "true")
    git(seed_repo, "config", "gpg.program", str(gpg))
    git(seed_repo, "config", "user.signingKey", "ABCDEF0123456789")
    result = integrate.integrate(cfg, WAVE)
    assert result.integrated == ["f"]
    for sha in result.landings[0].commits:
        assert "gpgsig -----BEGIN PGP SIGNATURE-----" in git(seed_repo, "cat-file", "commit", sha)
    assert git(seed_repo, "log", "-1", "--format=%an %s", result.landings[0].commits[0]) == (
        "test agent f: work"
    )


def test_with_a_test_command_the_scratch_is_only_for_the_test(
    seed_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The landing is the same with or without tests: the scratch worktree only runs them."""
    log = tmp_path / "where"
    monkeypatch.setenv("WHERE", str(log))
    cfg = set_test_command(seed_repo, 'pwd >> "$WHERE"; git status --porcelain >> "$WHERE"')
    make_lane(cfg, "g", {"src/g.py": "g\n"})
    result = integrate.integrate(cfg, WAVE)
    assert result.integrated == ["g"]
    where, *dirty = log.read_text().splitlines()
    assert cfg.state_dir / integrate.SCRATCH in Path(where).parents and dirty == []
