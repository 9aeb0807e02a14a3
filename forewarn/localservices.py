"""Throwaway local services for tests, benchmarks and the demo: Mosquitto and PostgreSQL on free ports.

Each runs from a temporary directory, binds 127.0.0.1 only, never touches the standard ports, can be
stopped and started again (for fault tests), and is always killed at the end: a command that starts them
calls `unwind_on_sigterm` first, so SIGTERM (what `timeout`, systemd and `kill` send) stops them too.

We write these two small controllers rather than use pytest-postgresql's process fixture because the
demo and the benchmarks need them outside pytest, and because the tests run as root here and in CI while
PostgreSQL refuses to run as root: the server must be started as the `postgres` user (`runuser`), which
that plugin's executor cannot do. No well-kept plugin runs Mosquitto.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal, TypeVar

import psycopg

T = TypeVar("T")
Server = TypeVar("Server", "MosquittoServer", "PostgresServer")

PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)

# Set to "plain" to start throwaway PostgreSQL servers without TimescaleDB even where it is installed.
STORAGE_ENV = "FOREWARN_LOCAL_STORAGE"


class MissingBinaryError(RuntimeError):
    """A service binary is not installed; the message says how to install it."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    predicate: Callable[[], T | Literal[False] | None], *, timeout_s: float = 10.0, interval_s: float = 0.02
) -> T:
    """Poll `predicate` until it returns a truthy value, and return it; fail after `timeout_s`.

    The return type leaves out the falsy `None` and `False` a predicate gives while it waits, so
    `wait_until(lambda: done and rows)` is typed as the rows.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout_s} s: {predicate}")
        time.sleep(interval_s)


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _find(binary: str, dirs: list[Path], install_hint: str) -> str:
    for directory in dirs:
        candidate = directory / binary
        if candidate.exists():
            return str(candidate)
    found = shutil.which(binary)
    if found:
        return found
    raise MissingBinaryError(f"`{binary}` not found: install it with `{install_hint}` (or run scripts/test)")


class MosquittoServer:
    """A Mosquitto 2 broker on a free port, MQTT 5, anonymous, with persistence in its own directory."""

    def __init__(
        self, workdir: Path, *, max_queued_messages: int = 1_000_000, extra_config: str = ""
    ) -> None:
        """`extra_config`: more configuration lines (a bridge, say), appended to the broker's own."""
        self.binary = _find("mosquitto", [Path("/usr/sbin")], "apt-get install mosquitto")
        self.workdir = workdir
        self.port = free_port()
        self.host = "127.0.0.1"
        self._process: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "mosquitto.conf"
        user = "root" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        self.config_path.write_text(
            "\n".join(
                [
                    f"listener {self.port} 127.0.0.1",
                    "allow_anonymous true",
                    "persistence true",
                    f"persistence_location {workdir}/",
                    "autosave_interval 1",
                    f"max_queued_messages {max_queued_messages}",
                    "max_queued_bytes 0",
                    "max_inflight_messages 0",
                    "persistent_client_expiration 1d",
                    f"user {user}",
                    "log_dest stderr",
                    "log_type error",
                    "log_type warning",
                    "",
                ]
            )
            + extra_config
        )

    @property
    def url(self) -> str:
        """`mqtt://127.0.0.1:PORT`."""
        return f"mqtt://{self.host}:{self.port}"

    @property
    def is_running(self) -> bool:
        """Whether the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the broker (again) on the same port and wait until it accepts connections."""
        if self.is_running:
            return
        log = (self.workdir / "mosquitto.log").open("ab")
        self._process = subprocess.Popen(
            [self.binary, "-c", str(self.config_path)], stdout=log, stderr=subprocess.STDOUT
        )
        wait_until(lambda: _port_open(self.port) or not self.is_running, timeout_s=10)
        if not self.is_running:
            raise RuntimeError(f"mosquitto exited: see {self.workdir / 'mosquitto.log'}")

    def stop(self, *, kill: bool = False) -> None:
        """Stop the broker (SIGTERM, saving persistent sessions; or SIGKILL with `kill=True`)."""
        if self._process is None:
            return
        if self._process.poll() is None:
            if kill:
                self._process.kill()
            else:
                self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        self._process = None


class PostgresServer:
    """A PostgreSQL server initialised in a temporary directory, on a free port and its own socket dir.

    As root, the server runs as the `postgres` user, because PostgreSQL refuses to run as root. Where the
    TimescaleDB extension is installed for this PostgreSQL, the server preloads it (so the cloud service
    migrates onto hypertables, as in production) unless `timescaledb=False` or `FOREWARN_LOCAL_STORAGE=plain`.
    """

    def __init__(
        self, workdir: Path, *, timescaledb: bool | None = None, standby_of: PostgresServer | None = None
    ) -> None:
        """With `standby_of` (a running server), a streaming-replication hot standby of it: a base backup
        (`pg_basebackup -R`) that follows the primary's WAL and answers read-only queries."""
        hint = "apt-get install postgresql"
        self.initdb = _find("initdb", PG_BIN_DIRS, hint)
        self.pg_ctl = _find("pg_ctl", PG_BIN_DIRS, hint)
        self.workdir = workdir
        self.datadir = workdir / "data"
        self.socketdir = workdir / "sock"
        self.logfile = workdir / "postgres.log"
        self.port = free_port()
        self.host = "127.0.0.1"
        self.user = "postgres"
        self._as_user: list[str] = []
        workdir.mkdir(parents=True, exist_ok=True)
        self.socketdir.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            self._as_user = ["runuser", "-u", "postgres", "--"]
            record = pwd.getpwnam("postgres")
            for path in (workdir, self.socketdir):
                os.chown(path, record.pw_uid, record.pw_gid)
        if standby_of is not None:
            basebackup = _find("pg_basebackup", PG_BIN_DIRS, hint)
            source = ["-h", standby_of.host, "-p", str(standby_of.port), "-U", standby_of.user]
            self._run([basebackup, "-D", str(self.datadir), "-R", "-X", "stream", "-c", "fast", *source])
            timescaledb = bool(standby_of.timescaledb)
        else:
            self._run(
                [
                    self.initdb,
                    "-D",
                    str(self.datadir),
                    "-U",
                    self.user,
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ]
            )
        if timescaledb is None:
            timescaledb = os.environ.get(STORAGE_ENV, "") != "plain" and timescaledb_installed(self.initdb)
        self.timescaledb: bool = timescaledb
        with (self.datadir / "postgresql.conf").open("a") as conf:  # the last value of a key wins
            conf.write(
                f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.socketdir}'\nfsync = off\nsynchronous_commit = off\n"
                "full_page_writes = off\nmax_connections = 100\nshared_buffers = 128MB\n"
            )
            if timescaledb and standby_of is None:
                conf.write("shared_preload_libraries = 'timescaledb'\ntimescaledb.telemetry_level = off\n")

    def _run(self, command: list[str]) -> None:
        result = subprocess.run([*self._as_user, *command], capture_output=True, check=False, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{command[0]} failed: {result.stderr.decode(errors='replace')[-2000:]}")

    def conninfo(self, dbname: str = "postgres") -> str:
        """A libpq connection string for `dbname` over TCP."""
        return f"host={self.host} port={self.port} user={self.user} dbname={dbname}"

    def _ready(self) -> bool:
        try:
            with psycopg.connect(self.conninfo(), connect_timeout=1):
                return True
        except psycopg.OperationalError:
            return False

    def start(self) -> None:
        """Start the server (again) on the same port and wait until it accepts connections."""
        if self._ready():
            return
        self._run([self.pg_ctl, "-D", str(self.datadir), "-l", str(self.logfile), "-w", "-t", "60", "start"])
        wait_until(self._ready, timeout_s=30)

    def stop(self, *, mode: str = "fast") -> None:
        """Stop the server (`fast`, or `immediate` to simulate a crash)."""
        if (self.datadir / "postmaster.pid").exists():
            self._run([self.pg_ctl, "-D", str(self.datadir), "-m", mode, "-w", "stop"])

    def create_database(self, name: str, *, template: str = "template1") -> str:
        """Create a database (from `template`) and return its connection string."""
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return self.conninfo(name)

    def seal_template(self, name: str) -> None:
        """Make `name` a template nobody connects to, so cloning it never meets a connected session.

        TimescaleDB's background workers connect to every database that has the extension; a
        `CREATE DATABASE ... TEMPLATE` fails while one of them is connected to the template.
        """
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false')
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting whoever is still on it."""
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def timescaledb_installed(initdb: str) -> bool:
    """Whether the TimescaleDB extension is installed for the PostgreSQL whose `initdb` this is."""
    pg_config = Path(initdb).with_name("pg_config")
    command = str(pg_config) if pg_config.exists() else shutil.which("pg_config")
    if command is None:
        return False
    result = subprocess.run([command, "--sharedir"], capture_output=True, text=True, check=False, timeout=30)
    if result.returncode != 0:
        return False
    return (Path(result.stdout.strip()) / "extension" / "timescaledb.control").exists()


def unwind_on_sigterm() -> None:
    """Make SIGTERM raise KeyboardInterrupt in the main thread, as Ctrl-C does.

    Python's default for SIGTERM ends the process at once, skipping every `finally` and context manager:
    the local services a command started (PostgreSQL, Mosquitto, which run as their own processes) would
    keep running with their temporary directories. Unwinding stops them on the way out. Call it from the
    main thread of a command's handler.
    """
    signal.signal(signal.SIGTERM, signal.default_int_handler)


@contextlib.contextmanager
def temporary_directory(prefix: str) -> Iterator[Path]:
    """A temporary directory anyone may traverse (the `postgres` user must reach its data directory)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    """Start `server`, yield it, and stop it however the block ends."""
    try:
        server.start()
        yield server
    finally:
        if isinstance(server, PostgresServer):
            server.stop(mode="immediate")
        else:
            server.stop(kill=True)
