"""Land one lane on a tree, in the object store: no working tree, no index, no ref moved.

A lane's non-merge commits are replayed in order, each with `git merge-tree --write-tree`
against a throwaway commit that has the replay so far as its tree and the replayed commit's
own parent as its parent, so that the merge base is exactly that parent: the three-way
merge `git cherry-pick` does (git 2.39 has no `--merge-base`), and one git finds at once
(against the head itself it would walk back through every commit the pass has made). Each replayed
commit keeps its author line and message byte for byte; the committer is the pass. Then the
lane's fragments (manifest entries, deploy patches, through plan.Surfaces, as the gate reads
them) go into one more commit that carries the trailers; with `land = "squash"` the lane's
replayed trees are checked the same way and only that one commit is made, listing the
lane's own commits. A conflict, a replay git refuses or a fragment that cannot apply is a
BounceError: nothing anyone can see changed (only unreachable objects were written).

Attributes: `merge-tree` reads `.gitattributes` only from the working tree it runs in (not
from the trees it merges; measured on git 2.39, docs/integrator.md), so the merges run in a
`Workspace` whose only files are main's `.gitattributes`, written from the tree the pass
starts from: the same attributes the scratch worktree of the cherry-pick pass had, and, as
no lane may change a `.gitattributes` (D35), main's at every step.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from integrator import trailers
from integrator.plan import BounceError, LaneChange, LanePlan, Surfaces, seen_by
from lanes import git
from lanes.config import Config
from lanes.surfaces import version

REGULAR = ("100644", "100755")
_KINDS = {"120000": "a symbolic link", "160000": "a submodule", "40000": "a folder"}


@dataclass(frozen=True)
class Head:
    """A commit the pass lands on, with its tree (read once, carried along)."""

    sha: str
    tree: str


@dataclass(frozen=True)
class Landed:
    """One lane landed on a head: its new commits, oldest first (the last one carries the
    trailers), and what its fragments did."""

    lane: LanePlan
    base: Head
    commits: list[str]
    head: Head
    change: LaneChange


class Workspace:
    """Where the pass's merges run: a folder holding only main's `.gitattributes` (as the
    working tree of GIT_WORK_TREE, with an index of its own that never exists) and the
    object store's processes. Under `root` (the pass: the scratch root, swept by the next
    pass after a kill) or in the system's temporary folder (the dry run, which writes
    nothing in the repository)."""

    def __init__(self, cfg: Config, rev: str, root: Path | None = None) -> None:
        if root is None:
            self.path = Path(tempfile.mkdtemp(prefix="lanes-land-"))
        else:
            root.mkdir(parents=True, exist_ok=True)
            self.path = root / f"land-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            self.path.mkdir()
        self.tree_dir = self.path / "tree"
        self.tree_dir.mkdir()
        self.env = {
            "GIT_DIR": str(cfg.common_dir),
            "GIT_WORK_TREE": str(self.tree_dir),
            "GIT_INDEX_FILE": str(self.path / "index"),
        }
        self.store = git.ObjectStore(self.tree_dir, self.path, self.env)
        try:
            self._write_attributes(cfg, rev)
        except BaseException:
            self.close()
            raise

    def _write_attributes(self, cfg: Config, rev: str) -> None:
        for path, blob in git.attribute_files(cfg.main_checkout, rev):
            parts = path.split("/")
            if any(p in ("", ".", "..") or p.lower() == ".git" for p in parts):
                continue  # never a path git itself would check out
            found = self.store.read(blob)
            if found is None:
                continue
            target = self.tree_dir.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(found[1])

    def merge(self, ours: str, theirs: str) -> git.MergeResult:
        return git.merge_tree_at(self.env, self.tree_dir, ours, theirs)

    def close(self) -> None:
        self.store.close()
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Lander:
    """Lands lanes, and the version bump, on heads it is given: pure with respect to refs,
    worktrees and the inbox (it only adds objects)."""

    def __init__(self, cfg: Config, wave: str, ws: Workspace) -> None:
        self.cfg, self.wave, self.ws, self.store = cfg, wave, ws, ws.store
        self.identity = git.pass_identity(cfg.main_checkout)
        self.squash = cfg.settings.land == "squash"
        self._bumps: dict[tuple[str, str], tuple[Head, str, str]] = {}

    # -- reading trees ------------------------------------------------------------------

    def head(self, sha: str) -> Head:
        found = self.store.read(sha)
        if found is None or found[0] != "commit":
            raise ValueError(f"{sha} is not a commit")
        return Head(sha, git.parse_commit(sha, found[1]).tree)

    def entry(self, tree: str, path: str) -> git.TreeEntry | None:
        """The entry at `path` in `tree` (None: no such path)."""
        found: git.TreeEntry | None = None
        current: str | None = tree
        for part in path.strip("/").split("/"):
            entries = self.store.tree(current) if current else None
            if entries is None:
                return None
            name = part.encode("utf-8", "surrogateescape")
            found = next((e for e in entries if e.name == name), None)
            if found is None:
                return None
            current = found.sha if found.kind == "tree" else None
        return found

    def read_text(self, tree: str, path: str) -> str | None:
        """A file's text in `tree` (bytes that are not UTF-8 survive the round trip)."""
        found = self.entry(tree, path)
        if found is None or found.kind != "blob":
            return None
        data = self.store.read(found.sha)
        return data[1].decode("utf-8", "surrogateescape") if data else None

    def list_files(self, tree: str, directory: str) -> list[str]:
        """Names of the files directly in `directory` of `tree` (as git.list_files)."""
        sha: str | None = tree
        if directory.strip("/"):
            found = self.entry(tree, directory)
            sha = found.sha if found is not None and found.kind == "tree" else None
        entries = self.store.tree(sha) if sha else None
        return [
            e.name.decode("utf-8", "surrogateescape") for e in entries or [] if e.kind == "blob"
        ]

    # -- landing a lane -------------------------------------------------------------------

    def land(self, base: Head, lp: LanePlan, surfaces: Surfaces) -> Landed:
        """Replay `lp` on `base` and write its fragments' commit. Raises BounceError; does
        not change `surfaces` (the caller accepts the change once it keeps the lane)."""
        tree, made = base.tree, list[str]()
        for commit in lp.commits:
            if not commit.parents:
                raise BounceError("replay-failed", [], f"{commit.sha[:12]} has no parent")
            # Against a stand-in for the replay so far whose parent is the commit's own:
            # their merge base is that parent, found in one step (the head itself would
            # do for the first commit, but git would walk back through every commit the
            # pass made to find it).
            merged = self.ws.merge(self._stand_in(tree, commit.parents[0]), commit.sha)
            if merged.code == 1:
                files = merged.conflicted
                raise BounceError(
                    "conflict",
                    files,
                    f"the lane conflicts with {self.cfg.main}: {', '.join(files)}",
                )
            if merged.code != 0:
                raise BounceError("replay-failed", [], merged.message[-500:])
            tree = merged.tree
            if not self.squash:
                parent = made[-1] if made else base.sha
                made.append(
                    self._commit(tree, [parent], commit.author, commit.message, commit.encoding)
                )
        present: set[str] = set()
        if lp.entries:
            present = set(self.list_files(tree, self.cfg.entries_dir()))
        change = surfaces.change_for(lp, present, seen_by(self.cfg.main_checkout, lp.tip or ""))
        tree = self.write_files(tree, change.files)
        summary = [f"manifest: + {e}" for e in change.entries]
        summary += [f"deploy: {op.op} {op.path}" for op in change.ops]
        summary += [f"version: {lp.bump} bump requested"] if lp.bump else []
        message = trailers.lane_message(self.wave, lp.lane, lp.fragment_files, summary)
        author = self.identity.stamp(self.identity.author, self.identity.author_date)
        if self.squash:
            message = _listing_commits(message, lp.commits)
            last = lp.commits[-1] if lp.commits else None
            if last is not None and last.author_name.strip():  # git refuses an empty name
                who = f"{last.author_name} <{last.author_email}>".encode("utf-8", "surrogateescape")
                author = self.identity.stamp(who, self.identity.author_date)
        parent = made[-1] if made else base.sha
        made.append(self._commit(tree, [parent], author, message.encode("utf-8")))
        return Landed(lp, base, made, Head(made[-1], tree), change)

    def bump(self, base: Head, step: str) -> tuple[Head, str, str]:
        """The version bump commit on `base`: (its head, "minor 0.3.5 -> 0.4.0", new version).
        The same bump on the same head is the same commit (the tests and main share it)."""
        key = (base.sha, step)
        if key not in self._bumps:
            names = self.cfg.surfaces.version_files
            texts = {name: self.read_text(base.tree, name) or "" for name in names}
            old, new, changed = version.bump_files(texts, step)
            tree = self.write_files(base.tree, changed)
            message = trailers.bump_message(self.wave, step, old, new).encode("utf-8")
            author = self.identity.stamp(self.identity.author, self.identity.author_date)
            sha = self._commit(tree, [base.sha], author, message)
            self._bumps[key] = (Head(sha, tree), f"{step} {old} -> {new}", new)
        return self._bumps[key]

    # -- writing objects ------------------------------------------------------------------

    def write_files(self, tree: str, files: dict[str, str]) -> str:
        """`tree` with each path's content replaced (or added): the trees along each path
        written again, every other entry kept as it was (modes included). A path that is
        not a regular file in `tree` (a link, a submodule, a folder) bounces the lane."""
        for path, text in sorted(files.items()):
            blob = self.store.blob(text.encode("utf-8", "surrogateescape"))
            tree = self._put(tree, path.strip("/").split("/"), blob, path)
        return tree

    def _put(self, tree: str | None, parts: list[str], blob: str, path: str) -> str:
        entries = list(self.store.tree(tree) or []) if tree else []
        name = parts[0].encode("utf-8", "surrogateescape")
        old = next((e for e in entries if e.name == name), None)
        entries = [e for e in entries if e.name != name]
        if len(parts) == 1:
            if old is not None and old.mode not in REGULAR:
                raise BounceError(
                    "bad-fragment",
                    [path],
                    f"{path} is {_KINDS.get(old.mode, 'not a file')} on {self.cfg.main}: the "
                    "pass writes only regular files; ask the operator to make it one",
                )
            entries.append(git.TreeEntry(old.mode if old else "100644", blob, name))
        else:
            if old is not None and old.kind != "tree":
                where = posixpath.join(*path.split("/")[: -len(parts) + 1])
                raise BounceError(
                    "bad-fragment",
                    [path],
                    f"{where} is not a folder on {self.cfg.main}, so {path} cannot be written",
                )
            sub = self._put(old.sha if old else None, parts[1:], blob, path)
            entries.append(git.TreeEntry("40000", sub, name))
        return self.store.make_tree(entries)

    def _stand_in(self, tree: str, parent: str) -> str:
        """A commit nobody will reference: the replay so far, on the replayed commit's own
        parent, so that merge-tree's merge base is that parent (a cherry-pick's)."""
        who = self.identity.stamp(self.identity.committer, self.identity.committer_date)
        return self.store.commit(
            git.commit_object(tree, [parent], who, who, b"lanes: replay base\n")
        )

    def _commit(
        self,
        tree: str,
        parents: list[str],
        author: bytes,
        message: bytes,
        encoding: bytes | None = None,
    ) -> str:
        if self.identity.sign:  # commit.gpgSign: git commit-tree signs, as git commit did
            return git.commit_tree_signed(
                self.cfg.main_checkout, tree, parents, author, message, encoding, self.identity.env
            )
        committer = self.identity.stamp(self.identity.committer, self.identity.committer_date)
        return self.store.commit(
            git.commit_object(tree, parents, author, committer, message, encoding)
        )


def _listing_commits(message: str, own: list[git.RawCommit]) -> str:
    """A squashed lane's message: the lane's own commits (short sha, subject) listed after
    the subject line, the fragments' summary and the trailers as a replayed lane has them."""
    subject, _, rest = message.partition("\n\n")
    listed = "\n".join(f"- {c.sha[:12]} {c.subject}" for c in own) or "- none: fragments only"
    return f"{subject}\n\nThe lane's own commits, squashed into this one:\n{listed}\n\n{rest}"
