"""Coordination through a git remote (`remote = "origin"`): the server does every
compare-and-swap (docs/remote.md).

- claim: `refs/lanes/<wave>/claims/<lane>`, pushed with `--force-with-lease=<ref>:` (must
  not exist) at a commit whose tree holds `claim.json` (and, once submitted, `fragments/`)
  and whose message names its claimant (identical commits would all "win");
- heartbeat, submit, release, reap: the ref moved or deleted with a lease pinned to the
  exact commit read;
- ledger: `refs/lanes/<wave>/ledger`, one event a commit whose message is the event's
  Markdown row (its chain cell included), appended with a lease on the tip read and
  retried when another append won; rendered into `<inbox>/<wave>/AGENT_LEDGER.md`;
- integrator: `refs/lanes/<wave>/integrator`, created only if absent, taken over only
  when older than `stale_after`; landing is one atomic push of main, the ledger and the
  claims, each with its lease.

Nothing is read from a cache to decide: each decision reads the ref on the server
(`ls-remote`), fetches the objects by id (no local ref, no FETCH_HEAD is written, so many
commands can run in one clone at once), and pushes with a lease on what it read.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lanes import git
from lanes.coord import Holder, Landed, PendingEvent
from lanes.errors import BadInput, Contention, OperationalError, Refused
from lanes.failpoint import failpoint
from lanes.ledger import Event

if TYPE_CHECKING:
    from lanes.config import Config
    from lanes.ledger import VerifyReport

RECORD = "claim.json"
FRAGMENTS = "fragments"
CLOCK_SKEW = 300.0  # seconds a commit time may be ahead of this machine's clock
SUBMITTED = "submitted.json"  # in a submitted claim's tree: {"head": the commit handed over}
APPEND_PATIENCE = 120.0  # seconds an append keeps retrying lost leases before giving up
TIMEOUT_ENV = "LANES_REMOTE_TIMEOUT"  # seconds one git call to the remote may take
TIMEOUT = 60.0


def _timeout() -> float:
    try:
        return max(0.5, float(os.environ.get(TIMEOUT_ENV, "") or TIMEOUT))
    except ValueError:
        return TIMEOUT


def _talk(repo: Path, args: Sequence[str]) -> git.GitResult:
    """One git command that talks to the remote, bounded in wall-clock time.

    git has no connect timeout (a `git://` connect to a host that drops packets blocks for
    about two minutes; `http.lowSpeedTime` bounds only a stalled transfer): after
    LANES_REMOTE_TIMEOUT seconds (60 unless set) the command is killed with its process
    group (git's helpers too) and answers 124, "timed out", as a remote that cannot be
    reached. (The one place besides lanes/git.py that starts git: lanes/git.py's runner has
    no timeout yet.)"""
    limit = _timeout()
    stall = ["-c", "http.lowSpeedLimit=1000", "-c", f"http.lowSpeedTime={max(1, int(limit))}"]
    try:
        proc = subprocess.Popen(
            ["git", *stall, *args],
            cwd=repo,
            env=git.clean_env({"GIT_ASKPASS": "true", "SSH_ASKPASS": "true"}),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        raise OperationalError("git-failed", f"cannot run git: {exc}", hint="install git") from exc
    try:
        out, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        said = f"no answer within {limit:g}s ({TIMEOUT_ENV}), git was stopped"
        return git.GitResult(124, "", said)
    except BaseException:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        raise
    return git.GitResult(
        proc.returncode,
        out.decode("utf-8", "surrogateescape"),
        err.decode("utf-8", "replace").strip(),
    )


_QUIET = ["-c", "protocol.version=2", "-c", "gc.auto=0", "-c", "maintenance.auto=false"]


def _ls_remote(
    repo: Path, remote: str, patterns: Sequence[str]
) -> tuple[dict[str, str] | None, str]:
    """As git.ls_remote, bounded."""
    res = _talk(repo, [*_QUIET, "ls-remote", "--", remote, *patterns])
    if res.returncode != 0:
        return None, res.stderr.strip() or res.stdout.strip()
    found: dict[str, str] = {}
    for line in res.stdout.splitlines():
        sha, _, ref = line.partition("\t")
        if ref and not ref.endswith("^{}"):
            found[ref] = sha
    return found, ""


def _fetch_objects(repo: Path, remote: str, shas: Sequence[str]) -> git.GitResult:
    """As git.fetch_objects, bounded."""
    args = [*_QUIET, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--", remote]
    return _talk(repo, [*args, *shas])


def _push_atomic(
    repo: Path, remote: str, updates: Sequence[tuple[str, str, str | None]]
) -> git.GitResult:
    """As git.push_atomic, bounded."""
    args = [*_QUIET, "push", "--atomic", "--porcelain", "--no-verify", "--quiet"]
    for _, dst, old in updates:
        if old is not None:
            args.append(f"--force-with-lease={dst}:{old}")
    args += [
        "--",
        remote,
        *(f"{'+' if old is None else ''}{src}:{dst}" for src, dst, old in updates),
    ]
    return _talk(repo, args)


TRANSPORT_TRIES = 4  # a connection reset is tried again; a timeout is not


def _transient(said: str) -> bool:
    """A transport error worth one more try at once: the server reset the connection (git
    daemon's listen backlog is 5) or hung up early; never a timeout or a refusal."""
    return (
        any(
            word in said
            for word in (
                "Connection reset",
                "read error",
                "the remote end hung up unexpectedly",
                "early EOF",
            )
        )
        and "no answer within" not in said
    )


# What the server says when another push changed the ref first, or held its lock at that
# instant: a lost compare-and-swap, answered by reading again (never by forcing).
_RACED = (
    "stale info",
    "fetch first",
    "atomic transaction failed",
    "failed to update ref",
    "failed to lock",
    "cannot lock ref",
    "incorrect old value",
)


class _Push:
    """git's answer to one atomic push, ref by ref."""

    def __init__(self, result: git.GitResult, retried: bool = False) -> None:
        self.ok = result.returncode == 0
        self.timed_out = result.returncode == 124
        self.retried = retried  # an earlier try failed in transport: it may have landed
        self.status: dict[str, str] = {}  # ref -> "ok", "stale", or git's reason
        for line in result.stdout.splitlines():
            parts = line.split("\t")
            if len(parts) >= 3 and ":" in parts[1]:
                ref = parts[1].split(":", 1)[1]
                flag, summary = parts[0], parts[2]
                self.status[ref] = (
                    "ok"
                    if flag in (" ", "+", "-", "*", "=")
                    else "stale"
                    if any(word in summary for word in _RACED)
                    else "atomic"
                    if "atomic push failed" in summary
                    else summary
                )
        self.said = (result.stderr or result.stdout).strip()

    def stale(self, ref: str) -> bool:
        return self.status.get(ref) == "stale"

    def refused(self) -> str:
        """A reason the server refused other than a lost lease (a hook, permissions)."""
        return "; ".join(
            f"{ref}: {why}"
            for ref, why in self.status.items()
            if why not in ("ok", "stale", "atomic")
        )


class RemoteCoord:
    kind = "remote"

    def __init__(self, cfg: Config, remote: str) -> None:
        url = None
        if remote.strip() and not remote.startswith("-") and not any(c.isspace() for c in remote):
            url = git.remote_url(cfg.main_checkout, remote)
        if url is None:
            raise BadInput(
                "bad-config",
                f"remote = {remote!r}: this repository has no git remote of that name",
                hint=f'add it (git remote add {remote} URL), or set remote = "" to coordinate '
                "on this machine only",
            )
        self.cfg = cfg
        self.remote = remote
        self.url = url
        self.where = f"remote {remote} ({url})"
        self.repo = cfg.main_checkout
        self._leases: dict[str, str] = {}  # wave -> the integrator's lease commit this holds
        self._lease_lock = threading.Lock()

    # -- talking to the remote -----------------------------------------------------------
    def _failed(self, doing: str, said: str, **extra: Any) -> OperationalError:
        return OperationalError(
            "remote-failed",
            f"{doing}: the {self.where} could not be reached or refused: "
            f"{said.strip() or 'git printed nothing'}",
            hint=f"check that git ls-remote {self.remote} works, then run the command again",
            remote=self.remote,
            **extra,
        )

    def _ls(self, patterns: Sequence[str], doing: str) -> dict[str, str]:
        for attempt in range(TRANSPORT_TRIES):
            found, said = _ls_remote(self.repo, self.remote, patterns)
            if found is not None:
                return found
            if not _transient(said) or attempt == TRANSPORT_TRIES - 1:
                break
            time.sleep(random.uniform(0.02, 0.1) * (attempt + 1))
        raise self._failed(doing, said)

    def _fetch(self, shas: Sequence[str], doing: str) -> None:
        said = ""
        for attempt in range(4):
            missing = git.missing_objects(self.repo, list(dict.fromkeys(shas)))
            if not missing:
                return
            res = _fetch_objects(self.repo, self.remote, missing)
            if res.returncode == 0:
                return
            # Fetches racing in one clone can trip over each other's packs ("did not send
            # all necessary objects"): read again, a few times, before calling it a failure.
            said = res.stderr
            time.sleep(0.05 * (attempt + 1))
        raise self._failed(doing, said)

    def _push(self, updates: Sequence[tuple[str, str, str | None]], doing: str) -> _Push:
        """Push; a lost lease is an answer, anything else the server or the network says
        is remote-failed."""
        retried = False
        for attempt in range(TRANSPORT_TRIES):
            pushed = _Push(_push_atomic(self.repo, self.remote, updates), retried)
            if pushed.ok or (pushed.status and not pushed.refused()):
                return pushed  # done, or a lost lease: the caller reads again
            if pushed.refused() or not _transient(pushed.said) or attempt == TRANSPORT_TRIES - 1:
                break
            # A connection reset before any answer (git daemon under a burst): the push may
            # or may not have landed. Pushing again is safe, every update being pinned: a
            # lease lost to our own first try is told apart by the callers (`retried`).
            retried = True
            time.sleep(random.uniform(0.02, 0.1) * (attempt + 1))
        raise self._failed(doing, pushed.refused() or pushed.said)

    def _commit(self, files: dict[str, bytes] | str, parents: Sequence[str], message: str) -> str:
        tree = files if isinstance(files, str) else git.write_tree_of(self.repo, files)
        return git.commit_tree(self.repo, tree, parents, message)

    @staticmethod
    def _ref(wave: str, *parts: str) -> str:
        return "/".join(("refs/lanes", wave, *parts))

    # -- claims ------------------------------------------------------------------------
    def _claim_message(self, what: str, wave: str, lane: str, agent: str) -> str:
        return (
            f"lanes {what} {wave}/{lane}: {agent}\n\nagent: {agent}\nhost: {socket.gethostname()}\n"
            f"pid: {os.getpid()}\nnonce: {uuid.uuid4().hex}\n"
        )

    def publish_claim(
        self, wave: str, lane: str, record: dict[str, Any], prepared: Path
    ) -> tuple[bool, Holder]:
        ref = self._ref(wave, "claims", lane)
        data = (json.dumps(record, indent=2) + "\n").encode()
        commit = self._commit(
            {RECORD: data}, [], self._claim_message("claim", wave, lane, record["agent"])
        )
        for _ in range(5):
            failpoint("remote-claim-push")
            pushed = self._push([(commit, ref, "")], f"claiming {wave}/{lane}")
            if pushed.ok:
                failpoint("remote-claim-pushed")
                self._settle_local(wave, lane, prepared)
                return True, Holder(record["agent"], record, commit, time.time())
            failpoint("remote-claim-lost")
            holder = self.holder(wave, lane)
            if holder is None:
                continue  # released between our push and our read: try again
            if holder.token == commit:  # our own try landed before its answer was lost
                self._settle_local(wave, lane, prepared)
                return True, holder
            if self._ours_abandoned(holder, record, wave, lane):
                # A claim of this agent on this machine whose command was killed between
                # its remote step and its local one: this claim finishes it.
                (prepared / RECORD).write_text(json.dumps(holder.record, indent=2) + "\n")
                self._settle_local(wave, lane, prepared)
                return True, holder
            return False, holder
        return False, Holder("unknown", None)

    def _ours_abandoned(self, holder: Holder, record: dict[str, Any], wave: str, lane: str) -> bool:
        theirs = holder.record or {}
        if (theirs.get("agent"), theirs.get("host")) != (record["agent"], record["host"]):
            return False
        if self.cfg.claim_dir(wave, lane).exists() or holder.submitted:
            return False
        pid = theirs.get("pid")
        return isinstance(pid, int) and pid > 0 and not _alive(pid)

    def _settle_local(self, wave: str, lane: str, prepared: Path) -> None:
        """The remote says the lane is ours: its local working area becomes `prepared`; a
        leftover one (of a claim the remote no longer has) is archived, never lost."""
        from lanes.coord import local

        target = self.cfg.claim_dir(wave, lane)
        if not local.publish(prepared, target):
            local.archive(self.cfg, wave, lane, "superseded")
            os.rename(prepared, target)

    def _read_claims(self, refs: dict[str, str], doing: str) -> dict[str, Holder]:
        """{ref: holder} of claim commits read from the remote."""
        if not refs:
            return {}
        shas = list(refs.values())
        self._fetch(shas, doing)
        blobs = git.blobs_at(self.repo, [f"{sha}:{RECORD}" for sha in shas])
        times = git.commit_times(self.repo, shas)
        found = {}
        for (ref, sha), blob in zip(refs.items(), blobs, strict=True):
            record: dict[str, Any] | None = None
            try:
                raw = json.loads(blob or b"")
                record = raw if isinstance(raw, dict) else None
            except ValueError:
                record = None
            agent = str(record.get("agent", "")) if record else ""
            files = git.list_files(self.repo, sha, FRAGMENTS)
            found[ref] = Holder(agent, record, sha, float(times.get(sha, 0)), files is not None)
        return found

    def holder(self, wave: str, lane: str) -> Holder | None:
        ref = self._ref(wave, "claims", lane)
        refs = self._ls([ref], f"reading the holder of {wave}/{lane}")
        return self._read_claims(refs, f"reading the holder of {wave}/{lane}").get(ref)

    def holders(self, wave: str) -> dict[str, Holder]:
        prefix = self._ref(wave, "claims", "")
        refs = self._ls([prefix + "*"], f"reading the claims of wave {wave}")
        refs = {
            r: s for r, s in refs.items() if r.startswith(prefix) and "/" not in r[len(prefix) :]
        }
        read = self._read_claims(refs, f"reading the claims of wave {wave}")
        return {ref[len(prefix) :]: h for ref, h in read.items()}

    def _move(self, wave: str, lane: str, expect: Holder, what: str, doing: str) -> Holder:
        """Move the claim ref to a child commit (same tree) pinned to `expect`; a lease lost
        to the same claim moved by its own holder (two heartbeats) is retried."""
        ref = self._ref(wave, "claims", lane)
        for _ in range(5):
            message = self._claim_message(what, wave, lane, expect.agent)
            commit = self._commit(f"{expect.token}^{{tree}}", [expect.token], message)
            if self._push([(commit, ref, expect.token)], doing).ok:
                return Holder(expect.agent, expect.record, commit, time.time(), expect.submitted)
            now = self.holder(wave, lane)
            if now is not None and now.token == commit:
                return now  # our own try landed before its answer was lost
            if now is None or now.record != expect.record:
                raise _not_held(wave, lane, self.where)
            expect = now
        raise self._failed(doing, "the claim kept moving under lanes")

    def heartbeat(self, wave: str, lane: str, expect: Holder) -> Holder:
        return self._move(wave, lane, expect, "heartbeat", f"heartbeat of {wave}/{lane}")

    def retire(
        self,
        wave: str,
        lane: str,
        expect: Holder,
        why: str,
        record: Callable[[Path], PendingEvent] | None = None,
    ) -> Path:
        """The claim ref deleted, pinned to `expect`, and the row `record` makes appended to
        the ledger in the same atomic push; then the local claim directory archived where
        the row says. The place is promised in the claim directory before the push: a kill
        between the push and the rename leaves the directory for the next command on the
        lane, which archives it there (lanes/coord/local.py, `archive`)."""
        from lanes.coord import local

        ref, ledger_ref = self._ref(wave, "claims", lane), self._ref(wave, "ledger")
        doing = f"{why} {wave}/{lane}"
        dest = local.archive_path(self.cfg, wave, lane, why)
        event = record(dest) if record is not None else None
        if event is not None and self.cfg.claim_dir(wave, lane).is_dir():
            local.promise(self.cfg, wave, lane, dest)
        log, tries = self.ledger(wave), 0
        deadline = time.monotonic() + APPEND_PATIENCE
        sent: list[str] = []  # rows pushed whose answer was lost in transport

        def landed(tip: str) -> bool:
            return any(tip and git.is_ancestor(self.repo, sha, tip) for sha in sent)

        try:
            while True:
                updates: list[tuple[str, str, str | None]] = [("", ref, expect.token)]
                if event is not None:
                    tip = self._ls([ledger_ref], doing).get(ledger_ref, "")
                    if tip:
                        self._fetch([tip], doing)
                    if landed(tip):
                        break  # our own try landed before its answer was lost
                    row, _ = log.build(tip, [event])
                    updates.append((row, ledger_ref, tip))
                failpoint(f"remote-{why}-push")
                pushed = self._push(updates, doing)
                if pushed.ok:
                    break
                if event is not None and pushed.retried:
                    sent.append(row)
                if event is not None and not pushed.stale(ref):
                    # Only the ledger moved (another append won): the row again, on its tip.
                    if time.monotonic() > deadline:
                        raise self._failed(doing, "the ledger kept moving under lanes")
                    time.sleep(random.uniform(0, 0.05))
                    continue
                now = self.holder(wave, lane)
                if now is None and pushed.retried:
                    if event is None:
                        break  # our own try deleted it before its answer was lost
                    tip = self._ls([ledger_ref], doing).get(ledger_ref, "")
                    if tip:
                        self._fetch([tip], doing)
                    if landed(tip):
                        break
                if now is None or now.record != expect.record:
                    raise _not_held(wave, lane, self.where)
                # The same commit: the claim did not move, the push failed for the ledger's
                # sake (refused under the server's ref lock); another: it heartbeated.
                if now.token != expect.token and why == "reaped":
                    raise Contention(
                        "claimed",
                        f"lane {wave}/{lane} heartbeated since it was judged stale: not reaped",
                        hint="nothing to do: its holder is alive",
                        holder=now.agent,
                        wave=wave,
                        lane=lane,
                    )
                expect, tries = now, tries + 1
                if tries == 5:
                    raise self._failed(doing, "the claim kept moving under lanes")
        except (Contention, Refused):
            with suppress(OSError):  # not retired: no promise stands
                (self.cfg.claim_dir(wave, lane) / local.RETIRING).unlink()
            raise
        failpoint(f"remote-{why}-pushed")
        if self.cfg.claim_dir(wave, lane).exists():
            return local.archive(self.cfg, wave, lane, why)
        return self.cfg.claim_dir(wave, lane)

    def undo_claim(self, wave: str, lane: str, ours: Holder) -> None:
        self.retire(wave, lane, ours, "undone")

    def submit(
        self, wave: str, lane: str, expect: Holder, branch: str, fragments: dict[str, bytes]
    ) -> Holder:
        ref = self._ref(wave, "claims", lane)
        head = f"refs/heads/{branch}"
        tip = git.rev_parse(self.repo, head)
        if tip is None:
            raise self._failed(f"submitting {wave}/{lane}", f"no branch {branch} here")
        doing = f"submitting {wave}/{lane}"
        for _ in range(5):
            there = self._ls([head], doing).get(head, "")
            files = {RECORD: (json.dumps(expect.record, indent=2) + "\n").encode()}
            files.update({f"{FRAGMENTS}/{name}": data for name, data in fragments.items()})
            if not fragments:
                files[f"{FRAGMENTS}/.none"] = b""
            files[SUBMITTED] = (json.dumps({"head": tip}) + "\n").encode()
            message = self._claim_message("submit", wave, lane, expect.agent) + f"head: {tip}\n"
            commit = self._commit(files, [expect.token], message)
            failpoint("remote-submit-push")
            pushed = self._push([(tip, head, there), (commit, ref, expect.token)], doing)
            if pushed.ok:
                failpoint("remote-submit-pushed")
                return Holder(expect.agent, expect.record, commit, time.time(), True, fragments)
            if pushed.stale(ref):
                now = self.holder(wave, lane)
                if now is not None and now.token == commit:
                    return now  # our own try landed before its answer was lost
                if now is None or now.record != expect.record:
                    raise _not_held(wave, lane, self.where)
                expect = now
        raise self._failed(doing, "the claim or the branch kept moving under lanes")

    def waves(self) -> list[str]:
        refs = self._ls(["refs/lanes/*"], "listing the waves")
        return sorted({r.split("/")[2] for r in refs if r.count("/") >= 3})

    # -- the ledger --------------------------------------------------------------------
    def ledger(self, wave: str) -> RemoteLedger:
        return RemoteLedger(self, wave)

    # -- the integrator ----------------------------------------------------------------
    def fetch_main(self) -> str | None:
        main = f"refs/heads/{self.cfg.main}"
        doing = f"reading {self.cfg.main} on the {self.where}"
        tip = self._ls([main], doing).get(main, "")
        if not tip:
            raise BadInput(
                "no-main",
                f"the {self.where} has no branch {self.cfg.main!r} to integrate onto",
                hint=f"push it first: git push {self.remote} {self.cfg.main}",
            )
        self._fetch([tip], doing)
        return tip

    def stage_wave(self, wave: str) -> None:
        """The claims' lane branches fetched (by id: no local ref), and the fragments each
        claim carries written under `_staged(wave)`, replaced whole in one rename. A name
        that is not one lanes writes is staged under a name the plan refuses, so the lane
        bounces (`bad-fragment`) instead of a file landing outside the folder."""
        import shutil

        from lanes import fragments

        doing = f"fetching wave {wave} for the integration pass"
        held = self.holders(wave)
        prefix = f"refs/heads/lanes/{wave}/"
        tips = self._ls([prefix + "*"], doing)
        wanted = [sha for ref, sha in tips.items() if ref[len(prefix) :] in held]
        if wanted:
            self._fetch(wanted, doing)
        root = self._staged(wave)
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = root.with_name(f".{root.name}.{uuid.uuid4().hex}")
        for lane, h in held.items():
            names = [n for n in git.list_files(self.repo, h.token, FRAGMENTS) or [] if n != ".none"]
            blobs = git.blobs_at(self.repo, [f"{h.token}:{FRAGMENTS}/{n}" for n in names])
            folder = tmp / lane / FRAGMENTS
            folder.mkdir(parents=True)
            for n, (name, blob) in enumerate(zip(names, blobs, strict=True)):
                try:
                    fragments.check_name(name)
                except BadInput:
                    name = f"not-a-fragment-name-{n}"
                (folder / name).write_bytes(blob or b"")
            head = _submitted_head(git.blobs_at(self.repo, [f"{h.token}:{SUBMITTED}"])[0])
            if head:
                (tmp / lane / SUBMITTED).write_text(head, encoding="utf-8")
        old = root.with_name(f".{root.name}.old-{uuid.uuid4().hex}")
        if root.exists():
            os.rename(root, old)
        tmp.mkdir(exist_ok=True)
        os.rename(tmp, root)
        shutil.rmtree(old, ignore_errors=True)

    def _staged(self, wave: str) -> Path:
        return self.cfg.state_dir / "remote" / wave

    def submitted_heads(self, wave: str) -> dict[str, str] | None:
        """What each claim on the remote says was submitted (staged by `stage_wave`): a
        ledger row alone, which anyone who can push the ledger can write, is not enough."""
        found = {}
        for lane_dir in self._staged(wave).iterdir() if self._staged(wave).is_dir() else ():
            with suppress(OSError):
                found[lane_dir.name] = (lane_dir / SUBMITTED).read_text(encoding="utf-8")
        return found

    def fragment_dir(self, wave: str, lane: str) -> Path:
        return self._staged(wave) / lane / FRAGMENTS

    def integrator_lease(self, wave: str, owner: str) -> AbstractContextManager[None]:
        return self._lease(wave, owner)

    @contextmanager
    def _lease(self, wave: str, owner: str) -> Iterator[None]:
        ref = self._ref(wave, "integrator")
        doing = f"taking the integrator's lease of wave {wave}"
        who = owner or f"pid {os.getpid()} on {socket.gethostname()}"
        message = f"lanes integrator {wave}: {who}\n\nhost: {socket.gethostname()}\npid: {os.getpid()}\nnonce: {uuid.uuid4().hex}\n"
        commit = self._commit({}, [], message)
        pushed = self._push([(commit, ref, "")], doing)
        if not pushed.ok:
            there = self._ls([ref], doing).get(ref)
            if there is None:  # released between: one more try
                pushed = self._push([(commit, ref, "")], doing)
            else:
                self._fetch([there], doing)
                _, when, said = git.commit_info(self.repo, there)
                # Taken over when stale, or at once when its pass was killed on this machine.
                # A lease dated ahead of this clock by more than CLOCK_SKEW is no lease:
                # it would never go stale.
                age = time.time() - when
                if age > self.cfg.stale_after_seconds or age < -CLOCK_SKEW or _dead_here(said):
                    pushed = self._push([(commit, ref, there)], doing)
                if not pushed.ok:
                    holder = said.splitlines()[0].split(": ", 1)[-1] if said else "unknown"
                    raise Contention(
                        "integrator-running",
                        f"another integration pass of wave {wave} holds the lease on the "
                        f"{self.where} ({holder})",
                        hint="wait for it to finish (lanes ledger WAVE --follow shows it), "
                        "then run again",
                        owner=holder,
                    )
        self._leases[wave] = commit
        stop = threading.Event()
        renewer = threading.Thread(
            target=self._renew, args=(wave, ref, stop), name="lanes-lease", daemon=True
        )
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join()
            with self._lease_lock:
                held = self._leases.pop(wave, commit)
            # Unreachable now: the lease goes stale after stale_after, and is taken over.
            with suppress(OperationalError):
                self._push([("", ref, held)], f"releasing the integrator's lease of {wave}")

    def _renew(self, wave: str, ref: str, stop: threading.Event) -> None:
        """Keep a long pass's lease fresh: every stale_after / 3, the lease ref moves to a
        child commit, pinned to the one held. A renewal that finds the lease taken over
        stops; the landing push, pinned to the lease too, then changes nothing."""
        every = max(1.0, self.cfg.stale_after_seconds / 3)
        while not stop.wait(every):
            with self._lease_lock:
                held = self._leases.get(wave)
                if not held:
                    return
                fresh = self._commit(
                    {},
                    [held],
                    f"lanes integrator {wave}: renewed\n\nhost: {socket.gethostname()}\npid: {os.getpid()}\n",
                )
                try:
                    pushed = self._push(
                        [(fresh, ref, held)], f"renewing the integrator's lease of {wave}"
                    )
                except OperationalError:
                    continue  # cut off for now: try again at the next beat
                if not pushed.ok:
                    self._leases[wave] = ""  # lost: the landing will be refused
                    return
                self._leases[wave] = fresh

    def land(
        self,
        wave: str,
        new: str,
        old: str,
        events: Sequence[PendingEvent],
        lanes: Sequence[str] = (),
    ) -> Landed:
        main = f"refs/heads/{self.cfg.main}"
        ledger_ref = self._ref(wave, "ledger")
        claim_refs = [self._ref(wave, "claims", lane) for lane in lanes]
        doing = f"landing wave {wave} on {self.cfg.main}"
        log = self.ledger(wave)
        deadline = time.monotonic() + APPEND_PATIENCE
        while True:
            refs = self._ls([main, ledger_ref, *claim_refs], doing)
            if refs.get(main, "") != old:
                return Landed(False, refs.get(main, ""), f"{self.cfg.main} is not at {old[:12]}")
            tip = refs.get(ledger_ref, "")
            self._fetch([s for s in (tip, *(refs.get(r, "") for r in claim_refs)) if s], doing)
            chain_tip, made = log.build(tip, events)
            updates: list[tuple[str, str, str | None]] = [(new, main, old)]
            if made:
                updates.append((chain_tip, ledger_ref, tip))
            for ref in claim_refs:
                sha = refs.get(ref)
                if sha:
                    message = f"lanes integrated {ref.rsplit('/', 1)[-1]} into {new}\n"
                    updates.append((self._commit(f"{sha}^{{tree}}", [sha], message), ref, sha))
            lease_ref = self._ref(wave, "integrator")
            with self._lease_lock:  # pinned: a pass whose lease was taken over cannot land
                held = self._leases.get(wave)
                if held == "":
                    raise self._lease_lost(wave)
                if held is not None:
                    fresh = self._commit(
                        {},
                        [held],
                        f"lanes integrator {wave}: landing {new}\n\nhost: {socket.gethostname()}\npid: {os.getpid()}\n",
                    )
                    updates.append((fresh, lease_ref, held))
            failpoint("remote-land-push")
            pushed = self._push(updates, doing)
            if pushed.ok:
                if held is not None:
                    with self._lease_lock:
                        self._leases[wave] = fresh
                failpoint("remote-landed")
                return Landed(True, new, "", made)
            if pushed.stale(main) or (held is not None and pushed.stale(lease_ref)):
                # One ref refused makes git call every ref of an atomic push failed: read
                # what the server holds to know which lease, if any, was really lost.
                now = self._ls([main, lease_ref, ledger_ref], doing)
                found = now.get(main, "")
                if found == new and pushed.retried:  # our own try landed, answer lost
                    return Landed(True, new, "", made)
                if held is not None and now.get(lease_ref, "") != held:
                    raise self._lease_lost(wave)
                if found != old:
                    return Landed(False, found, f"{self.cfg.main} moved on the {self.where}")
                if now.get(ledger_ref, "") == tip:  # nothing moved, yet the server said no
                    raise self._failed(doing, pushed.said)
            if time.monotonic() > deadline:
                raise self._failed(doing, "the ledger kept moving under lanes")
            time.sleep(random.uniform(0, 0.05))

    def _lease_lost(self, wave: str) -> Contention:
        return Contention(
            "integrator-running",
            f"this pass's lease of wave {wave} on the {self.where} was taken over by another "
            "pass; nothing changed: main, the ledger and the claims are as they were",
            hint="see lanes ledger WAVE for the other pass; run again once it is done",
        )


def _dead_here(message: str) -> bool:
    """A lease or claim message naming this host and a process that no longer runs here."""
    fields = dict(line.split(": ", 1) for line in message.splitlines() if ": " in line)
    pid = fields.get("pid", "")
    if fields.get("host") != socket.gethostname() or not pid.isdigit() or int(pid) <= 0:
        return False
    return not _alive(int(pid))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _submitted_head(blob: bytes | None) -> str:
    try:
        doc = json.loads(blob or b"")
    except ValueError:
        return ""
    head = doc.get("head") if isinstance(doc, dict) else None
    return head if isinstance(head, str) and len(head) in (40, 64) and head.isalnum() else ""


def _not_held(wave: str, lane: str, where: str) -> Refused:
    return Refused(
        "not-held",
        f"lane {wave}/{lane} is not held as this machine read it: the claim on the {where} "
        "was released, reaped or claimed again since",
        hint=f"see lanes status {wave}; claim it again with: lanes claim {wave} {lane} --agent ID",
    )


class RemoteLedger:
    """One wave's ledger as a chain of commits on the remote, rendered into the inbox."""

    def __init__(self, coord: RemoteCoord, wave: str) -> None:
        self.coord = coord
        self.wave = wave
        self.ref = coord._ref(wave, "ledger")
        self.path = coord.cfg.ledger_path(wave)
        self.anchor_path = coord.cfg.state_dir / "ledger" / f"{wave}.remote-head"

    def _row(self, message: str) -> Event | None:
        from lanes.ledger import _event_from_row

        lines = [line for line in message.splitlines() if line.startswith("| ")]
        return _event_from_row(lines[0], 0) if len(lines) == 1 else None

    def build(self, tip: str, pending: Sequence[PendingEvent]) -> tuple[str, list[Event]]:
        """Commits for `pending` chained on `tip` (objects present), not pushed yet."""
        from lanes.ledger import _body, _details_cell, _link, _now, genesis

        if tip:
            _, _, message = git.commit_info(self.coord.repo, tip)
            last = self._row(message)
            if last is None:
                raise OperationalError(
                    "git-failed",
                    f"the ledger of wave {self.wave} on the {self.coord.where} ends in a commit "
                    f"{tip[:12]} that is not a ledger row",
                    hint=f"run lanes ledger verify {self.wave}",
                )
            seq, chain = last.seq, last.chain
        else:
            seq, chain = 0, genesis(self.wave)
        made = []
        for ev in pending:
            seq += 1
            when = _now()
            body = _body(
                seq, when, ev.event, self.wave, ev.lane, ev.agent, _details_cell(ev.details)
            )
            chain = _link(chain, body)
            message = f"lanes ledger {self.wave} #{seq} {ev.event}\n\n{body} {chain} |\n"
            tip = self.coord._commit({}, [tip] if tip else [], message)
            made.append(
                Event(seq, when, ev.event, self.wave, ev.lane, ev.agent, ev.details, chain, 0, body)
            )
        return tip, made

    def append(self, event: str, lane: str = "", agent: str = "", **details: Any) -> Event:
        """Append by compare-and-swap on the ledger ref; a lease lost to another append is
        retried on the new tip (never forked, never lost)."""
        from lanes.ledger import EVENTS

        if event not in EVENTS:
            raise ValueError(f"unknown ledger event {event!r}")
        doing = f"recording the {event} event in the ledger of wave {self.wave}"
        deadline = time.monotonic() + APPEND_PATIENCE
        pause = 0.005
        tried: dict[str, Event] = {}  # commits pushed whose answer was lost in transport
        while True:
            try:
                tip = self.coord._ls([self.ref], doing).get(self.ref, "")
                if tip:
                    self.coord._fetch([tip], doing)
                for sha, ev in tried.items():
                    if tip and git.is_ancestor(self.coord.repo, sha, tip):
                        return ev  # it landed: never appended twice
                new, made = self.build(tip, [PendingEvent(event, lane, agent, details)])
                failpoint("remote-append-push")
                pushed = self.coord._push([(new, self.ref, tip)], doing)
                if pushed.ok:
                    return made[0]
                if pushed.retried:
                    tried[new] = made[0]
            except OperationalError as exc:
                exc.extra.setdefault("recorded", False)
                raise
            if time.monotonic() > deadline:
                raise self.coord._failed(doing, "other appends kept winning", recorded=False)
            time.sleep(random.uniform(0, pause))
            pause = min(pause * 2, 0.2)

    def _chain(self) -> tuple[str, list[tuple[str, list[str], int, str]]]:
        doing = f"reading the ledger of wave {self.wave}"
        tip = self.coord._ls([self.ref], doing).get(self.ref, "")
        if not tip:
            return "", []
        self.coord._fetch([tip], doing)
        return tip, git.commit_log(self.coord.repo, tip)

    def events(self) -> list[Event]:
        _tip, commits = self._chain()
        found = []
        for _, _, _, message in commits:
            ev = self._row(message)
            if ev is not None:
                found.append(ev)
        self._render(found)
        return found

    def _render(self, found: list[Event]) -> None:
        """Write the rendering people read (a cache: the remote is the truth)."""
        from lanes.ledger import _header

        text = _header(self.wave) + "".join(f"{ev.body} {ev.chain} |\n" for ev in found)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError:
            pass  # a read-only inbox: the events are read all the same

    def verify(self) -> VerifyReport:
        """The chain on the remote, commit by commit: one parent each (no fork), rows in
        order, every hash linked to the row before; the tip seen last by this machine still
        in it (nothing rewritten); the rendering in the inbox equal to it."""
        from lanes.ledger import VerifyReport, _link, genesis

        tip, commits = self._chain()
        prev, parent = genesis(self.wave), None
        for n, (sha, parents, _, message) in enumerate(commits, start=1):
            ev = self._row(message)
            where = f"commit {sha[:12]} of {self.ref}"
            if parents != ([parent] if parent else []):
                return VerifyReport(False, n - 1, n, f"{where} forks or merges the chain")
            if ev is None or ev.seq != n or _link(prev, ev.body) != ev.chain:
                return VerifyReport(
                    False, n - 1, n, f"{where}: expected event #{n} chained to the one before"
                )
            prev, parent = ev.chain, sha
        seen = ""
        with suppress(OSError):
            seen = self.anchor_path.read_text(encoding="utf-8").strip()
        if seen and (not tip or not git.is_ancestor(self.coord.repo, seen, tip)):
            return VerifyReport(
                False,
                len(commits),
                0,
                f"the ledger on the {self.coord.where} no longer holds {seen[:12]}, the tip "
                "this machine saw last: it was rewritten or cut",
            )
        rendered_ok = True
        if self.path.exists():
            text = self.path.read_text(encoding="utf-8", errors="replace")
            rows = [
                line
                for line in text.splitlines()
                if line.startswith("| ") and not line.startswith("| #")
            ]
            want = [self._row(m) for _, _, _, m in commits]
            # A rendering behind the chain is a cache not read since (an append does not
            # render); one that is not a prefix of it was edited.
            rendered_ok = rows == [f"{ev.body} {ev.chain} |" for ev in want if ev][: len(rows)]
        self._render([ev for ev in (self._row(m) for _, _, _, m in commits) if ev])
        if tip:
            try:
                self.anchor_path.parent.mkdir(parents=True, exist_ok=True)
                self.anchor_path.write_text(tip + "\n", encoding="utf-8")
            except OSError:
                pass
        if not rendered_ok:
            return VerifyReport(
                False,
                len(commits),
                0,
                f"{self.path} differs from the ledger on the {self.coord.where} (edited by "
                "hand?); it is rendered again from the remote",
            )
        return VerifyReport(True, len(commits), 0, "")

    def follow(self, poll: float = 0.2) -> Iterator[Event]:
        seen = 0
        while True:
            for ev in self.events():
                if ev.seq > seen:
                    seen = ev.seq
                    yield ev
            time.sleep(max(poll, 1.0))
