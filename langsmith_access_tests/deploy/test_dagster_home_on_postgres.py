"""A ``DAGSTER_HOME`` whose ``dagster.yaml`` (deploy's) names a PostgreSQL the CLI cannot use.

``langsmith-access sync`` with such an instance said only "too many retries for DB connection",
or, with an account that may connect but not use the tables another one made, died at the run's
first query with a traceback. Each case now stops the command before anything runs with the
CLI's ``error: ...`` of a setting: ``DAGSTER_HOME``, the storage of its ``dagster.yaml``, the
reason (what the server said) and the fix, never the password. One real server (``conftest.py``)
for every case.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

from langsmith_access import runner
from langsmith_access.sandbox import SandboxServer, generate_org
from langsmith_access.settings import SettingsError
from langsmith_access_tests.deploy.conftest import Postgres
from langsmith_access_tests.helpers import cli_in_this_process, point_at

DEPLOY_DAGSTER_YAML = Path(__file__).resolve().parents[2] / "deploy" / "dagster.yaml"
UNSET = "or unset DAGSTER_HOME for a run kept in memory (not in the Dagster UI's run history)."
WRONG_PASSWORD = "wrong-password-not-to-be-shown"
GUEST_PASSWORD = "guest-password-not-to-be-shown"


def a_closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def refusal(monkeypatch, home: Path, variables: dict[str, str]) -> str:
    """What ``runner.instance()`` refuses ``home`` with, the storage's variables set as given."""
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as refused:
        runner.instance()
    message = str(refused.value)
    assert message.startswith(f"DAGSTER_HOME is {home}, whose Dagster storage (the database "
                              f"{home / 'dagster.yaml'} names) "), message
    assert message.endswith(UNSET), message
    for secret in (WRONG_PASSWORD, GUEST_PASSWORD, variables["DAGSTER_PG_PASSWORD"]):
        assert secret not in message
    return message


def test_a_postgres_storage_the_cli_cannot_use_is_refused_with_the_reason_and_the_fix(
        postgres: Postgres, monkeypatch, tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY_DAGSTER_YAML, home / "dagster.yaml")
    good = postgres.environment()
    # An account that may log in and connect, but not create tables in the database (PostgreSQL
    # 15 grants CREATE on schema public to the database's owner only) nor read its owner's.
    admin = postgres.connect()
    try:
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE ROLE guest LOGIN PASSWORD '{GUEST_PASSWORD}'")
    finally:
        admin.close()
    guest = {**good, "DAGSTER_PG_USER": "guest", "DAGSTER_PG_PASSWORD": GUEST_PASSWORD}
    cannot_use = "lets its user connect but not make or use Dagster's tables (permission denied for "
    grant_fix = ("): set the storage's username and password to the account that owns the database and its tables "
                 "(README \"Running it for real\" creates the database with createdb --owner), or grant this one "
                 "CREATE on schema public and every privilege on Dagster's tables, ")

    # Before the tables exist: the storage fails making them.
    message = refusal(monkeypatch, home, guest)
    assert cannot_use + "schema public" + grant_fix in message, message

    # The owner makes them (the instance loads)...
    for name, value in good.items():
        monkeypatch.setenv(name, value)
    with runner.instance() as instance:
        assert instance.is_persistent and instance.get_runs() == []
    # ... and now the storage loads for the guest, whose first query fails: refused before the
    # run, where it was a traceback out of the CLI.
    message = refusal(monkeypatch, home, guest)
    assert cannot_use + "table runs" + grant_fix in message, message
    with SandboxServer(generate_org(seed=3, members=5, workspaces=1)) as sandbox:
        point_at(monkeypatch, sandbox, tmp_path / "access.duckdb")
        done = cli_in_this_process("sync")
    assert done.returncode == 1, done
    assert done.stderr.splitlines()[-1] == f"error: {message}", done.stderr
    assert GUEST_PASSWORD not in done.stdout + done.stderr
    assert not (tmp_path / "access.duckdb").exists()  # nothing ran

    # Dagster's storage retries a connection a few times before it gives up (~7 s each).
    message = refusal(monkeypatch, home, {**good, "DAGSTER_PG_PASSWORD": WRONG_PASSWORD})
    assert (" refused the login: authentication failed (connection to server at \"127.0.0.1\", port "
            f"{postgres.port} failed: FATAL: password authentication failed for user \"dagster\"): set the "
            "storage's username and password to an account of that server (deploy/dagster.yaml reads them from "
            f"DAGSTER_PG_USER and DAGSTER_PG_PASSWORD), {UNSET}") in message, message

    message = refusal(monkeypatch, home, {**good, "DAGSTER_PG_DB": "no_such_db"})
    assert (" does not exist on its PostgreSQL server (connection to server at \"127.0.0.1\", port "
            f"{postgres.port} failed: FATAL: database \"no_such_db\" does not exist): create it (createdb --owner "
            "<user> <name>, as in README \"Running it for real\"), or set the storage's db_name to one that exists "
            f"(deploy/dagster.yaml reads it from DAGSTER_PG_DB), {UNSET}") in message, message

    closed = a_closed_port()
    message = refusal(monkeypatch, home, {**good, "DAGSTER_PG_PORT": str(closed)})
    assert (f" cannot be reached (connection to server at \"127.0.0.1\", port {closed} failed: Connection "
            "refused): start its PostgreSQL server, or set the storage's hostname and port to where it listens (deploy/dagster.yaml reads them "
            f"from DAGSTER_PG_HOST and DAGSTER_PG_PORT), {UNSET}") in message, message
