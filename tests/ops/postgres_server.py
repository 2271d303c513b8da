"""A throwaway PostgreSQL cluster for tests: Debian's own server binaries, a temporary data directory, loopback only.

The cluster runs as the ``postgres`` system user when the tests run as root (PostgreSQL refuses to run as root), on a
free port of 127.0.0.1 and a Unix socket inside its directory. Local socket connections are trusted (the test's
superuser connection); TCP connections need a password (scram-sha-256), so a URL's password is really checked.
Missing binaries skip the tests on a developer machine and fail them in CI (``CI=true``): CI installs ``postgresql``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest

from tests.processes import system_tool_missing

POSTGRES_LIB = Path("/usr/lib/postgresql")
SERVICE_USER = "postgres"
ROLE = "harvest"
PASSWORD = "s3cret pass/word"
"""The test role's password: a space and a slash, so anything that forgets to URL-encode it fails."""


def server_bin_dir() -> Path | None:
    """``/usr/lib/postgresql/<newest version>/bin`` if it holds the server binaries, else None."""
    versions = sorted(
        (d for d in POSTGRES_LIB.glob("*/bin") if (d / "initdb").exists() and (d / "pg_ctl").exists()),
        key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0,
    )
    return versions[-1] if versions else None


def require_server_bin_dir() -> Path:
    """The server binaries; skip without them, except in CI where a missing PostgreSQL is a failure."""
    found = server_bin_dir()
    if found is None:
        system_tool_missing(f"no PostgreSQL binaries under {POSTGRES_LIB}/<version>/bin (apt-get install postgresql)")
    return found


@dataclass(frozen=True)
class PostgresServer:
    """A running cluster: where it listens and how to reach it."""

    bin_dir: Path
    directory: Path
    port: int

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def socket_dir(self) -> Path:
        return self.directory

    def url(self, database: str, password: str | None = PASSWORD) -> str:
        """A ``postgresql+psycopg2`` URL of ``database`` for the test role over TCP (password URL-encoded)."""
        from sqlalchemy.engine import URL

        url = URL.create("postgresql+psycopg2", ROLE, password, "127.0.0.1", self.port, database)
        return url.render_as_string(hide_password=False)

    def create_database(self, name: str) -> str:
        """A new database owned by the test role; returns its URL."""
        with self.superuser() as connection, connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}" OWNER {ROLE}')
        return self.url(name)

    @contextmanager
    def superuser(self) -> Iterator[psycopg2.extensions.connection]:
        """An autocommit superuser connection over the cluster's Unix socket."""
        connection = psycopg2.connect(host=str(self.socket_dir), port=self.port, user=SERVICE_USER, dbname="postgres")
        connection.autocommit = True
        try:
            yield connection
        finally:
            connection.close()


def _as_service_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", SERVICE_USER, "--", *command] if os.geteuid() == 0 else command


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _hand_over(directory: Path) -> None:
    """Give ``directory`` to the service user and let it traverse every folder above it."""
    if os.geteuid() != 0:
        return
    account = pwd.getpwnam(SERVICE_USER)
    os.chown(directory, account.pw_uid, account.pw_gid)
    directory.chmod(0o700)
    for parent in directory.parents:
        if not parent.stat().st_mode & 0o001:
            raise RuntimeError(f"{parent} is not traversable by {SERVICE_USER}; set TMPDIR to a folder that is")


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(_as_service_user(command), capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}): {done.stdout}{done.stderr}")


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """Create a cluster in a new temporary directory, start it, yield it; stop it and remove the directory."""
    bin_dir = require_server_bin_dir()
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.fail("tests run as root but runuser (util-linux) is missing: PostgreSQL cannot run as root")
    # Not under pytest's basetemp: every pytest session resets /tmp/pytest-of-<user> to 0700, which would lock the
    # service user out of a cluster another session started.
    directory = Path(tempfile.mkdtemp(prefix="harvest-postgres-"))
    try:
        _hand_over(directory)
        with _started(bin_dir, directory) as server:
            yield server
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def _started(bin_dir: Path, directory: Path) -> Iterator[PostgresServer]:
    server = PostgresServer(bin_dir, directory, _free_port())
    settings = f"-U {SERVICE_USER} -E UTF8 --no-sync --auth-local=trust --auth-host=scram-sha-256".split()
    _run([str(bin_dir / "initdb"), "-D", str(server.data_dir), *settings], "initdb")
    options = f"-p {server.port} -k {server.socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
    log = directory / "server.log"
    _run(
        [str(bin_dir / "pg_ctl"), "-D", str(server.data_dir), "-l", str(log), "-w", "-t", "30", "-o", options, "start"],
        f"pg_ctl start (log: {log})",
    )
    try:
        with server.superuser() as connection, connection.cursor() as cursor:
            cursor.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD %s", (PASSWORD,))
        yield server
    finally:
        _run([str(bin_dir / "pg_ctl"), "-D", str(server.data_dir), "-m", "fast", "-w", "stop"], "pg_ctl stop")
