"""Worktrees: removed in one rename, so never half there; only this repository's own."""

from __future__ import annotations

from pathlib import Path

from lanes import claims, config, worktrees
from tests.conftest import git


def _trash(cfg: config.Config) -> list[Path]:
    return sorted(Path(cfg.settings.worktree_root).glob(f"{worktrees.TRASH}*"))


def test_remove_touches_only_this_repositorys_worktrees(cfg: config.Config) -> None:
    wt = Path(claims.claim(cfg, "44", "a", "agent-1").worktree)
    impostor = Path(cfg.settings.worktree_root) / "impostor"
    impostor.mkdir()
    (impostor / ".git").write_text(f"gitdir: {cfg.common_dir}/worktrees/{wt.name}\n")
    (impostor / "precious.txt").write_text("not a lane's\n")
    assert worktrees.remove(cfg, impostor) is False
    assert (impostor / "precious.txt").is_file()
    assert worktrees.remove(cfg, wt) is True and not wt.exists()
    assert str(wt) not in git(cfg.main_checkout, "worktree", "list")
    assert _trash(cfg) == []


def test_a_locked_worktree_is_removed_and_forgotten(cfg: config.Config) -> None:
    wt = Path(claims.claim(cfg, "44", "a", "agent-1").worktree)
    git(cfg.main_checkout, "worktree", "lock", str(wt))  # prune alone would keep it
    assert worktrees.remove(cfg, wt, "lanes/44/a") is True
    assert str(wt) not in git(cfg.main_checkout, "worktree", "list")
    assert git(cfg.main_checkout, "branch", "--list", "lanes/44/a") == ""


def test_trash_a_killed_remover_left_is_swept_and_only_this_projects(
    cfg: config.Config,
) -> None:
    root = Path(cfg.settings.worktree_root)
    ours = root / f"{worktrees.TRASH}{cfg.project}-44-a-0badf00d"
    theirs = root / f"{worktrees.TRASH}otherproject-44-a-0badf00d"
    for folder in (ours, theirs):
        (folder / "src").mkdir(parents=True)
        (folder / "src/app.py").write_text("x\n")
    worktrees.sweep_trash(cfg)
    assert not ours.exists() and theirs.exists()
