"""The test servers are real, and do what issue 9's coordination relies on.

On each of file://, git daemon and smart HTTP (nginx + fcgiwrap + git http-backend): a clone,
a fetch of `refs/lanes/x/*` only, a push; `--force-with-lease=<ref>:` creating a ref only if
it is absent, with 16 clients racing for it; an atomic push of two refs with one stale lease
changing neither. In a network namespace: a push while the link is cut fails within its
timeout and with a message saying why, and succeeds once healed; a server restarted mid-test
keeps its refs.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.servers import (  # asserts rewritten: tests/conftest.py registers the module
    TIMED_OUT,
    GitDaemon,
    GitResult,
    NetnsServer,
    Remote,
    Server,
    SmartHttp,
    make_seed,
    run_git,
)

# The fixtures (remote, remote_server, remote_url, git_daemon, smart_http, netns_server, ...).
pytest_plugins = ["tests.servers"]

RACERS = 16
ROUNDS = 2


def commit(clone: Path, message: str, rel: str = "claim.txt") -> str:
    """A commit on a detached HEAD of `clone` whose content names `message`: no two alike."""
    (clone / rel).write_text(message + "\n", encoding="utf-8")
    run_git(clone, "add", rel, check=True)
    run_git(clone, "commit", "--quiet", "-m", message, check=True)
    return run_git(clone, "rev-parse", "HEAD", check=True).stdout.strip()


def is_transport_error(result: GitResult) -> bool:
    """The connection failed: the client cannot tell whether the server acted on its push."""
    return any(
        text in result.stderr
        for text in ("Connection reset by peer", "remote end hung up", "unable to connect")
    )


def server_log(remote_server: Server) -> str:
    """What the server itself wrote about the requests: proof that it served them."""
    if isinstance(remote_server, SmartHttp):
        return remote_server.access_log.read_text(encoding="utf-8")
    if isinstance(remote_server, GitDaemon) and remote_server.service:
        return remote_server.service.log.read_text(encoding="utf-8")
    return ""


# -- each server is real ----------------------------------------------------------------------


def test_clone_fetch_only_lanes_refs_and_push(
    remote_server: Server, remote: Remote, tmp_path: Path
) -> None:
    alice = remote.clone(tmp_path / "alice")
    main = run_git(alice, "rev-parse", "HEAD", check=True).stdout.strip()
    assert remote.refs("refs/heads/") == {"refs/heads/main": main}

    a, b = commit(alice, "x/a by alice"), commit(alice, "x/b by alice", "b.txt")
    y = commit(alice, "y/c by alice", "c.txt")
    pushed = run_git(
        alice,
        "push",
        "--atomic",
        "origin",
        f"{a}:refs/lanes/x/a",
        f"{b}:refs/lanes/x/b",
        f"{y}:refs/lanes/y/c",
        check=True,
    )
    assert "[new reference]" in pushed.stderr
    assert remote.refs("refs/lanes/") == {
        "refs/lanes/x/a": a,
        "refs/lanes/x/b": b,
        "refs/lanes/y/c": y,
    }

    # Another machine reads only the wave it asks for: x's refs arrive, y's do not.
    bob = remote.clone(tmp_path / "bob")
    listed = run_git(bob, "ls-remote", "origin", "refs/lanes/x/*", check=True).stdout
    assert sorted(line.split("\t")[1] for line in listed.splitlines()) == [
        "refs/lanes/x/a",
        "refs/lanes/x/b",
    ]
    run_git(bob, "fetch", "--quiet", "origin", "+refs/lanes/x/*:refs/lanes/x/*", check=True)
    got = run_git(bob, "for-each-ref", "--format=%(refname) %(objectname)", "refs/lanes/")
    assert got.stdout.splitlines() == [f"refs/lanes/x/a {a}", f"refs/lanes/x/b {b}"]
    assert run_git(bob, "cat-file", "-e", y).returncode != 0  # y's commit never came over

    # And pushes a branch that alice then fetches.
    lane = commit(bob, "lane work by bob", "lane.txt")
    run_git(bob, "push", "--quiet", "origin", "HEAD:refs/heads/lane/bob", check=True)
    run_git(alice, "fetch", "--quiet", "origin", "lane/bob", check=True)
    assert run_git(alice, "rev-parse", "FETCH_HEAD", check=True).stdout.strip() == lane

    log = server_log(remote_server)
    if isinstance(remote_server, SmartHttp):
        assert "POST /origin.git/git-receive-pack" in log
        assert "POST /origin.git/git-upload-pack" in log
    elif isinstance(remote_server, GitDaemon):
        assert "Request receive-pack for '/origin.git'" in log
        assert "Request upload-pack for '/origin.git'" in log
    else:
        assert remote.url.startswith("file://")


def test_push_of_a_large_pack(remote: Remote, tmp_path: Path) -> None:
    """Over 1 MiB (git's http.postBuffer) HTTP pushes go chunked: the web server takes them."""
    alice = remote.clone(tmp_path / "alice")
    (alice / "noise.bin").write_bytes(os.urandom(3 << 20))  # incompressible: a 3 MiB pack
    big = commit(alice, "noise", "noise.bin")
    run_git(alice, "push", "--quiet", "origin", f"{big}:refs/heads/big", check=True)
    assert remote.refs("refs/heads/big") == {"refs/heads/big": big}


# -- the lease as compare-and-swap ------------------------------------------------------------


def test_lease_creates_a_ref_only_if_absent_with_16_racers(remote: Remote, tmp_path: Path) -> None:
    with ThreadPoolExecutor(8) as pool:
        clones = list(pool.map(lambda i: remote.clone(tmp_path / f"racer{i}"), range(RACERS)))
    for round_ in range(ROUNDS):
        ref = f"refs/lanes/race/lane{round_}"
        shas = [commit(c, f"{ref} claimed by racer {i}") for i, c in enumerate(clones)]
        barrier = threading.Barrier(RACERS)

        def push(
            i: int,
            ref: str = ref,
            shas: list[str] = shas,
            barrier: threading.Barrier | None = barrier,
        ) -> GitResult:
            if barrier:
                barrier.wait()
            return run_git(
                clones[i],
                "push",
                "--atomic",
                f"--force-with-lease={ref}:",
                "origin",
                f"{shas[i]}:{ref}",
                timeout=60,
            )

        with ThreadPoolExecutor(RACERS) as pool:
            results = list(pool.map(push, range(RACERS)))
        assert not any(r.timed_out for r in results)
        # git daemon listens with a backlog of 5: a burst of connects gets some of them reset
        # ("fatal: read error: Connection reset by peer") before a word of the protocol. Such
        # a client does not know what happened: it tries again, as lanes must, and then
        # learns the truth (refused, or "up to date" if its own push had landed after all).
        for i, r in enumerate(results):
            for _retry in range(3):
                if r.returncode == 0 or "rejected" in r.stderr:
                    break
                assert is_transport_error(r), r.stderr
                r = results[i] = push(i, barrier=None)
        winners = [i for i, r in enumerate(results) if r.returncode == 0]
        assert len(winners) == 1, [r.stderr for r in results]
        (winner,) = winners
        assert remote.refs(ref) == {ref: shas[winner]}
        message = run_git(None, f"--git-dir={remote.path}", "log", "-1", "--format=%s", ref)
        assert message.stdout.strip() == f"{ref} claimed by racer {winner}"
        for i, r in enumerate(results):
            if i != winner:
                # "(stale info)": the client saw the ref before sending; "(atomic transaction
                # failed)": the server's own check under its ref lock refused it.
                assert "[rejected]" in r.stderr or "[remote rejected]" in r.stderr, r.stderr

        # Once the ref exists, a late claimant is refused by the lease, deterministically.
        late = run_git(
            clones[winner - 1], "push", f"--force-with-lease={ref}:", "origin", f"HEAD:{ref}"
        )
        assert late.returncode != 0 and "stale info" in late.stderr
        assert remote.refs(ref) == {ref: shas[winner]}


def test_atomic_push_with_one_stale_lease_changes_neither(remote: Remote, tmp_path: Path) -> None:
    alice = remote.clone(tmp_path / "alice")
    main0 = run_git(alice, "rev-parse", "HEAD", check=True).stdout.strip()
    ledger0 = commit(alice, "ledger: event 0", "ledger.txt")
    run_git(alice, "push", "--quiet", "origin", f"{ledger0}:refs/lanes/x/ledger", check=True)
    ledger1 = commit(alice, "ledger: event 1 by another integrator", "ledger.txt")
    run_git(alice, "push", "--quiet", "origin", f"{ledger1}:refs/lanes/x/ledger", check=True)

    run_git(alice, "checkout", "--quiet", "--detach", main0, check=True)
    main1 = commit(alice, "land lane a", "a.txt")
    ledger2 = commit(alice, "ledger: landed a", "ledger.txt")
    before = remote.refs()

    # main's lease is right, the ledger's is stale (pinned to event 0, the remote has 1).
    stale = run_git(
        alice,
        "push",
        "--atomic",
        f"--force-with-lease=refs/heads/main:{main0}",
        f"--force-with-lease=refs/lanes/x/ledger:{ledger0}",
        "origin",
        f"{main1}:refs/heads/main",
        f"{ledger2}:refs/lanes/x/ledger",
    )
    assert stale.returncode != 0
    assert "stale info" in stale.stderr
    assert remote.refs() == before

    # A delete (release, reap) with a stale pin is refused too; with the right pin it goes.
    gone = run_git(
        alice,
        "push",
        f"--force-with-lease=refs/lanes/x/ledger:{ledger0}",
        "origin",
        ":refs/lanes/x/ledger",
    )
    assert gone.returncode != 0 and remote.refs() == before

    # With both leases right, both move in the one push.
    run_git(
        alice,
        "push",
        "--atomic",
        f"--force-with-lease=refs/heads/main:{main0}",
        f"--force-with-lease=refs/lanes/x/ledger:{ledger1}",
        "origin",
        f"{main1}:refs/heads/main",
        f"+{ledger2}:refs/lanes/x/ledger",
        check=True,
    )
    assert remote.refs("refs/heads/main") == {"refs/heads/main": main1}
    assert remote.refs("refs/lanes/x/ledger") == {"refs/lanes/x/ledger": ledger2}


# -- faults -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["drop", "down", "reject"])
def test_push_while_cut_fails_in_time_then_succeeds_after_heal(
    netns_server: NetnsServer, remote_seed: Path, tmp_path: Path, mode: str
) -> None:
    remote = netns_server.add(remote_seed)
    assert remote.url.startswith(f"git://{netns_server.server_ip}:")
    alice = remote.clone(tmp_path / "alice")
    sha = commit(alice, "claimed by alice")
    before = remote.refs()

    netns_server.cut(mode)
    timeout = 3.0
    cut = run_git(alice, "push", "origin", f"{sha}:refs/lanes/x/a", timeout=timeout)
    assert cut.returncode != 0
    assert cut.seconds < timeout + 2
    if mode == "reject":
        # The server's host answers: git's own error, at once.
        assert not cut.timed_out
        assert "unable to connect" in cut.stderr and "Connection refused" in cut.stderr
    else:
        # Nothing answers: git would wait for minutes; the bound kills it and says so.
        assert cut.timed_out and cut.returncode == TIMED_OUT
        assert f"timed out after {timeout:g}s" in cut.stderr
    assert remote.refs() == before

    netns_server.heal()
    run_git(alice, "push", "origin", f"{sha}:refs/lanes/x/a", timeout=10, check=True)
    assert remote.refs("refs/lanes/x/") == {"refs/lanes/x/a": sha}


def test_http_fetch_while_cut_is_bounded(
    netns_server: NetnsServer, remote_seed: Path, tmp_path: Path
) -> None:
    remote = netns_server.add(remote_seed)
    url = netns_server.http_url(remote)
    alice = tmp_path / "alice"
    run_git(None, "clone", "--quiet", url, str(alice), timeout=10, check=True)

    netns_server.cut("drop")
    cut = run_git(alice, "fetch", "origin", timeout=3)
    assert cut.timed_out and "timed out after 3s" in cut.stderr

    netns_server.heal()
    run_git(alice, "fetch", "--quiet", "origin", timeout=10, check=True)


@pytest.mark.parametrize("where", ["daemon", "http", "netns"])
def test_server_restarted_mid_test_keeps_its_refs(
    request: pytest.FixtureRequest, remote_seed: Path, tmp_path: Path, where: str
) -> None:
    fixture = {"daemon": "git_daemon", "http": "smart_http", "netns": "netns_server"}[where]
    server = request.getfixturevalue(fixture)
    remote = server.add(remote_seed)
    alice = remote.clone(tmp_path / "alice")
    first = commit(alice, "claimed before the restart")
    run_git(alice, "push", "--quiet", "origin", f"{first}:refs/lanes/x/a", check=True)

    service = server.daemon.service if isinstance(server, NetnsServer) else None
    pid_before = service.proc.pid if service and service.proc else None
    server.restart()
    if isinstance(server, NetnsServer):
        assert server.daemon and server.daemon.service and server.daemon.service.proc
        assert server.daemon.service.proc.pid != pid_before

    listed = run_git(alice, "ls-remote", "origin", "refs/lanes/x/*", timeout=10, check=True)
    assert listed.stdout.split() == [first, "refs/lanes/x/a"]
    second = commit(alice, "claimed after the restart", "b.txt")
    run_git(alice, "push", "--quiet", "origin", f"{second}:refs/lanes/x/b", check=True)
    assert remote.refs("refs/lanes/x/") == {"refs/lanes/x/a": first, "refs/lanes/x/b": second}


def test_netns_is_gone_after_the_test(tmp_path: Path) -> None:
    """The fixture's teardown leaves no namespace, no veth and no process behind."""
    from tests import servers

    server = NetnsServer(tmp_path / "root", tmp_path / "state")
    (tmp_path / "root").mkdir()
    server.create()
    try:
        server.start_daemon()
        remote = server.add(make_seed(tmp_path / "seed"))
        run_git(None, "ls-remote", remote.url, timeout=10, check=True)
        pids = servers.ip("netns", "pids", server.name).stdout.split()
        assert pids
    finally:
        server.destroy()
    assert server.name not in servers.ip("netns", "list").stdout
    assert servers.ip("link", "show", server.host_if, check=False).returncode != 0
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(
            f"/proc/{pid}/status"
        ).read_text(encoding="utf-8")


def test_a_missing_program_fails_naming_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests import servers

    monkeypatch.setitem(servers.PACKAGES, "lanes-no-such-server", "lanes-pkg")
    monkeypatch.delenv(servers.SKIP_ENV, raising=False)
    with pytest.raises(pytest.fail.Exception, match="install the Debian package lanes-pkg"):
        servers.require("lanes-no-such-server")
    monkeypatch.setenv(servers.SKIP_ENV, "0")  # only "1", set on purpose, skips
    with pytest.raises(pytest.fail.Exception):
        servers.require("lanes-no-such-server")
    monkeypatch.setenv(servers.SKIP_ENV, "1")
    with pytest.raises(pytest.skip.Exception, match="lanes-pkg"):
        servers.require("lanes-no-such-server")
