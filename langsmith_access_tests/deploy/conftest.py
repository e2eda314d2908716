"""PostgreSQL for real: Debian's server (``make postgres`` installs it), a cluster initialised
under a temporary directory, listening on 127.0.0.1 on a free port (another one when a process
took it first), stopped by its pid.

The server refuses to run as root, so when the tests run as root it runs as the ``postgres``
account Debian's package creates (the directory is handed to that account).
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest

from langsmith_access_tests.services import Service, start_on_a_free_port

INSTALL_HINT = (
    "`make postgres` (part of `make test`) installs Debian's PostgreSQL: "
    "apt-get install -y postgresql"
)
# Long enough for a cold start on a busy machine; the server says when it is ready sooner.
START_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class Postgres:
    """A running server: where it listens, the superuser it was initialised with, its tools."""

    host: str
    port: int
    user: str
    password: str
    database: str
    bin_dir: Path

    def environment(self) -> dict[str, str]:
        """The variables deploy/dagster.yaml reads."""
        return {"DAGSTER_PG_HOST": self.host, "DAGSTER_PG_PORT": str(self.port), "DAGSTER_PG_USER": self.user,
                "DAGSTER_PG_PASSWORD": self.password, "DAGSTER_PG_DB": self.database}

    def connect(self, database: str | None = None):
        return psycopg2.connect(host=self.host, port=self.port, user=self.user, password=self.password,
                                dbname=database or self.database, connect_timeout=5)

    def dump(self) -> str:
        """``pg_dump`` of the database, as SQL text."""
        done = subprocess.run(
            [str(self.bin_dir / "pg_dump"), "--host", self.host, "--port", str(self.port), "--username",
             self.user, "--no-password", self.database],
            capture_output=True, text=True, timeout=120, check=False,
            env={**os.environ, "PGPASSWORD": self.password},
        )
        assert done.returncode == 0, done.stderr
        return done.stdout


def postgres_bin_dir() -> Path:
    """The newest installed server's binaries (Debian: /usr/lib/postgresql/<major>/bin)."""
    found = [Path(path).parent for path in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    if not found:
        pytest.fail(f"PostgreSQL's server is not installed (no /usr/lib/postgresql/*/bin/initdb). {INSTALL_HINT}")
    return max(found, key=lambda path: int(path.parent.name))


def _as_server_account() -> dict:
    """Popen arguments that run a command as the account the server may run as."""
    if os.geteuid() != 0:
        return {}
    try:
        account = pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail(f"Running as root and there is no 'postgres' account to run the server as. {INSTALL_HINT}")
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    bin_dir = postgres_bin_dir()
    account = _as_server_account()
    root = Path(tempfile.mkdtemp(prefix="langsmith-access-postgres-"))
    if account:
        os.chown(root, account["user"], account["group"])
    data, password_file, log = root / "data", root / "password", root / "server.log"
    password = secrets.token_urlsafe(18)
    password_file.write_text(password + "\n")
    if account:
        os.chown(password_file, account["user"], account["group"])
    # initdb refuses a password on the command line: from a file only the server account reads.
    password_file.chmod(0o600)
    init = subprocess.run(
        [str(bin_dir / "initdb"), "--pgdata", str(data), "--username", "dagster", "--pwfile", str(password_file),
         "--auth-host", "scram-sha-256", "--auth-local", "peer", "--encoding", "UTF8", "--locale", "C",
         "--no-sync"],
        capture_output=True, text=True, timeout=300, check=False, cwd=root, **account,
    )
    password_file.unlink()
    assert init.returncode == 0, init.stdout + init.stderr

    def server_on(port: int) -> Service:
        return Service("PostgreSQL", [str(bin_dir / "postgres"), "-D", str(data), "-c", "listen_addresses=127.0.0.1",
                                      "-p", str(port), "-c", f"unix_socket_directories={root}", "-c", "fsync=off"],
                       dict(os.environ), log, cwd=root, popen_options=account,
                       stop_signal=signal.SIGINT)  # fast shutdown: disconnect clients, then exit

    def server_info_on(port: int) -> Postgres:
        return Postgres("127.0.0.1", port, "dagster", password, "dagster", bin_dir)

    server, port = start_on_a_free_port("PostgreSQL to accept connections", server_on,
                                        lambda port: _accepts_connections(server_info_on(port)),
                                        START_TIMEOUT_SECONDS, every=0.1)
    try:
        server_info = server_info_on(port)
        connection = server_info.connect("postgres")
        try:
            connection.autocommit = True  # CREATE DATABASE runs outside a transaction
            with connection.cursor() as cursor:
                cursor.execute("CREATE DATABASE dagster")
        finally:
            connection.close()
        yield server_info
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _accepts_connections(info: Postgres) -> bool:
    try:
        info.connect("postgres").close()
        return True
    except psycopg2.OperationalError:  # starting (or another server given the port meanwhile)
        return False
