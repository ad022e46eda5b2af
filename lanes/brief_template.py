"""The one template of a lane agent's instructions, its parts, and how it is filled in.

`lanes brief` fills it in for a held lane (lanes/brief.py); docs/subagents.md holds it with
the operator's placeholders `{WAVE}`, `{LANE}`, `{AGENT}`, `{REPO}` and `{CONTENDED}` left
in (`python -m lanes.brief --doc` prints that block). Both come from the text below, so they
never drift. A `{NAME}` alone on a line is a block of lines (none when empty); any other
`{NAME}` is filled in where it stands; a `{NAME}` a mode does not fill stays as written.

`render(brief)` fills it with a lane's facts (lanes/brief.py gathers them); `doc_text()`
leaves the operator's placeholders in and says the rest in general. The rules are
numbered, and their order and wording are what agents and audits rely on: change them
here, then regenerate the block in docs/subagents.md.
"""

from __future__ import annotations

import re
import textwrap
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lanes.brief import Brief

LISTED = 20  # files named in each list of the text; the JSON holds them all
HEARTBEATS_PER_STALE = 3  # heartbeat this often within stale_after
WIDTH = 92  # where the text's generated lines wrap

FRAGMENT_COMMANDS = {
    "manifest": "lanes fragment manifest <MIGRATION_FILE_NAME> --json",
    "version": "lanes fragment version patch|minor|major --json",
    "deploy": "lanes fragment deploy <PATCH_FILE> --json",
}
COMMANDS = {
    "heartbeat": "lanes heartbeat --json",
    "submit": "lanes submit --json",
    "release": "lanes release --json",
    "env": 'eval "$(lanes env)"',
    "brief": "lanes brief",
}


def heartbeat_every(stale_after_seconds: int) -> int:
    return max(1, stale_after_seconds // HEARTBEATS_PER_STALE)


TEMPLATE = """\
You work on lane {LANE} of wave {WAVE} of the git repository at {REPO}, as agent {AGENT}.
Other agents work on other lanes of the same repository at the same time. Follow these
rules exactly; they are what keeps main linear.

{LANE_FACTS}
1. CLAIM. {CLAIM}

2. WORK ONLY IN YOUR WORKTREE. cd into {THE_WORKTREE} and stay there. Do all your edits and
   commits there, on its branch lanes/{WAVE}/{LANE}. Never work in {REPO} itself or in
   another lane's worktree; never switch branches, merge, rebase onto another lane, or push.

3. NEVER EDIT THESE FILES, not even one line: {CONTENDED}
   Ask for the change with a fragment instead, from inside your worktree:
{FRAGMENTS}
   A fragment command that prints "warnings" (a manifest entry with no file yet) still
   worked: commit the file it names before you submit.
   The integrator applies fragments once, for every lane, after you are done.

4. COMMIT your work with git in the worktree, in as many commits as you like.

5. HEARTBEAT. Run `lanes heartbeat --json` in the worktree about every {HEARTBEAT_EVERY} while
   you work. A lane with no heartbeat for {STALE_AFTER} is reaped (its work is saved, but it
   is taken from you).

6. SUBMIT when done, from the worktree:
       lanes submit --json
   Exit 0: you are done; report the JSON. Exit 4 with "error": "touches-contended-surface":
   a commit of your branch changed a file of rule 3 (listed in "files", each with the
   commits that touched it and the command to use "instead"). Every commit counts, even
   one you later reverted: the integrator lands each commit, so each must leave those files
   alone. Run, in your worktree, the commands of "restore" in order: they fold your commits
   since {MAIN} (`git reset --soft <compared_with>`) into one new commit without those files
   (put back as {MAIN} has them, or removed if your branch added them), listing your old
   commit subjects in its message. "instead" says what to do if you still want the change
   (for a version bump: `lanes fragment version ...`; "nothing: ask the operator" for
   files no fragment can change). Do not ask for a change you did not mean: an edit you
   put back needs no fragment. Then submit again.
7. If you must stop without finishing, run `lanes release --json` in the worktree: your
   uncommitted work is saved as a patch and the lane is freed.

{LACKS}
Exit codes of every lanes command: 0 done; 1 operational failure (report the message);
2 your command or input is invalid, nothing changed (fix it and retry); 3 someone else
holds it (stop, report); 4 a rule refused it (read "message" and "hint", do what they
say). Always pass --json and read the JSON document on standard output.
The refusals you may meet, by their "error":
{REFUSALS}
"""

# Rule 1, for an agent that claims the lane itself (the block to paste).
CLAIM_YOURSELF = """\
Before anything else, run in {REPO}:
       lanes claim {WAVE} {LANE} --agent {AGENT} --json
   Exit 0: the "worktree" field is your working directory. Exit 3: someone else holds
   this lane ("holder"): stop and report it; do not take another lane unless told to.
   Any other exit: stop and report the "error" and "message" fields.
   Then run `lanes brief` in the worktree: it prints these rules filled in for your lane
   (its contended files, its base, what its worktree lacks)."""

# Rule 1, for the agent of a lane already held (the brief of `lanes brief`).
CLAIMED = """\
Done: lane {LANE} of wave {WAVE} is claimed, held by {AGENT}. Do not run
   lanes claim again (it would exit 3, "claimed"). If a lanes command exits 4 with
   "error": "not-held", the lane was taken from you (released, or reaped; its work is
   saved): stop and report it; do not take another lane unless told to."""

# The fragment commands of rule 3, one per surface (the brief keeps those the repository has).
FRAGMENT_BULLETS = {
    "manifest": """\
   - a migration that must be in the boot manifest: commit the migration file, then
         lanes fragment manifest <MIGRATION_FILE_NAME> --json""",
    "version": """\
   - a version bump:
         lanes fragment version patch|minor|major --json""",
    "deploy": """\
   - a change to the deploy workflow: write a JSON Patch (RFC 6902) file OUTSIDE the
     worktree, for example /tmp/{AGENT}-deploy.yml containing
         - {op: add, path: /jobs/deploy/env/MY_FLAG, value: "on"}
     then
         lanes fragment deploy /tmp/{AGENT}-deploy.yml --json""",
}
NO_FRAGMENT = """\
   (none here: this repository has no manifest, version files or deploy workflow that
   takes fragments; for a change to a file above, ask the operator)"""

# What the worktree lacks, said in general (the block to paste) ...
LACKS_IN_GENERAL = """\
YOUR WORKTREE HOLDS ONLY WHAT IS COMMITTED. It starts from {MAIN}'s last commit: changes
   not committed in {REPO} are not in it, nor are git-ignored files (.env, a virtualenv,
   node_modules) unless the repository's [setup] copies or links them; `lanes brief` names
   what is missing. If your task needs them, say so in your report; never commit them.

"""

# ... and by name (the brief): the lines below are filled in by lanes/brief.py.
LACKS_BY_NAME = """\
YOUR WORKTREE HOLDS ONLY WHAT IS COMMITTED: {MAIN} at your base, your commits, nothing else.
{LACKS_LINES}
   If your task needs any of them, say so in your report; never commit them.

"""

# The refusals an agent meets, by error code: what to do. Their exit codes come from the
# registry (lanes/errors.py).
REFUSALS = (
    ("claimed", "someone else holds the lane: stop and report it; never fight for it"),
    (
        "not-held",
        "the lane is not yours (any more): released, or reaped after {STALE_AFTER} without a "
        "heartbeat, its work saved: stop and report it",
    ),
    (
        "touches-contended-surface",
        'a commit changed a file of rule 3: run the "restore" commands, then submit again (rule 6)',
    ),
    (
        "lane-not-open",
        "the lane is submitted: its branch is the integrator's now; stop and report it (a "
        "bounced lane comes back to you)",
    ),
    ("lane-integrated", "the lane is finished, its work is on {MAIN}: stop"),
    (
        "lane-has-merge",
        "your branch holds a merge commit: `git rebase {MAIN}` in the worktree, then submit again",
    ),
    (
        "orphan-branch",
        "your branch shares no history with {MAIN}: `git rebase --root --onto {MAIN}` in the "
        "worktree, then submit again",
    ),
    (
        "worktree-busy",
        "a rebase (or merge, cherry-pick) is unfinished in your worktree, or HEAD is off your "
        "branch: finish it (git rebase --continue) or switch back, then submit again",
    ),
    (
        "bad-fragment",
        "the fragment does not parse or apply; nothing changed: fix it and drop it again",
    ),
    (
        "no-surface",
        "the repository has no such surface: no fragment can ask for it; ask the operator",
    ),
)


# -- filling it in ----------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"^\{([A-Z_]+)\}\n|\{([A-Z_]+)\}", re.M)


def fill(text: str, values: dict[str, str]) -> str:
    """Fill the placeholders `values` names, in one pass (what is filled in is never read
    again: a path holding `{LANE}` stays as it is); a `{NAME}` alone on its line is a block,
    whose value is whole lines (or "", and the line goes)."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return values.get(name, match.group(0))

    return _PLACEHOLDER.sub(one, text)


def _finish(text: str) -> str:
    return "".join(line.rstrip() + "\n" for line in text.splitlines())


def _exit(code: str) -> int:
    from lanes.errors import exit_code

    return exit_code(code)


def _words(seconds: int) -> str:
    for unit, size in (("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}" + ("s" if n != 1 else "")
    return f"{seconds} second" + ("s" if seconds != 1 else "")


def _wrap(first: str, text: str, indent: str) -> str:
    """`text` filled to WIDTH; a `command` in backticks is never cut across lines."""
    kept = re.sub(r"`[^`]*`", lambda m: m.group(0).replace(" ", "\0"), text)
    return (
        textwrap.fill(
            kept,
            WIDTH,
            initial_indent=first,
            subsequent_indent=indent,
            break_long_words=False,
            break_on_hyphens=False,
        ).replace("\0", " ")
        + "\n"
    )


def _refusals(values: dict[str, str]) -> str:
    return "".join(
        _wrap(f"   - {code} (exit {_exit(code)}): ", fill(what, values), "     ")
        for code, what in REFUSALS
    )


def refusals(b: Brief) -> list[dict[str, Any]]:
    """The refusals of REFUSALS for the brief's JSON: error, exit code, what to do."""
    values = _common(b)
    return [
        {"error": code, "exit_code": _exit(code), "do": fill(what, values)}
        for code, what in REFUSALS
    ]


def _common(b: Brief) -> dict[str, str]:
    return {
        "WAVE": b.wave,
        "LANE": b.lane,
        "AGENT": b.agent,
        "REPO": b.main_checkout,
        "MAIN": b.main,
        "HEARTBEAT_EVERY": _words(b.heartbeat_every_seconds),
        "STALE_AFTER": _words(b.stale_after_seconds),
    }


def render(b: Brief) -> str:
    """The brief's text: the template filled in with the lane's facts."""
    values = _common(b)
    contended = "\n" + "".join(
        _wrap("     - ", f"{c.path}: {c.instead}", "       ") for c in b.contended
    )
    bullets = [fill(FRAGMENT_BULLETS[kind], values) for kind in b.fragments]
    values |= {
        "THE_WORKTREE": b.worktree,
        "CONTENDED": contended.rstrip("\n"),
        "LANE_FACTS": _facts(b),
        "CLAIM": fill(CLAIMED, values),
        "FRAGMENTS": "\n".join(bullets or [NO_FRAGMENT]) + "\n",
        "LACKS": fill(LACKS_BY_NAME, {"MAIN": b.main, "LACKS_LINES": _lacks(b)}),
        "REFUSALS": _refusals(values),
    }
    return _finish(fill(TEMPLATE, values))


def _facts(b: Brief) -> str:
    rows = [
        (
            "worktree",
            b.worktree + ("" if b.worktree_exists else " (NOT ON DISK: stop and report it)"),
        ),
        ("branch", b.branch),
        ("base", f"{b.base} (where your branch leaves {b.main})"),
        ("main checkout", f"{b.main_checkout} (not yours: never edit it)"),
        ("state", _state(b)),
    ]
    if b.ports:
        also = f"; yours: {b.ports[0]}-{b.ports[-1]}, LANES_PORTS" if len(b.ports) > 1 else ""
        rows.append(("port", f"{b.ports[0]} (LANES_PORT{also})"))
    else:
        rows.append(("port", "none reserved: a server you start picks a free port (port 0)"))
    rows.append(("environment", f"`{COMMANDS['env']}` in the worktree sets " + ", ".join(b.env)))
    lines = ["YOUR LANE (filled in by lanes brief):\n"]
    lines += [_wrap(f"   {name:<14} ", value, " " * 18) for name, value in rows]
    return "".join(lines) + "\n"


def _state(b: Brief) -> str:
    if b.state == "submitted":
        return "submitted: the integrator has it; do not commit to it unless it bounces"
    if b.state == "bounced":
        why = f" ({b.bounce_reason})" if b.bounce_reason else ""
        return (
            f"bounced{why}: bring your branch onto {b.main} (git rebase {b.main}; on a "
            "conflict fix the files, git add them, git rebase --continue), commit and submit "
            "again"
        )
    return b.state


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:LISTED])
    return shown + (f", and {len(items) - LISTED} more" if len(items) > LISTED else "")


def _lacks(b: Brief) -> str:
    out: list[str] = []
    changes = b.main_uncommitted
    if changes:
        out.append(
            _wrap(
                "   - ",
                f"the uncommitted changes of the main checkout {b.main_checkout} are not in "
                f"it ({len(changes)} file(s), as git status shows them):",
                "     ",
            )
        )
        out += [f"       {c.status} {c.path}\n" for c in changes[:LISTED]]
        if len(changes) > LISTED:
            out.append(f"       ... and {len(changes) - LISTED} more\n")
    else:
        out.append(
            _wrap(
                "   - ", "the main checkout has no uncommitted changes: none is missing.", "     "
            )
        )
    s = b.setup
    gave = [
        f"{verb} {_listed(items)}"
        for verb, items in (("copied", s["copy"]), ("linked", s["link"]), ("ran", s["commands"]))
        if items
    ]
    if s["worktreeinclude"]:
        gave.append("copied what .worktreeinclude names")
    if b.ignored_missing:
        text = (
            f"git-ignored files of the main checkout that are not in it "
            f"({len(b.ignored_missing)}): {_listed(b.ignored_missing)}"
        )
    else:
        text = "every git-ignored file of the main checkout is in it too (the inbox aside)"
    if gave:
        text += "; [setup] " + "; ".join(gave)
    out.append(_wrap("   - ", text, "     "))
    patches = [p for p in b.saved if p.endswith(".patch")]
    if b.saved:
        text = (
            "the work saved when this lane was given up before is not in it: "
            + ", ".join(b.saved[:3])
            + (f"; to take it back: git apply {patches[0]}" if patches else "")
        )
        out.append(_wrap("   - ", text, "     "))
    if b.sparse:
        out.append(
            _wrap(
                "   - ",
                f"only these folders are checked out (sparse, cone mode): {_listed(b.sparse)}",
                "     ",
            )
        )
    return "".join(out)


# -- the block of docs/subagents.md ------------------------------------------------------


def doc_text() -> str:
    """The template with the operator's placeholders ({WAVE}, {LANE}, {AGENT}, {REPO},
    {CONTENDED}) left in, and the rest said in general."""
    from lanes.config import Settings, parse_duration

    stale = parse_duration(Settings.model_fields["stale_after"].default)
    values = {
        "MAIN": "main",
        "HEARTBEAT_EVERY": _words(heartbeat_every(stale)),
        "STALE_AFTER": _words(stale),
    }
    values |= {
        "THE_WORKTREE": "the worktree",
        "LANE_FACTS": "",
        "CLAIM": CLAIM_YOURSELF,
        "FRAGMENTS": "\n".join(FRAGMENT_BULLETS.values()) + "\n",
        "LACKS": fill(LACKS_IN_GENERAL, values),
        "REFUSALS": _refusals(values),
    }
    return _finish(fill(TEMPLATE, values))


def doc_block() -> str:
    """What docs/subagents.md holds between its brief markers."""
    return "```text\n" + doc_text() + "```\n"
