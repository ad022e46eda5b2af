"""The user's checkout of main: brought along when the pass moves main, never reverted.

When main moves, a clean checkout of it is fast-forwarded with it; one with changes is
detached at the old tip (its files untouched) so nothing there can revert the new main.
A journal in the git dir, written before the compare-and-swap, lets the next pass finish
bringing the checkout along if this one is killed in between.
"""

from __future__ import annotations

import json
import os
from typing import Any

from lanes import git
from lanes.config import Config

JOURNAL = "integrate-journal.json"


def bring_along(cfg: Config, old: str, new: str) -> tuple[str, str]:
    """Move the checkout's index and files from `old` to `new` (a fast-forward)."""
    repo = cfg.main_checkout
    # git treats ignored files as expendable and would overwrite them without a word: a
    # lane that committed `.env` (git add -f) would replace the user's own. Never.
    in_the_way = [p for p in git.added_paths(repo, old, new) if os.path.lexists(repo / p)]
    if in_the_way:
        git.detach_head(repo, old)
        shown = ", ".join(in_the_way[:5]) + (" ..." if len(in_the_way) > 5 else "")
        return "detached", detached_note(
            cfg,
            old,
            f"the new {cfg.main} would replace file(s) there that git does not track: {shown}; "
            "move them aside first",
        )
    if git.move_files(repo, old, new).returncode == 0:
        return "updated", ""
    git.detach_head(repo, old)  # a change arrived since we looked: keep it consistent
    return "detached", detached_note(cfg, old, "a local change was in the way")


def detached_note(cfg: Config, old: str, why: str) -> str:
    return (
        f"{cfg.main_checkout} was left as it was ({why}), detached at {old[:12]} so that "
        f"nothing there can revert the new {cfg.main}; run `git checkout {cfg.main}` there "
        "to catch up (git keeps your changes, or tells you which file is in the way)"
    )


def catch_up(cfg: Config) -> str:
    """A pass killed between moving main and moving the checkout's files left a journal:
    finish what it began, if the checkout is still exactly where that pass left it."""
    journal = read_journal(cfg)
    if journal is None:
        return ""
    repo, old = cfg.main_checkout, str(journal.get("old", ""))
    now = git.rev_parse(repo, cfg.main)
    note = ""
    if (
        now
        and old
        and now != old
        and git.head_branch(repo) == f"refs/heads/{cfg.main}"
        and git.is_ancestor(repo, old, now)
    ):
        if git.index_at(repo, old):  # still where the killed pass found it
            _, note = bring_along(cfg, old, now)
            note = note or f"brought {repo} along to {now[:12]} after an interrupted pass"
        elif not git.index_at(repo, now):  # staged changes made on top of the old tip
            git.detach_head(repo, old)
            note = detached_note(cfg, old, "it has staged changes")
    forget_journal(cfg)
    return note


def write_journal(cfg: Config, doc: dict[str, str]) -> None:
    path = cfg.state_dir / JOURNAL
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(doc, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_journal(cfg: Config) -> dict[str, Any] | None:
    try:
        doc = json.loads((cfg.state_dir / JOURNAL).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def forget_journal(cfg: Config) -> None:
    (cfg.state_dir / JOURNAL).unlink(missing_ok=True)
