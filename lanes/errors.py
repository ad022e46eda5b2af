"""The project's errors: each carries a short code, its exit code and a hint.

Every code is declared once, in `REGISTRY` below, with its exit code and its default hint
(one line: what to do instead). A raise site names the code and may give a sharper hint;
the exit code always comes from the registry, and the exception class must agree with it
(raising `BadInput` for a code the registry gives exit 4 is a bug, and so is a code the
registry does not know: both raise `RegistryError` where the error is made, so the tests
catch them). Outcomes that are not errors but still set an exit code (a lane bounced, the
gate failed) are declared here too, so no command holds a literal exit code.

The CLI turns errors into output and exit codes in one place; the core only raises them.
This module imports nothing heavy: every command, `lanes --help` included, imports it.
docs/exit-codes.md holds the registry's table (`python -m lanes.errors` prints it).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, NamedTuple

# The exit codes of SPEC.md ("Exit codes"), and Ctrl-C's.
DONE = 0
OPERATIONAL = 1
BAD_INPUT = 2
CONTENTION = 3
REFUSED = 4
INTERRUPTED = 130

Kind = Literal["error", "outcome"]


class Code(NamedTuple):
    name: str
    exit_code: int
    kind: Kind  # "error": raised as a LanesError; "outcome": a result that sets the exit code
    meaning: str
    hint: str  # one line: what to do instead


REGISTRY: dict[str, Code] = {}


class RegistryError(Exception):
    """A raise site that disagrees with the registry: a bug in lanes, never the user's."""


def _declare(name: str, exit_code: int, meaning: str, hint: str, kind: Kind = "error") -> None:
    if name in REGISTRY:
        raise RegistryError(f"error code {name!r} is declared twice")
    REGISTRY[name] = Code(name, exit_code, kind, meaning, hint)


# -- 0: done ---------------------------------------------------------------------------------
_declare("done", DONE, "the command did what it was asked", "go on", kind="outcome")

# -- 1: operational failures -----------------------------------------------------------------
_declare(
    "git-failed",
    OPERATIONAL,
    "a git command failed",
    "read git's message; fix what it names (a lock file, permissions, disk space), then rerun",
)
_declare(
    "not-a-repository",
    OPERATIONAL,
    "run outside a checkout of a git repository",
    "run lanes from the main checkout or from a lane's worktree",
)
_declare(
    "no-cwd",
    OPERATIONAL,
    "the current directory no longer exists",
    "cd into the main checkout or a lane's worktree and run it again",
)
_declare(
    "worktree-path-exists",
    OPERATIONAL,
    "the lane's worktree path is already taken (the claim is undone)",
    "move that path away (lanes gc removes finished worktrees), then claim again",
)
_declare(
    "disk-full",
    OPERATIONAL,
    "no space left: the disk, a quota or a file size limit is full",
    "free space on the filesystem the message names (df -h PATH), then run the command again",
)
_declare(
    "io-failed",
    OPERATIONAL,
    "a file could not be read or written: a read-only filesystem, permissions, an I/O error",
    "fix what the message names (remount read-write, permissions, the disk), then rerun",
)
_declare(
    "remote-failed",
    OPERATIONAL,
    "the git remote lanes coordinates through (remote = ...) could not be reached, or refused "
    "a push; nothing was changed locally that the remote does not also have",
    "check the remote named in the message (git ls-remote REMOTE works?), then run the "
    "command again: it finishes or undoes what an interrupted one left",
)
_declare(
    "main-update-refused",
    OPERATIONAL,
    "lanes integrate: git refused to move main (a reference-transaction hook, or a lock file "
    "left in the way); main did not move, nothing changed",
    "read git's message in the error: change or disable the hook, or remove the stale lock "
    "file if no git process is running; then run lanes integrate again",
)
_declare(
    "save-failed",
    OPERATIONAL,
    "release or gc could not save a lane's work whole (git or the disk failed, a nested "
    "repository too big, commits on no branch): nothing was removed",
    "fix what the message names, then run the command again; the worktree is untouched",
)
_declare(
    "save-check-failed",
    OPERATIONAL,
    "a lane's saved work did not read back as what is on disk: nothing was removed, and the "
    "partial save is kept (partial_save)",
    "run the command again (a file changing during the save does this), or copy the work out",
)
_declare(
    "worktree-not-removed",
    OPERATIONAL,
    "a lane's work was saved, but its worktree could not be moved away to be deleted",
    "fix what the message names (a mount point, permissions), then run the command again",
)
_declare(
    "gc-incomplete",
    OPERATIONAL,
    "lanes gc did the other lanes but could not finish some (each in failed, with why)",
    "fix what each failed lane's message says, then run lanes gc again",
)
_declare(
    "internal-error",
    OPERATIONAL,
    "an unexpected exception: a bug in lanes",
    "this is a bug in lanes; report it with the traceback file the message names",
)
_declare(
    "demo-failed",
    OPERATIONAL,
    "lanes demo: a step of the story did not go as expected",
    'read "problems" (or the red lines) for the steps that did not',
    kind="outcome",
)

# setup on every claim, and the port registry (lanes claim, [setup])
_declare(
    "setup-failed",
    OPERATIONAL,
    "lanes claim: the new worktree's setup failed (a copy, a link or a setup command): the "
    "claim is undone, its worktree and new branch removed; the error names the step, the "
    "command, its exit code and the end of its output (the whole of it in log)",
    "fix what failed (the [setup] section, or what the command needs), then claim again",
)
_declare(
    "no-free-port",
    OPERATIONAL,
    "lanes claim: every slot of [setup] port_range is held by a live lane; nothing was claimed",
    "release lanes you no longer need (lanes release, lanes gc), or widen port_range or "
    "lower ports in [setup]; then claim again",
)

# -- 2: bad input, nothing was changed -------------------------------------------------------
_declare(
    "bad-usage",
    BAD_INPUT,
    "an unknown option, a missing or extra argument",
    "see lanes COMMAND --help",
)
_declare(
    "bad-arguments",
    BAD_INPUT,
    "WAVE without LANE, or LANE without WAVE",
    "give both WAVE and LANE, or neither (inside the lane's worktree)",
)
_declare(
    "bad-config",
    BAD_INPUT,
    "lanes.toml or [tool.lanes] is invalid, or a file it names cannot be used",
    "fix lanes.toml (or [tool.lanes] in pyproject.toml); docs/configuration.md lists every key",
)
_declare(
    "config-exists",
    BAD_INPUT,
    "lanes init found a configuration already",
    "keep it, or run lanes init --force to replace it",
)
_declare(
    "bad-wave",
    BAD_INPUT,
    "an invalid wave name",
    "a wave name matches ^[a-z0-9][a-z0-9._-]{0,39}$, without '..' or a final '.' or '.lock'",
)
_declare(
    "bad-lane",
    BAD_INPUT,
    "an invalid lane name",
    "a lane name matches ^[a-z0-9][a-z0-9._-]{0,39}$, without '..' or a final '.' or '.lock'",
)
_declare(
    "bad-agent",
    BAD_INPUT,
    "an invalid agent id",
    "an agent id matches ^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$",
)
_declare(
    "bad-entry",
    BAD_INPUT,
    "an invalid manifest entry",
    "name a plain file of entries_dir, such as 261_legal_chain_v2.sql",
)
_declare(
    "bad-base",
    BAD_INPUT,
    "--base is empty, not a commit, or another lane's branch",
    "omit --base to branch from main, or name a commit",
)
_declare(
    "bad-sparse",
    BAD_INPUT,
    "a --sparse path is not a directory of the base",
    "give a directory inside the repository, like src/api or docs",
)
_declare(
    "no-main",
    BAD_INPUT,
    "the integration branch does not exist",
    "commit to main first, or set main in the lanes configuration",
)
_declare(
    "no-lane-here",
    BAD_INPUT,
    "no WAVE LANE given, and this is not a lane's worktree",
    "give WAVE LANE, or run it inside the lane's worktree (lanes status lists them)",
)
_declare(
    "no-wave",
    BAD_INPUT,
    "no WAVE given, and there is not exactly one wave",
    "name the wave: lanes ledger 44",
)
_declare(
    "unknown-wave",
    BAD_INPUT,
    "the wave has no ledger: nothing was ever claimed in it",
    "check the name with lanes status; a wave starts with its first lanes claim",
)
_declare(
    "bad-bump",
    BAD_INPUT,
    "not a version bump",
    "use one of: major, minor, patch",
)
_declare(
    "bad-version",
    BAD_INPUT,
    "a version that is not X.Y.Z cannot be bumped",
    "set a plain semantic version (like 0.3.5) in every version file",
)
_declare(
    "bad-version-file",
    BAD_INPUT,
    "a version file is missing on main or its version cannot be read",
    "fix the file on main, or list only real version files in [version].files",
)
_declare(
    "main-versions-disagree",
    BAD_INPUT,
    "lanes integrate: main's own version files carry different versions",
    "make them carry the same version on main (one commit by hand), then rerun lanes integrate",
)
_declare(
    "bad-fragment",
    BAD_INPUT,
    "a fragment that is invalid, does not parse, or does not apply",
    "fix the fragment (see lanes brief for the fragment commands), then drop it again",
)
_declare(
    "no-surface",
    BAD_INPUT,
    "the surface this fragment changes is not configured, or is switched off",
    "ask the operator to name it in lanes.toml",
)
_declare(
    "unknown-fragment",
    BAD_INPUT,
    "lanes fragment withdraw: the lane has no fragment of that name",
    "name one of the lane's fragments (listed with the error)",
)
# Claude Code hooks: lanes hook worktree-create|worktree-remove, lanes init --claude-code
_declare(
    "bad-hook-input",
    BAD_INPUT,
    "lanes hook: the hook document on standard input is missing, not a JSON object, "
    "incomplete in time, too big, or lacks a field it needs",
    "run it as Claude Code's hook (lanes init --claude-code), or pipe a document in by hand",
)
_declare(
    "bad-claude-settings",
    BAD_INPUT,
    "lanes init --claude-code: .claude/settings.json is not a JSON object lanes can merge "
    "its hooks into (or not a regular file); it was left unchanged",
    "fix .claude/settings.json (valid JSON, an object; hooks an object of arrays), then rerun",
)
# the wave runner (lanes run)
_declare(
    "bad-plan",
    BAD_INPUT,
    "lanes run: the plan is invalid (a key unknown or of the wrong type, a bad lane name, a "
    "lane twice, two lanes owning one path, a task file missing); nothing was claimed",
    "fix the key the message names (docs/runner.md describes the plan), then run it again",
)

# -- 3: contention ---------------------------------------------------------------------------
_declare(
    "claimed",
    CONTENTION,
    "the lane is held by someone else",
    "pick another lane, or wait until it is released or reaped",
)
_declare(
    "integrator-running",
    CONTENTION,
    "another integration pass holds the lock",
    "wait for it to finish, then run lanes integrate again",
)
_declare(
    "main-moved",
    CONTENTION,
    "someone moved main during the pass; nothing changed",
    "run lanes integrate again",
)
# the wave runner (lanes run)
_declare(
    "runner-running",
    CONTENTION,
    "lanes run: another runner is running this wave on this machine",
    "wait for it to finish (lanes status WAVE shows its lanes), or stop it with Ctrl-C; "
    "then run it again: it resumes",
)

# -- 4: refused by a rule --------------------------------------------------------------------
_declare(
    "worktree-busy",
    REFUSED,
    "lanes submit: a rebase, merge or cherry-pick is in progress in the lane's worktree, or "
    "its HEAD is off the lane's branch: the branch's tip is not the work; nothing submitted",
    "finish or abort what is in progress (git rebase --continue), then lanes submit again",
)
_declare(
    "main-diverged",
    REFUSED,
    "main here has commits the remote's main lacks; the pass lands on the remote's main only",
    "push them to the remote, or reset main here to the remote's, then run the pass again",
)
_declare(
    "lane-integrated",
    REFUSED,
    "the lane is integrated: it is finished",
    "claim a new lane for more work",
)
_declare(
    "not-held",
    REFUSED,
    "the lane is not held by this claim",
    "claim the lane first (lanes claim WAVE LANE --agent ID)",
)
_declare(
    "lane-not-open",
    REFUSED,
    "the lane is submitted (or released): its branch and fragments are the integrator's",
    "see lanes status; a submitted lane comes back if it bounces",
)
_declare(
    "touches-contended-surface",
    REFUSED,
    "a commit of the lane changes a contended or protected file",
    "put the file back as main has it and ask for the change with a lanes fragment",
)
_declare(
    "orphan-branch",
    REFUSED,
    "the lane's branch shares no history with main (git checkout --orphan, a force-moved branch)",
    "put the work on top of main (git rebase --root --onto main), then submit again",
)
_declare(
    "lane-has-merge",
    REFUSED,
    "the lane's branch holds a merge commit: the pass lands commits one by one, never a merge",
    "rebase instead of merging (git rebase main in the lane's worktree), then submit again",
)
_declare(
    "ledger-broken",
    REFUSED,
    "the ledger's hash chain is broken",
    "compare the file with a copy or with lanes ledger --json; lanes never rewrites a row",
)
_declare(
    "required-unreadable",
    REFUSED,
    "the list of required migrations cannot be read",
    "fix the file it is read from, or [manifest] required in the configuration",
)
_declare(
    "version-mismatch",
    REFUSED,
    "a bump asked of version files that disagree (lanes integrate: main-versions-disagree)",
    "make them carry the same version on main (one commit by hand), then rerun",
)
_declare(
    "lane-bounced",
    REFUSED,
    "lanes integrate: at least one lane bounced (the others landed)",
    "each bounce's reason is in bounced: fix the branch or fragment, then lanes submit again",
    kind="outcome",
)
_declare(
    "gate-failed",
    REFUSED,
    "lanes verify: at least one check failed",
    "fix what each failing check says, then run lanes verify again",
    kind="outcome",
)
# the wave runner (lanes run)
_declare(
    "lanes-unfinished",
    REFUSED,
    "lanes run: at least one lane did not finish (its outcome: failed, timeout, keeper-lost, "
    "uncommitted, off-branch, no-work, cannot-start, submit-refused, interrupted, released, "
    "reaped, held-elsewhere, or claim-failed: its claim or [setup] failed, e.g. "
    "setup-failed, no-free-port); its work is kept",
    "read each lane's outcome and its agent.log, fix what it names, then run lanes run "
    "again: finished lanes are not run again",
    kind="outcome",
)

# -- Ctrl-C ----------------------------------------------------------------------------------
_declare(
    "interrupted",
    INTERRUPTED,
    "interrupted (Ctrl-C)",
    "run the command again; lanes is crash-safe",
    kind="outcome",
)


def lookup(code: str) -> Code:
    """The registry's entry for `code`; a code it does not declare is a bug."""
    try:
        return REGISTRY[code]
    except KeyError:
        raise RegistryError(
            f"error code {code!r} is not declared in lanes/errors.py REGISTRY"
        ) from None


def exit_code(code: str) -> int:
    """The exit code of an error code or outcome: `raise typer.Exit(exit_code("gate-failed"))`."""
    return lookup(code).exit_code


def default_hint(code: str) -> str:
    """The registry's hint for `code`: what a raise site that gives none says."""
    return lookup(code).hint


class LanesError(Exception):
    """Base error. `code` is stable and machine-readable; `hint` says what to do instead.

    The exit code is the registry's. A subclass names the exit code it stands for
    (`category`), and refuses a code declared with another one.
    """

    category: ClassVar[int | None] = None  # None: any exit code the registry gives

    def __init__(self, code: str, message: str, hint: str = "", **extra: Any) -> None:
        entry = lookup(code)
        if entry.kind != "error":
            raise RegistryError(f"{code!r} is an outcome, not an error: it cannot be raised")
        if self.category is not None and entry.exit_code != self.category:
            raise RegistryError(
                f"{type(self).__name__}({code!r}) means exit {self.category}, but the "
                f"registry declares {code!r} with exit {entry.exit_code}"
            )
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint or entry.hint
        self.extra = extra
        self.exit_code = entry.exit_code

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.hint:
            doc["hint"] = self.hint
        doc.update(self.extra)
        return doc


class OperationalError(LanesError):
    """Git failed, the disk is full, a path is in the way: exit 1."""

    category = OPERATIONAL


class BadInput(LanesError):
    """An invalid name, flag, fragment or configuration; nothing was changed: exit 2."""

    category = BAD_INPUT


class Contention(LanesError):
    """Someone else holds the lane or the integrator lock: exit 3."""

    category = CONTENTION


class Refused(LanesError):
    """A rule said no: a bounce, a contended surface, a failed gate, a broken ledger: exit 4."""

    category = REFUSED


_FULL_ERRNOS = frozenset({"ENOSPC", "EDQUOT", "EFBIG"})
_IO_HINTS = {
    "EROFS": "the filesystem that holds {path} is read-only: remount it read-write (or run "
    "lanes where it can write), then run the command again",
    "EACCES": "lanes may not use {path}: fix its permissions or owner, then run the command again",
    "EPERM": "lanes may not use {path}: fix its permissions, owner or attributes (chattr), "
    "then run the command again",
    "EIO": "the disk reported an I/O error at {path}: check the disk (dmesg), then run the "
    "command again",
    "ENOENT": "{path} vanished while lanes used it (removed by hand, or by another command): "
    "run the command again",
}


def os_error(
    exc: OSError, doing: str, path: object = "", hint: str = "", **extra: Any
) -> OperationalError:
    """The registered error for a failed filesystem call: `disk-full` when no space is left
    (ENOSPC, EDQUOT, EFBIG), else `io-failed`; the message names what lanes was doing and the
    path (the exception's own, else `path`), the hint what to do."""
    import errno as errno_mod
    import os

    name = errno_mod.errorcode.get(exc.errno or 0, str(exc.errno))
    raw = exc.filename if exc.filename is not None else path
    path = os.fsdecode(raw) if isinstance(raw, str | bytes | os.PathLike) else str(raw)
    what = exc.strerror or str(exc)
    if exc.filename is not None:
        message = f"{doing}: {what}: {path}"
        if exc.filename2 is not None:
            message += f" -> {os.fsdecode(exc.filename2)}"
    else:  # a write on an open file: the caller says where
        message = f"{doing}: {what}" + (f" ({path})" if path else "")
    where = path or "the path in the message"
    facts: dict[str, Any] = {"errno": name, **({"path": path} if path else {}), **extra}
    if name in _FULL_ERRNOS:
        if not hint:
            folder = os.path.dirname(path) or path or "."
            hint = (
                f"free space on the filesystem that holds {where} (df -h {folder}"
                + (", or your quota: quota -s" if name == "EDQUOT" else "")
                + (", or raise the file size limit: ulimit -f" if name == "EFBIG" else "")
                + "), then run the command again"
            )
        return OperationalError("disk-full", message, hint=hint, **facts)
    if not hint:
        hint = _IO_HINTS.get(name, "fix what the system reports for {path}, then run it again")
        hint = hint.format(path=where)
    return OperationalError("io-failed", message, hint=hint, **facts)


def markdown_table() -> str:
    """The registry as the table in docs/exit-codes.md (tests/test_errors.py compares them)."""
    rows = ["| code | exit | means | what to do (default hint) |", "| --- | --- | --- | --- |"]
    for entry in sorted(REGISTRY.values(), key=lambda c: (c.exit_code, c.kind, c.name)):
        name = f"`{entry.name}`" + (" (outcome)" if entry.kind == "outcome" else "")
        cells = [name, str(entry.exit_code), entry.meaning, entry.hint]
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    import sys

    sys.stdout.write(markdown_table())
