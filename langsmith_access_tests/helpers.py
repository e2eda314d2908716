"""Shared test helpers: point the pipeline at a sandbox, run a sync, compute expected tables."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from langsmith_access import runner
from langsmith_access.sandbox import OrgState, SandboxServer
from langsmith_access.store.database import AccessDatabase


@contextlib.contextmanager
def lease_held_elsewhere(database: AccessDatabase, purpose: str):
    """The database's writer lease held by another thread for the ``with`` block (as a long
    run would hold it: this process's other threads wait for it, like other processes)."""
    held, release = threading.Event(), threading.Event()

    def holder():
        with database.writer_lease(purpose):
            held.set()
            release.wait(timeout=120)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert held.wait(timeout=60), "the other thread never got the lease"
        yield
    finally:
        release.set()
        thread.join()


@contextlib.contextmanager
def duckdb_openings() -> Iterator[list[str]]:
    """The paths ``duckdb.connect`` opens in this process while the block runs (each opening of a
    synced file reads its catalog: ~20 ms of CPU at 2,000 members)."""
    opened: list[str] = []
    connect = duckdb.connect

    def counted(path=":memory:", *args, **kwargs):
        opened.append(str(path))
        return connect(path, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(duckdb, "connect", counted)
        yield opened


@contextlib.contextmanager
def in_time_zone(zone: str = "EST+5") -> Iterator[None]:
    """This process's local time zone set to ``zone`` (default POSIX form: needs no tz database),
    and back after: a naive time read as local would show. The whole process's (``TZ``)."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = zone
    time.tzset()
    try:
        yield
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        time.tzset()


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A port on 127.0.0.1 where a connection is refused for the ``with`` block. A socket stays
    bound to it without listening: Linux refuses a connect to it, and no other process (another
    xdist worker's server, an outgoing connection's ephemeral port) is given the port meanwhile,
    as it could be between closing a probe socket and the test's connect."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


def point_at(monkeypatch, sandbox: SandboxServer, database: Path) -> None:
    for name, value in sandbox.environment(database).items():
        monkeypatch.setenv(name, value)
    # Quick retries: the sandbox's faults are short.
    monkeypatch.setenv("LANGSMITH_ACCESS_TIMEOUT_SECONDS", "5")


def run_sync(**config) -> runner.RunOutcome:
    return runner.run_job(runner.SYNC_JOB, runner.sync_run_config(**config))


def cli_in_this_process(*args: str) -> subprocess.CompletedProcess:
    """``langsmith-access ARGS`` through the CLI's ``main()`` in this process, with this process's
    environment: its exit code and what it printed, as ``subprocess.run`` returns them. For runs
    whose process is not what the test is about: a subprocess costs ~1 s of CPU more for a light
    command and ~9 s for a sync or a provisioning run (Python, Dagster and dbt loaded again).
    The console script itself runs in test_cli.py and test_installed_package.py."""
    from langsmith_access import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(list(args))
        except SystemExit as exit_:  # argparse's usage errors
            code = exit_.code if isinstance(exit_.code, int) else 1
    return subprocess.CompletedProcess(["langsmith-access", *args], code, out.getvalue(), err.getvalue())


def listings_read_before_the_members(conn: duckdb.DuckDBPyConnection, org: OrgState, *,
                                     roles_left_out=(), sync_id: str = "sync-1") -> None:
    """raw.roles and raw.workspaces as a sync's earlier steps load them, for a test that calls
    ``extract.load_members`` on its own: the members' step names what those listings lack."""
    conn.execute("INSERT INTO raw.roles (sync_id, fetched_at, role_id) SELECT ?, now(), unnest(?)",
                 [sync_id, [r.id for r in org.roles.values() if r.id not in roles_left_out]])
    for w in org.all_workspaces():
        conn.execute("INSERT INTO raw.workspaces (sync_id, fetched_at, workspace_id, display_name, "
                     "is_personal, is_deleted) VALUES (?, now(), ?, ?, ?, ?)",
                     [sync_id, w.id, w.display_name, w.is_personal, w.is_deleted])


def copy_synced_database(source: Path, destination: Path) -> Path:
    """A synced database's two files (the analysts' copy and the working file) at ``destination``:
    the state its next sync or provisioning run starts from, without running the sync again."""
    source_files, destination_files = AccessDatabase(source), AccessDatabase(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source_files.path, destination_files.path)
    shutil.copyfile(source_files.working_path, destination_files.working_path)
    return destination


def copy_of(database: AccessDatabase, where: Path) -> AccessDatabase:
    """``copy_synced_database`` of ``database`` into folder ``where``, as an AccessDatabase."""
    return AccessDatabase(copy_synced_database(database.path, where / database.path.name))


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def by_queue_place(order: list[str]) -> Callable[[object], object]:
    """A function that writes each request id of ``order`` (the queue's, oldest first) in a value
    as its place there (R1, R2...): what two queues recorded compared, whatever ids they drew."""
    labels = {request_id: f"R{n}" for n, request_id in enumerate(order, 1)}

    def named(value):
        return _UUID.sub(lambda m: labels.get(m.group(), m.group()), value) if isinstance(value, str) else value

    return named


def query(database: Path, sql: str, params=None) -> list[tuple]:
    """Read the analysts' copy the way an analyst would: read-only, then close."""
    with duckdb.connect(str(database), read_only=True) as conn:
        return conn.execute(sql, params or []).fetchall()


def tables_holding(database: Path, text: str) -> list[str]:
    """Every ``schema.table.column`` of ``database`` (tables and views, every schema) whose value,
    as text, holds ``text``: a byte search of the file misses what DuckDB stored compressed."""
    found = []
    with duckdb.connect(str(database), read_only=True) as conn:
        columns = conn.execute("SELECT table_schema, table_name, column_name FROM information_schema.columns "
                               "ORDER BY ALL").fetchall()
        for schema, table, column in columns:
            [(hits,)] = conn.execute(
                f'SELECT count(*) FROM "{schema}"."{table}" WHERE contains(CAST("{column}" AS VARCHAR), ?)',
                [text]).fetchall()
            if hits:
                found.append(f"{schema}.{table}.{column}")
    return found


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def expected_workspace_grants(org: OrgState) -> set[tuple[str, str, str]]:
    """(workspace_id, user_id, role_id) for every membership of a shared workspace."""
    return {
        (workspace_id, user_id, role_id)
        for workspace_id, user_id, _identity, role_id in org.workspace_membership_rows(shared_only=True)
    }


def expected_org_grants(org: OrgState) -> set[tuple[str, str]]:
    return {(m.ls_user_id, m.org_role_id) for m in org.active_members()}


def actual_workspace_grants(database: Path) -> set[tuple[str, str, str]]:
    return set(
        query(
            database,
            "SELECT workspace_id, user_id, role_id FROM main.grants "
            "WHERE entitlement_type = 'workspace_role'",
        )
    )


def actual_org_grants(database: Path) -> set[tuple[str, str]]:
    return set(
        query(
            database,
            "SELECT user_id, role_id FROM main.grants WHERE entitlement_type = 'organization_role'",
        )
    )


def tick_sensor(name: str, instance: dg.DagsterInstance, cursor: str | None = None, definitions=None):
    """One tick of the sensor ``name`` as the daemon evaluates it: against the repository of the
    definitions (loaded now, with the environment the test set, unless given), so partitioned
    run requests are checked against their job. Returns the result and the cursor after it."""
    from langsmith_access.definitions import defs  # loads the dbt manifest: only when a test ticks

    definitions = definitions if definitions is not None else defs()
    context = dg.build_sensor_context(instance=instance, cursor=cursor,
                                      repository_def=definitions.get_repository_def())
    return definitions.resolve_sensor_def(name).evaluate_tick(context), context.cursor


# A `langsmith-access` command killed by SIGKILL once it has committed to the working file, as
# it starts copying that file to publish it (the copy's name is `.<file>.publish-<pid>.tmp`).
_KILLED_BEFORE_PUBLISHING = """
import os, shutil, signal, sys
from langsmith_access import cli

real_copyfile = shutil.copyfile

def copyfile(source, destination, *args, **kwargs):
    if ".publish-" in os.path.basename(destination):
        os.kill(os.getpid(), signal.SIGKILL)
    return real_copyfile(source, destination, *args, **kwargs)

shutil.copyfile = copyfile
cli.main(sys.argv[1:])
"""


def cli_killed_before_publishing(*args: str) -> subprocess.CompletedProcess:
    """Run ``langsmith-access <args>`` in a process of its own, killed (SIGKILL) between its
    commit and its publish; asserts it was killed there."""
    killed = subprocess.run([sys.executable, "-c", _KILLED_BEFORE_PUBLISHING, *args], capture_output=True,
                            text=True, timeout=120, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    return killed
