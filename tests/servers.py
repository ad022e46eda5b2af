"""Real git servers for the tests, started by the tests themselves (issue 9, "How it is checked").

Four kinds of remote, each a bare repository on disk behind a real transport:

- ``file``: the bare repository itself, as ``file://<path>``;
- ``daemon``: ``git daemon --enable=receive-pack`` on 127.0.0.1 and a free port (``git://``);
- ``http``: smart HTTP, nginx in front of fcgiwrap running ``git http-backend`` with
  ``http.receivepack true`` in each repository (``http://``);
- ``netns``: a git daemon (and, on request, the HTTP stack) inside a network namespace made
  by the test, reached over a veth pair, which the test can cut, heal and restart.

Every server runs as a child of the test in its own process group, with its configuration,
pid and log files under ``tmp_path``; its fixture kills the group, frees the port and deletes
the namespace when the test ends, pass or fail. A missing program fails the fixture with the
Debian package to install; ``LANES_SKIP_SERVERS=1`` turns that failure into a skip, and only
when it is set explicitly.

Every client git command here is bounded: ``run_git`` kills the whole process group after
its timeout. git offers no connect timeout, neither for ``git://`` (a blocking connect that
the kernel retries for about two minutes) nor for ``http://`` (``http.lowSpeedLimit`` and
``http.lowSpeedTime`` bound a stalled transfer, not the connect), so the wall-clock kill is
what keeps a cut network from hanging a test.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SKIP_ENV = "LANES_SKIP_SERVERS"
GIT_TIMEOUT = 30.0  # default bound on one client git command, in seconds
READY_TIMEOUT = 10.0  # how long a server may take to accept connections
STOP_TIMEOUT = 3.0  # SIGTERM, then SIGKILL after this
TIMED_OUT = 124  # the exit status run_git reports for a command it killed (as timeout(1))
NETNS_PREFIX = "lanes-test-"

# Where the programs come from on Debian, for the message when one is missing.
PACKAGES = {
    "git": "git",
    "git-daemon": "git",
    "git-http-backend": "git",
    "nginx": "nginx",
    "fcgiwrap": "fcgiwrap",
    "ip": "iproute2",
    "iptables": "iptables",
}
SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")


# -- programs ---------------------------------------------------------------------------------


def unavailable(message: str) -> None:
    """Fail the test (or skip it, only if LANES_SKIP_SERVERS=1 is set): never silently."""
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"{message} ({SKIP_ENV}=1)")
    pytest.fail(f"{message}; or set {SKIP_ENV}=1 to skip the server tests", pytrace=False)


def require(program: str) -> str:
    """The path of `program`, searched in PATH, then in sbin (nginx, ip: root's PATH only)."""
    package = PACKAGES.get(program, program)
    if program in ("git-daemon", "git-http-backend"):
        found = git_exec_path() / program
        if found.is_file() and os.access(found, os.X_OK):
            return str(found)
    else:
        path = os.pathsep.join([os.environ.get("PATH", ""), *SBIN])
        which = shutil.which(program, path=path)
        if which:
            return which
    unavailable(
        f"{program} is missing: install the Debian package {package} "
        f"(apt-get install {package}, as .ci/run does)"
    )
    raise AssertionError("unreachable")


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        unavailable(f"{what} needs root (CAP_NET_ADMIN); `make test` runs as root in CI")


def git_exec_path() -> Path:
    git = shutil.which("git")
    if git is None:
        unavailable("git is missing: install the Debian package git")
        raise AssertionError("unreachable")
    out = subprocess.run([git, "--exec-path"], capture_output=True, text=True, timeout=10)
    return Path(out.stdout.strip())


# -- bounded git clients ----------------------------------------------------------------------

# Options every client command gets: a stalled HTTP transfer (under 1 kB/s for
# `low_speed_time` seconds) is aborted by git itself; no prompt can wait for a terminal.
CLIENT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "SSH_ASKPASS": "true"}
STRIPPED_ENV = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY")


def client_options(timeout: float) -> list[str]:
    """`-c` options bounding a client's HTTP transfers to about `timeout` seconds of stall."""
    low_speed_time = max(1, int(timeout // 2))
    return ["-c", "http.lowSpeedLimit=1000", "-c", f"http.lowSpeedTime={low_speed_time}"]


def client_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in STRIPPED_ENV}
    env.update(CLIENT_ENV)
    env.update(extra or {})
    return env


@dataclass
class GitResult:
    """One finished client command: what CompletedProcess holds, plus how long and if killed."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool

    def check(self) -> GitResult:
        if self.returncode != 0:
            raise AssertionError(
                f"git {' '.join(self.args)} exited {self.returncode} after {self.seconds:.1f}s:\n"
                f"{self.stderr}"
            )
        return self


def run_git(
    cwd: Path | None,
    *args: str,
    timeout: float = GIT_TIMEOUT,
    check: bool = False,
    env: dict[str, str] | None = None,
) -> GitResult:
    """Run one client git command, killed with its whole process group after `timeout`.

    A killed command returns TIMED_OUT (124) with a line on stderr saying so: the message a
    cut network gives when git itself would wait for minutes.
    """
    cmd = ["git", *client_options(timeout), *args]
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=client_env(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        kill_group(proc, signal.SIGKILL)
        out, err = proc.communicate(timeout=STOP_TIMEOUT)
        err += f"\nlanes-tests: git {' '.join(args)} timed out after {timeout:g}s, killed\n"
    seconds = time.monotonic() - start
    result = GitResult(
        list(args), TIMED_OUT if timed_out else proc.returncode, out, err, seconds, timed_out
    )
    return result.check() if check else result


def kill_group(proc: subprocess.Popen[str] | subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


# -- repositories ------------------------------------------------------------------------------


def make_seed(path: Path) -> Path:
    """A small repository on branch main with one commit: the default content of a remote."""
    path.mkdir(parents=True, exist_ok=True)
    run_git(path, "init", "--quiet", "--initial-branch=main", check=True)
    (path / "README").write_text("seed\n", encoding="utf-8")
    run_git(path, "add", "README", check=True)
    run_git(
        path,
        "-c",
        "user.name=lanes tests",
        "-c",
        "user.email=tests@lanes.invalid",
        "-c",
        "commit.gpgsign=false",
        "commit",
        "--quiet",
        "-m",
        "seed",
        check=True,
    )
    return path


def make_bare(seed: Path, dest: Path) -> Path:
    """A bare copy of `seed` at `dest`, accepting pushes over every transport here."""
    run_git(None, "clone", "--quiet", "--bare", "--no-local", str(seed), str(dest), check=True)
    run_git(dest, "config", "http.receivepack", "true", check=True)  # anonymous HTTP push
    run_git(dest, "config", "receive.advertiseAtomic", "true", check=True)  # git's default
    (dest / "git-daemon-export-ok").touch()
    return dest


@dataclass
class Remote:
    """One bare repository and the URL a client reaches it by."""

    kind: str  # "file", "daemon", "http" or "netns"
    url: str
    path: Path  # the bare repository on the server's disk: the truth, read without network

    def refs(self, pattern: str = "refs/") -> dict[str, str]:
        """The refs under `pattern` as the server holds them, read from its disk."""
        out = run_git(
            None,
            f"--git-dir={self.path}",
            "for-each-ref",
            "--format=%(refname) %(objectname)",
            pattern,
            check=True,
        ).stdout
        pairs = (line.split(" ", 1) for line in out.splitlines() if line)
        return {name: sha for name, sha in pairs}

    def clone(self, dest: Path, timeout: float = GIT_TIMEOUT) -> Path:
        """A client clone of this remote at `dest` (origin = this URL), with an author set."""
        run_git(None, "clone", "--quiet", self.url, str(dest), timeout=timeout, check=True)
        for key, value in (
            ("user.name", f"client {dest.name}"),
            ("user.email", f"{dest.name}@lanes.invalid"),
            ("commit.gpgsign", "false"),
        ):
            run_git(dest, "config", key, value, check=True)
        return dest


# -- processes ---------------------------------------------------------------------------------


@dataclass
class Service:
    """A server process in its own process group, logging to a file, stopped for sure."""

    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        kill_group(proc, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=STOP_TIMEOUT)
        kill_group(proc, signal.SIGKILL)  # also whatever the group still holds (children)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=STOP_TIMEOUT)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def died(self) -> str:
        code = self.proc.poll() if self.proc else None
        return f"{self.name} exited ({code}) before it was ready; its log:\n{self.log_tail()}"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_until(ready: Callable[[], bool], service: Service, what: str) -> None:
    """Poll `ready` until it holds, for READY_TIMEOUT at most; fail early if `service` died."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if not service.alive():
            raise RuntimeError(service.died())
        if ready():
            return
        time.sleep(0.02)
    raise RuntimeError(
        f"{what} not ready after {READY_TIMEOUT:g}s; {service.name}'s log:\n{service.log_tail()}"
    )


def accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def http_status(host: str, port: int, path: str) -> int | None:
    conn = http.client.HTTPConnection(host, port, timeout=2)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


# -- servers -----------------------------------------------------------------------------------


@dataclass
class FileServer:
    """Bare repositories under `root`, reached as file:// URLs (no process)."""

    root: Path
    kind: str = "file"

    def url_for(self, name: str) -> str:
        return (self.root / name).as_uri()

    def add(self, seed: Path, name: str = "origin.git") -> Remote:
        bare = make_bare(seed, self.root / name)
        return Remote(self.kind, self.url_for(name), bare)

    def restart(self) -> None:
        """Nothing runs: the repository on disk is the server."""


@dataclass
class GitDaemon:
    """`git daemon` exporting every repository under `root`, receive-pack enabled."""

    root: Path
    state: Path  # its log lives here
    host: str = "127.0.0.1"
    port: int = 0
    prefix: Sequence[str] = ()  # e.g. ("ip", "netns", "exec", NAME) to run it in a namespace
    kind: str = "daemon"
    service: Service | None = None

    def url_for(self, name: str) -> str:
        return f"git://{self.host}:{self.port}/{name}"

    def add(self, seed: Path, name: str = "origin.git") -> Remote:
        bare = make_bare(seed, self.root / name)
        return Remote(self.kind, self.url_for(name), bare)

    def start(self) -> None:
        daemon = require("git-daemon")
        fixed = self.port != 0
        for _attempt in range(5):  # a free port can be taken between the probe and the bind
            port = self.port if fixed else free_port(self.host)
            self.service = Service(
                "git daemon",
                [
                    *self.prefix,
                    daemon,
                    "--reuseaddr",
                    "--verbose",
                    "--informative-errors",
                    f"--base-path={self.root}",
                    "--export-all",
                    "--enable=receive-pack",
                    f"--listen={self.host}",
                    f"--port={port}",
                    "--max-connections=128",
                    str(self.root),
                ],
                self.state / "git-daemon.log",
            )
            self.service.start()
            try:
                wait_until(lambda p=port: accepts(self.host, p), self.service, "git daemon")
            except RuntimeError:
                self.service.stop()
                if fixed or "Address already in use" not in self.service.log_tail():
                    raise
                continue
            self.port = port
            return
        raise RuntimeError(f"git daemon found no free port; log:\n{self.service.log_tail()}")

    def stop(self) -> None:
        if self.service:
            self.service.stop()

    def restart(self) -> None:
        """Stop the daemon and start it again on the same port: the refs are on disk."""
        self.stop()
        self.start()


NGINX_CONF = """\
# Written by tests/servers.py for one test; nothing outside {state} is read or written
# but git's own files and the repositories under {root}.
{user}
worker_processes 1;
daemon off;
pid {state}/nginx.pid;
error_log {state}/nginx-error.log info;
events {{ worker_connections 512; }}
http {{
    access_log {state}/nginx-access.log;
    client_body_temp_path {state}/tmp/body;
    fastcgi_temp_path {state}/tmp/fastcgi;
    proxy_temp_path {state}/tmp/proxy;
    uwsgi_temp_path {state}/tmp/uwsgi;
    scgi_temp_path {state}/tmp/scgi;
    client_max_body_size 0;
    server {{
        listen {host}:{port};
        location / {{
            fastcgi_pass unix:{socket};
            fastcgi_read_timeout 120s;
            fastcgi_param SCRIPT_FILENAME {backend};
            fastcgi_param GIT_PROJECT_ROOT {root};
            fastcgi_param GIT_HTTP_EXPORT_ALL "";
            fastcgi_param GIT_PROTOCOL $http_git_protocol;
            fastcgi_param GIT_CONFIG_NOSYSTEM 1;
            fastcgi_param HOME {state};
            fastcgi_param PATH {path};
            fastcgi_param PATH_INFO $uri;
            fastcgi_param QUERY_STRING $query_string;
            fastcgi_param REQUEST_METHOD $request_method;
            fastcgi_param CONTENT_TYPE $content_type;
            fastcgi_param CONTENT_LENGTH $content_length;
            fastcgi_param REQUEST_URI $request_uri;
            fastcgi_param SERVER_PROTOCOL $server_protocol;
            fastcgi_param SERVER_NAME $server_name;
            fastcgi_param SERVER_PORT $server_port;
            fastcgi_param REMOTE_ADDR $remote_addr;
            fastcgi_param GATEWAY_INTERFACE CGI/1.1;
        }}
    }}
}}
"""


@dataclass
class SmartHttp:
    """nginx + fcgiwrap + `git http-backend` serving every repository under `root`."""

    root: Path
    state: Path  # config, pid, socket, logs and nginx's temp files
    host: str = "127.0.0.1"
    port: int = 0
    prefix: Sequence[str] = ()
    children: int = 32  # fcgiwrap processes: requests beyond that wait in the socket backlog
    kind: str = "http"
    nginx: Service | None = None
    fcgiwrap: Service | None = None

    def url_for(self, name: str) -> str:
        return f"http://{self.host}:{self.port}/{name}"

    def add(self, seed: Path, name: str = "origin.git") -> Remote:
        bare = make_bare(seed, self.root / name)
        return Remote(self.kind, self.url_for(name), bare)

    @property
    def access_log(self) -> Path:
        return self.state / "nginx-access.log"

    def start(self) -> None:
        nginx, fcgiwrap = require("nginx"), require("fcgiwrap")
        backend = require("git-http-backend")
        (self.state / "tmp").mkdir(parents=True, exist_ok=True)
        sock = self.state / "fcgiwrap.sock"
        sock.unlink(missing_ok=True)
        self.fcgiwrap = Service(
            "fcgiwrap",
            [*self.prefix, fcgiwrap, "-c", str(self.children), "-s", f"unix:{sock}"],
            self.state / "fcgiwrap.log",
        )
        self.fcgiwrap.start()
        wait_until(sock.exists, self.fcgiwrap, "fcgiwrap's socket")
        fixed = self.port != 0
        for _attempt in range(5):
            port = self.port if fixed else free_port(self.host)
            conf = self.state / "nginx.conf"
            conf.write_text(
                NGINX_CONF.format(
                    # As root, nginx's workers would run as nobody, who can reach neither the
                    # socket nor tmp_path: keep them root (the directive is ignored otherwise).
                    user="user root;" if os.geteuid() == 0 else "",
                    state=self.state,
                    root=self.root,
                    host=self.host,
                    port=port,
                    socket=sock,
                    backend=backend,
                    path=os.environ.get("PATH", "/usr/bin:/bin"),
                ),
                encoding="utf-8",
            )
            self.nginx = Service(
                "nginx",
                [
                    *self.prefix,
                    nginx,
                    "-p",
                    str(self.state),
                    "-c",
                    str(conf),
                    "-e",
                    str(self.state / "nginx-error.log"),
                ],
                self.state / "nginx.log",
            )
            self.nginx.start()
            try:
                # git http-backend answers 404 for a repository that is not there: the whole
                # chain (nginx, fcgiwrap, the backend) is up once that comes back, not a 502.
                wait_until(
                    lambda p=port: http_status(self.host, p, "/-ready-/info/refs") == 404,
                    self.nginx,
                    "nginx + fcgiwrap + git http-backend",
                )
            except RuntimeError as exc:
                self.nginx.stop()
                busy = (
                    "Address already in use"
                    in (self.state / "nginx-error.log").read_text(
                        encoding="utf-8", errors="replace"
                    )
                    if (self.state / "nginx-error.log").exists()
                    else False
                )
                if fixed or not busy:
                    self.stop()
                    raise RuntimeError(
                        f"{exc}\nnginx error log:\n{self.error_log_tail()}"
                    ) from None
                continue
            self.port = port
            return
        self.stop()
        raise RuntimeError(f"nginx found no free port; error log:\n{self.error_log_tail()}")

    def error_log_tail(self) -> str:
        path = self.state / "nginx-error.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-20:])

    def stop(self) -> None:
        for service in (self.nginx, self.fcgiwrap):
            if service:
                service.stop()

    def restart(self) -> None:
        self.stop()
        self.start()


Server = FileServer | GitDaemon | SmartHttp


# -- a server in a network namespace -----------------------------------------------------------


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [require("ip"), *args], capture_output=True, text=True, timeout=10, check=False
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc


def sweep_stale_namespaces() -> None:
    """Delete namespaces left by test runs that were killed (their pid is in the name)."""
    out = ip("netns", "list", check=False).stdout
    for line in out.splitlines():
        name = line.split(" ", 1)[0]
        if not name.startswith(NETNS_PREFIX):
            continue
        try:
            owner = int(name[len(NETNS_PREFIX) :].split("-", 1)[0])
        except ValueError:
            continue
        if owner != os.getpid() and not Path(f"/proc/{owner}").exists():
            delete_namespace(name)


def delete_namespace(name: str) -> None:
    """Kill whatever still runs in the namespace, then delete it (its veth pair goes with it)."""
    pids = ip("netns", "pids", name, check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    deadline = time.monotonic() + STOP_TIMEOUT
    while pids and time.monotonic() < deadline:
        pids = ip("netns", "pids", name, check=False).stdout.split()
        time.sleep(0.02)
    ip("netns", "delete", name, check=False)


def pick_subnet() -> tuple[str, str]:
    """A private /30 in 10.213.0.0/16 that no interface or route here uses yet."""
    used = ip("-4", "addr").stdout + ip("-4", "route").stdout
    for _ in range(200):
        base = random.randrange(0, 1 << 14) * 4  # /30 blocks of 10.213.0.0/16
        prefix = f"10.213.{base >> 8}.{base & 255}"
        if f"10.213.{base >> 8}.{base & 255}/30" in used:
            continue
        client = f"10.213.{base >> 8}.{(base & 255) + 1}"
        server = f"10.213.{base >> 8}.{(base & 255) + 2}"
        if client not in used and server not in used and prefix not in used:
            return client, server
    raise RuntimeError("no free /30 in 10.213.0.0/16")


_counter = iter(range(1, 1 << 30))


@dataclass
class NetnsServer:
    """A git daemon (and, on request, smart HTTP) inside a network namespace of its own.

    The client side of the veth pair stays here, in the test's namespace; the server side and
    the servers are in the namespace. `cut()` takes the path away, `heal()` gives it back,
    `restart_server()` stops and starts the servers on the same address and ports.
    """

    root: Path
    state: Path
    name: str = ""
    client_ip: str = ""
    server_ip: str = ""
    host_if: str = ""
    ns_if: str = ""
    daemon: GitDaemon | None = None
    http: SmartHttp | None = None
    cut_mode: str | None = None
    cuts: list[str] = field(default_factory=list)
    kind: str = "netns"

    # -- life cycle

    def create(self) -> None:
        require_root("a network namespace")
        require("ip")
        sweep_stale_namespaces()
        n = next(_counter)
        self.name = f"{NETNS_PREFIX}{os.getpid()}-{n}"
        tag = f"{os.getpid() % 100000}{n}"[-9:]
        self.host_if, self.ns_if = f"lnh{tag}", f"lns{tag}"  # at most 15 characters
        self.client_ip, self.server_ip = pick_subnet()
        ip("netns", "add", self.name)
        try:
            ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
            ip("link", "set", self.ns_if, "netns", self.name)
            ip("addr", "add", f"{self.client_ip}/30", "dev", self.host_if)
            ip("link", "set", self.host_if, "up")
            self.exec("ip", "addr", "add", f"{self.server_ip}/30", "dev", self.ns_if)
            self.exec("ip", "link", "set", self.ns_if, "up")
            self.exec("ip", "link", "set", "lo", "up")
        except BaseException:
            self.destroy()
            raise

    def destroy(self) -> None:
        for server in (self.http, self.daemon):
            if server:
                server.stop()
        if self.name:
            delete_namespace(self.name)
        if self.host_if:  # gone with the namespace; left only if the move into it failed
            ip("link", "delete", self.host_if, check=False)

    @property
    def prefix(self) -> list[str]:
        return [require("ip"), "netns", "exec", self.name]

    def exec(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace (bounded, checked)."""
        proc = subprocess.run(
            [*self.prefix, *argv], capture_output=True, text=True, timeout=10, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"in {self.name}: {' '.join(argv)} failed ({proc.returncode}): {proc.stderr}"
            )
        return proc

    def start_daemon(self) -> GitDaemon:
        self.daemon = GitDaemon(
            self.root, self.state / "daemon", host=self.server_ip, port=9418, prefix=self.prefix
        )
        self.daemon.kind = self.kind
        self.daemon.start()
        return self.daemon

    def start_http(self) -> SmartHttp:
        """Start nginx + fcgiwrap inside the namespace too, on port 8080 of the server side."""
        self.http = SmartHttp(
            self.root, self.state / "http", host=self.server_ip, port=8080, prefix=self.prefix
        )
        self.http.kind = "netns-http"
        self.http.start()
        return self.http

    # -- repositories

    def add(self, seed: Path, name: str = "origin.git") -> Remote:
        """A bare repository served by the daemon in the namespace (git:// URL)."""
        assert self.daemon is not None
        return self.daemon.add(seed, name)

    def http_url(self, remote: Remote) -> str:
        """The same repository over the namespace's smart HTTP (start_http() first)."""
        if self.http is None:
            self.start_http()
        assert self.http is not None
        return self.http.url_for(remote.path.name)

    # -- faults

    def cut(self, mode: str = "drop") -> None:
        """Take the path to the server away, silently by default.

        - "drop": iptables in the namespace drops every packet arriving on the veth: the
          client's SYNs and segments vanish, as on a dead network (connects hang until killed);
        - "down": the server side of the veth goes down: the client's side loses carrier and
          its packets are dropped on the floor, like a pulled cable;
        - "reject": iptables answers TCP with a reset: the client fails at once with
          "Connection refused", as when the server's host is up and the service is not.
        Bringing the client's side down is not offered: its route would go, and the packets
        would follow the default route out of the machine instead of failing.
        """
        if self.cut_mode is not None:
            raise RuntimeError(f"already cut ({self.cut_mode})")
        if mode == "down":
            self.exec("ip", "link", "set", self.ns_if, "down")
        elif mode in ("drop", "reject"):
            iptables = require("iptables")
            target = ["DROP"] if mode == "drop" else ["REJECT", "--reject-with", "tcp-reset"]
            rule = ["-i", self.ns_if, *(["-p", "tcp"] if mode == "reject" else []), "-j", *target]
            self.exec(iptables, "-w", "5", "-I", "INPUT", *rule)
        else:
            raise ValueError(f"unknown cut mode {mode!r}: drop, down or reject")
        self.cut_mode = mode
        self.cuts.append(mode)

    def heal(self) -> None:
        """Give the path back as it was before cut()."""
        mode, self.cut_mode = self.cut_mode, None
        if mode == "down":
            self.exec("ip", "link", "set", self.ns_if, "up")
            deadline = time.monotonic() + READY_TIMEOUT
            while "LOWER_UP" not in ip("link", "show", self.host_if).stdout:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.host_if} has no carrier after heal()")
                time.sleep(0.02)
        elif mode in ("drop", "reject"):
            self.exec(require("iptables"), "-w", "5", "-F", "INPUT")
        # ARP tried during the cut leaves FAILED neighbour entries ("No route to host" for a
        # while after the cable is back): forget them, as a fresh link would.
        ip("neigh", "flush", "dev", self.host_if, check=False)
        self.exec("ip", "neigh", "flush", "dev", self.ns_if)
        if self.daemon and self.daemon.service:
            wait_until(
                lambda: accepts(self.server_ip, self.daemon.port),  # type: ignore[union-attr]
                self.daemon.service,
                "the namespace's git daemon after heal()",
            )

    def restart_server(self) -> None:
        """Stop the servers in the namespace (kill their process groups) and start them again."""
        for server in (self.daemon, self.http):
            if server:
                server.restart()

    def restart(self) -> None:
        self.restart_server()


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def remote_seed(tmp_path: Path) -> Path:
    """The repository a remote is seeded from. Override it to serve another (e.g. seed_repo)."""
    return make_seed(tmp_path / "seed")


@pytest.fixture
def bare_remote(tmp_path: Path, remote_seed: Path) -> Remote:
    """A bare repository seeded from `remote_seed`, reachable as file://."""
    return FileServer(tmp_path / "srv-file").add(remote_seed)


@pytest.fixture
def file_server(tmp_path: Path) -> FileServer:
    (tmp_path / "srv-file").mkdir(exist_ok=True)
    return FileServer(tmp_path / "srv-file")


@pytest.fixture
def git_daemon(tmp_path: Path) -> Iterator[GitDaemon]:
    """`git daemon` on 127.0.0.1:<free port>, receive-pack enabled; `.add(seed)` serves a repo."""
    require("git-daemon")
    root = tmp_path / "srv-daemon"
    root.mkdir()
    daemon = GitDaemon(root, tmp_path / "state-daemon")
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture
def smart_http(tmp_path: Path) -> Iterator[SmartHttp]:
    """nginx + fcgiwrap + git http-backend on 127.0.0.1:<free port>; `.add(seed)` serves a repo."""
    for program in ("nginx", "fcgiwrap", "git-http-backend"):
        require(program)
    root = tmp_path / "srv-http"
    root.mkdir()
    server = SmartHttp(root, tmp_path / "state-http")
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["file", "daemon", "http"])
def remote_server(request: pytest.FixtureRequest) -> Server:
    """Each of the three servers in turn: file://, git daemon, smart HTTP."""
    name = {"file": "file_server", "daemon": "git_daemon", "http": "smart_http"}[request.param]
    server: Server = request.getfixturevalue(name)
    return server


@pytest.fixture
def remote(remote_server: Server, remote_seed: Path) -> Remote:
    """A bare repository seeded from `remote_seed` on each server in turn."""
    return remote_server.add(remote_seed)


@pytest.fixture
def remote_url(remote: Remote) -> str:
    """The URL of `remote`: file://..., git://127.0.0.1:<port>/origin.git, http://..."""
    return remote.url


@pytest.fixture
def netns_server(tmp_path: Path) -> Iterator[NetnsServer]:
    """A git daemon inside a network namespace made for the test, behind a veth pair.

    `.add(seed)` serves a repository at git://<server ip>:9418/<name>; `.start_http()` adds
    smart HTTP on port 8080; `.cut(mode)`, `.heal()`, `.restart_server()` are the faults.
    Everything (servers, namespace, veth pair) is gone when the test ends.
    """
    root = tmp_path / "srv-netns"
    root.mkdir()
    server = NetnsServer(root, tmp_path / "state-netns")
    try:
        server.create()
        server.start_daemon()
        yield server
    finally:
        server.destroy()
